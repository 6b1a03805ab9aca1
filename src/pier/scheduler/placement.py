"""Placing replicas on nodes and devices. Pure functions over a mutable working copy.

- Hard constraints: node pool, GPU model, node selector labels, free CPU and memory.
- Whole GPUs go to idle devices of one node; among nodes that fit, the one with the fewest
  idle devices is chosen (consolidation keeps large holes for large jobs).
- Fractional GPUs are best-fit onto devices: the device whose free share is the smallest
  that still fits, preferring devices already partly used, so fractions on one device never
  exceed 1 and idle devices stay whole.
- A gang (several replicas) is placed all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pier.scheduler.types import JobRequest, NodeState, Placement, ReplicaRequest

__all__ = ["EPSILON", "FreeState", "explain_infeasible", "place_job"]

EPSILON = 1e-9


@dataclass(slots=True)
class _NodeFree:
    node: NodeState
    devices: list[float]
    cpu: float
    memory: int


class FreeState:
    """What is free on every node, updated as placements are made within one cycle."""

    def __init__(self, nodes: Iterable[NodeState]) -> None:
        self._nodes = [_NodeFree(n, list(n.device_free), n.cpu_free, n.memory_free) for n in nodes]

    def _candidates(self, replica: ReplicaRequest) -> list[_NodeFree]:
        return [n for n in self._nodes if _matches(n.node, replica)]

    def try_place(self, job: JobRequest) -> tuple[Placement, ...] | None:
        """Place every replica or none; on success the free state is updated."""
        undo: list[tuple[_NodeFree, list[float], float, int]] = []
        placements: list[Placement] = []
        for replica in job.replicas:
            placed = self._place_one(replica, undo)
            if placed is None:
                for node_free, devices, cpu, memory in reversed(undo):
                    node_free.devices, node_free.cpu, node_free.memory = devices, cpu, memory
                return None
            placements.append(placed)
        return tuple(placements)

    def _place_one(
        self,
        replica: ReplicaRequest,
        undo: list[tuple[_NodeFree, list[float], float, int]],
    ) -> Placement | None:
        best: tuple[tuple[float, ...], _NodeFree, tuple[int, ...]] | None = None
        for n in self._candidates(replica):
            if n.cpu + EPSILON < replica.cpu or n.memory < replica.memory:
                continue
            devices = _pick_devices(n.devices, replica.gpu)
            if devices is None:
                continue
            idle = sum(1 for d in n.devices if d >= 1.0 - EPSILON)
            if replica.gpu >= 1:
                key: tuple[float, ...] = (idle, -n.cpu)
            elif replica.gpu > 0:
                key = (n.devices[devices[0]] - replica.gpu, idle)
            else:
                # CPU-only work goes where it leaves the most GPUs reachable: nodes with
                # fewer devices first, then the least loaded CPU.
                key = (len(n.devices), -n.cpu)
            if best is None or key < best[0]:
                best = (key, n, devices)
        if best is None:
            return None
        _, n, devices = best
        undo.append((n, list(n.devices), n.cpu, n.memory))
        fraction = replica.gpu if 0 < replica.gpu < 1 else 0.0
        for d in devices:
            n.devices[d] -= fraction if fraction else 1.0
        n.cpu -= replica.cpu
        n.memory -= replica.memory
        return Placement(replica.task, replica.index, n.node.name, devices, fraction)


def _matches(node: NodeState, replica: ReplicaRequest) -> bool:
    if replica.node_pool is not None and replica.node_pool not in (
        node.pool,
        node.labels.get("pool"),
    ):
        return False
    if replica.gpu_model is not None and (
        node.gpu_model is None or node.gpu_model.lower() != replica.gpu_model.lower()
    ):
        return False
    return all(node.labels.get(k) == v for k, v in replica.node_selector.items())


def _pick_devices(free: Sequence[float], gpu: float) -> tuple[int, ...] | None:
    if gpu <= 0:
        return ()
    if gpu < 1:
        fits = [(share, i) for i, share in enumerate(free) if share + EPSILON >= gpu]
        if not fits:
            return None
        partly = [f for f in fits if f[0] < 1.0 - EPSILON]
        _share, index = min(partly or fits)
        return (index,)
    idle = [i for i, share in enumerate(free) if share >= 1.0 - EPSILON]
    wanted = int(gpu)
    return tuple(idle[:wanted]) if len(idle) >= wanted else None


def place_job(nodes: Iterable[NodeState], job: JobRequest) -> tuple[Placement, ...] | None:
    return FreeState(nodes).try_place(job)


def explain_infeasible(nodes: Sequence[NodeState], job: JobRequest) -> str | None:
    """Why ``job`` could never be placed even on an empty cluster, or None if it could."""
    for replica in job.replicas:
        matching = [n for n in nodes if _matches(n, replica)]
        if not matching:
            wanted = []
            if replica.node_pool is not None:
                wanted.append(f"node pool '{replica.node_pool}'")
            if replica.gpu_model is not None:
                wanted.append(f"GPU model '{replica.gpu_model}'")
            if replica.node_selector:
                wanted.append(f"labels {dict(replica.node_selector)}")
            return f"no node has {' and '.join(wanted) or 'the requested constraints'}"
        if replica.gpu >= 1:
            most = max(len(n.device_free) for n in matching)
            if most < replica.gpu:
                return (
                    f"replica {replica.task}-{replica.index} asks for {replica.gpu:g} GPUs; "
                    f"the largest matching node has {most}"
                )
        elif replica.gpu > 0 and not any(n.device_free for n in matching):
            return "asks for a GPU fraction; no matching node has a GPU"
        if not any(n.cpus + EPSILON >= replica.cpu for n in matching):
            most_cpu = max(n.cpus for n in matching)
            return f"asks for {replica.cpu:g} CPUs; the largest matching node has {most_cpu:g}"
        if not any(n.memory >= replica.memory for n in matching):
            most_mem = max(n.memory for n in matching)
            return (
                f"asks for {replica.memory} bytes of memory; the largest matching node has "
                f"{most_mem}"
            )
    idle = [_idle(n) for n in nodes]
    if len(job.replicas) > 1 and place_job(idle, job) is None:
        return (
            f"its {len(job.replicas)} replicas together ({job.gpu:g} GPUs) do not fit on the "
            "cluster even when it is idle"
        )
    for replica in job.replicas:
        if place_job(idle, replace(job, replicas=(replica,))) is None:
            return (
                f"replica {replica.task}-{replica.index} asks for {replica.gpu:g} GPUs, "
                f"{replica.cpu:g} CPUs and {replica.memory} bytes of memory; no matching node "
                "has all of them"
            )
    return None


def _idle(node: NodeState) -> NodeState:
    return replace(
        node,
        device_free=(1.0,) * len(node.device_free),
        cpu_free=node.cpus,
        memory_free=node.memory,
    )
