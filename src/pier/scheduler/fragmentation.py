"""Fragmentation-aware placement of GPU fractions (after FGD, Weng et al., ATC'23).

A node's free GPU capacity is a *fragment* for a kind of task when that task cannot use it:
all of it when the task does not fit on the node at all (CPU, memory or GPUs short), else
the free share of each device too small for the task's fraction (for a task of whole GPUs:
every partly used device). Weighted by how common each kind of task is (the *workload*), a
node's fragmentation is the GPU capacity expected to be unusable by the next task. FGD
places a task where it grows the cluster's fragmentation least, instead of on the fullest
device that fits (best-fit), which strands slivers no later task can use.

The workload is a distribution of task shapes ``(gpu, cpu, memory)``: in the scheduler, the
shapes of the snapshot's pending and running replicas; in the trace benchmark, the trace's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from pier.scheduler.types import Snapshot

__all__ = [
    "DEFAULT_TOP",
    "FragmentScorer",
    "NodeFree",
    "Shape",
    "Workload",
    "fragmentation",
    "snapshot_workload",
]

EPSILON = 1e-9
IDLE = 1.0 - EPSILON
DEFAULT_TOP = 24
"""Task shapes kept in a workload: the most common ones (a fragment measure over a long
tail of rare shapes costs time and changes little)."""

Shape = tuple[float, float, int]
"""A task's GPUs (a fraction < 1, or a whole number), CPUs and memory (bytes)."""


@dataclass(frozen=True, slots=True)
class Workload:
    shapes: tuple[tuple[Shape, float], ...]
    """Task shapes with their share of all tasks (summing to 1)."""

    @classmethod
    def of(cls, shapes: Iterable[Shape], top: int = DEFAULT_TOP) -> Workload:
        """The distribution of ``shapes`` (one per task), its ``top`` most common kept."""
        counts: dict[Shape, int] = {}
        for shape in shapes:
            counts[shape] = counts.get(shape, 0) + 1
        return cls.of_counts(counts, top)

    @classmethod
    def of_counts(cls, counts: Mapping[Shape, int], top: int = DEFAULT_TOP) -> Workload:
        kept = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
        total = sum(count for _, count in kept)
        if total <= 0:
            return cls(())
        return cls(tuple((shape, count / total) for shape, count in kept))

    def __bool__(self) -> bool:
        return bool(self.shapes)


def fragmentation(devices: Sequence[float], cpu: float, memory: int, workload: Workload) -> float:
    """Expected free GPU capacity of one node (devices' free shares, free CPUs and memory)
    that a task drawn from ``workload`` could not use."""
    free = 0.0
    for share in devices:
        free += share
    if free <= EPSILON:
        return 0.0
    expected = 0.0
    for (gpu, need_cpu, need_memory), weight in workload.shapes:
        if need_cpu > cpu + EPSILON or need_memory > memory:
            expected += weight * free
        elif gpu <= 0:
            continue  # fits and uses no GPU
        elif gpu < 1:
            unusable = 0.0
            usable = False
            for share in devices:
                if share + EPSILON >= gpu:
                    usable = True
                else:
                    unusable += share
            expected += weight * (unusable if usable else free)
        else:
            idle = 0
            partial = 0.0
            for share in devices:
                if share >= IDLE:
                    idle += 1
                else:
                    partial += share
            expected += weight * (partial if idle >= gpu else free)
    return expected


def snapshot_workload(snapshot: Snapshot, top: int = DEFAULT_TOP) -> Workload:
    """The mix of replica shapes a cluster serves: its pending and running replicas."""
    shapes: list[Shape] = [(r.gpu, r.cpu, r.memory) for j in snapshot.pending for r in j.replicas]
    for job in snapshot.running:
        for p in job.placements:
            shapes.append((p.gpu_fraction or float(len(p.devices)), p.cpu, p.memory))
    return Workload.of(shapes, top)


NodeFree: TypeAlias = tuple[int, Sequence[float], float, int, int]
"""A candidate node: its index, free share of each device, free CPUs, free memory, and
number of idle devices."""


class FragmentScorer:
    """Chooses devices for GPU fractions by fragmentation growth; remembers the
    fragmentation of each free state it has scored (nodes alike share it)."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._known: dict[tuple[tuple[float, ...], float, int], float] = {}

    def fragmentation(self, devices: tuple[float, ...], cpu: float, memory: int) -> float:
        key = (devices, cpu, memory)
        value = self._known.get(key)
        if value is None:
            value = self._known[key] = fragmentation(devices, cpu, memory, self.workload)
        return value

    def best_device(
        self, nodes: Iterable[NodeFree], gpu: float, cpu: float, memory: int
    ) -> tuple[int, int] | None:
        """``(node, device)`` for a replica of ``gpu`` (< 1) GPUs, ``cpu`` and ``memory``
        where its node's fragmentation grows least; ties: the fullest device that fits
        (best-fit), then the node with fewest idle devices, then the lowest index. None if
        it fits nowhere."""
        best: tuple[float, float, int, int, int] | None = None
        seen: set[tuple[tuple[float, ...], float, int]] = set()
        for node, free, free_cpu, free_memory, idle in nodes:
            if free_cpu + EPSILON < cpu or free_memory < memory:
                continue
            devices = tuple(free)
            state = (devices, free_cpu, free_memory)
            if state in seen:
                continue  # alike nodes score alike; the first (lowest key) was kept
            seen.add(state)
            before = self.fragmentation(devices, free_cpu, free_memory)
            tried: set[float] = set()
            for d, share in enumerate(devices):
                if share + EPSILON < gpu or share in tried:
                    continue
                tried.add(share)
                after = list(devices)
                after[d] = share - gpu
                grown = self.fragmentation(tuple(after), free_cpu - cpu, free_memory - memory)
                key = (round(grown - before, 9), share, idle, node, d)
                if best is None or key < best:
                    best = key
        return None if best is None else (best[3], best[4])
