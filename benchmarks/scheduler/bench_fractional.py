"""Fractional GPU packing on Alibaba's openb trace: GPUs left unallocated as pods arrive.

    .venv/bin/python -m benchmarks.scheduler.bench_fractional \\
        /work/shared/traces/alibaba-gpu-v2023 [--pods openb_pod_list_default.csv] [--seeds 3]

The setup of FGD (Weng et al., ATC'23): the 1,523 nodes of ``openb_node_list_all_node.csv``
(6,212 GPUs of 7 models, and CPU-only nodes); pods drawn at random (seeded, with
replacement) from the pod list arrive one at a time and never leave, until the GPUs they
asked for reach ``--until`` (130%) of the cluster's. A pod that fits nowhere is dropped. At
each checkpoint of arrived GPU requests (% of the cluster's GPUs) the share of GPUs left
unallocated is recorded; lower is better, and above 100% arrived it is GPU capacity
stranded by fragmentation. Placements compared:

- ``pier``: pier's placement (:class:`pier.scheduler.capacity.Capacity`, as a scheduling
  cycle places a replica): whole GPUs on the node with fewest idle devices that fits,
  fractions best-fit on the fullest partly used device, else an idle one;
- ``pier-fgd``: the same with fragmentation-aware fractions
  (:mod:`pier.scheduler.fragmentation`), the workload being the pod list's shapes;
- ``best-fit``: the node left with the least free GPU after placement (then the fullest
  device);
- ``first-fit``: the first node (and device) in the node list that fits.

GPU-model constraints (``gpu_spec``) are honoured: each allowed model is tried in turn.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pier.scheduler.capacity import EPSILON, IDLE, Capacity
from pier.scheduler.fragmentation import Shape, Workload
from pier.scheduler.types import JobRequest, NodeState, ReplicaRequest

MIB = 2**20
CHECKPOINTS = (50, 70, 80, 90, 95, 100, 110, 120, 130)


@dataclass(frozen=True, slots=True)
class Pod:
    gpus: int
    fraction: float
    """Share of one GPU when ``gpus`` is 1 and the pod asks for less (else 0)."""
    cpu: float
    memory: int
    models: tuple[str, ...]

    @property
    def gpu(self) -> float:
        return self.fraction if self.fraction else float(self.gpus)


def load_nodes(path: Path) -> list[NodeState]:
    nodes = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            cpus, memory = int(row["cpu_milli"]) / 1000, int(row["memory_mib"]) * MIB
            nodes.append(
                NodeState(
                    row["sn"],
                    "default",
                    {},
                    row["model"] or None,
                    cpus,
                    memory,
                    (1.0,) * int(row["gpu"]),
                    cpus,
                    memory,
                )
            )
    return nodes


def load_pods(path: Path) -> list[Pod]:
    pods = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"])
            fraction = milli / 1000 if gpus == 1 and 0 < milli < 1000 else 0.0
            spec = row.get("gpu_spec") or ""
            models = tuple(m for m in spec.split("|") if m)
            pods.append(
                Pod(
                    gpus,
                    fraction,
                    int(row["cpu_milli"]) / 1000,
                    int(row["memory_mib"]) * MIB,
                    models,
                )
            )
    return pods


def workload_of(pods: Sequence[Pod]) -> Workload:
    shapes: list[Shape] = [(p.gpu, p.cpu, p.memory) for p in pods]
    return Workload.of(shapes)


class Packer:
    """A placement rule over a cluster that only fills up."""

    def place(self, pod: Pod) -> bool:
        raise NotImplementedError

    def allocated(self) -> float:
        raise NotImplementedError


class PierPacker(Packer):
    def __init__(self, nodes: Sequence[NodeState], workload: Workload | None = None) -> None:
        self.capacity = Capacity(nodes, workload)
        self.total = sum(len(n.device_free) for n in nodes)
        self.count = 0

    def place(self, pod: Pod) -> bool:
        self.count += 1
        for model in pod.models or (None,):
            replica = ReplicaRequest("w", 0, pod.gpu, pod.cpu, pod.memory, model)
            job = JobRequest(f"pod-{self.count}", "p", 0.0, (replica,))
            if self.capacity.try_place(job) is not None:
                return True
        return False

    def allocated(self) -> float:
        return self.total - sum(sum(d) for d in self.capacity.devices)


class ScanPacker(Packer):
    """Best-fit or first-fit by scanning every node."""

    def __init__(self, nodes: Sequence[NodeState], best: bool) -> None:
        self.models = [(n.gpu_model or "").lower() for n in nodes]
        self.devices = [list(n.device_free) for n in nodes]
        self.cpu = [n.cpu_free for n in nodes]
        self.memory = [n.memory_free for n in nodes]
        self.total = sum(len(d) for d in self.devices)
        self.best = best

    def _fit(self, node: int, pod: Pod) -> list[int] | None:
        if self.cpu[node] + EPSILON < pod.cpu or self.memory[node] < pod.memory:
            return None
        free = self.devices[node]
        if pod.fraction:
            fits = [(s, d) for d, s in enumerate(free) if s + EPSILON >= pod.fraction]
            if not fits:
                return None
            return [(min(fits) if self.best else fits[0])[1]]
        idle = [d for d, s in enumerate(free) if s >= IDLE]
        return idle[: pod.gpus] if len(idle) >= pod.gpus else None

    def place(self, pod: Pod) -> bool:
        allowed = {m.lower() for m in pod.models}
        chosen: tuple[float, int, list[int]] | None = None
        for node in range(len(self.devices)):
            if pod.gpus and allowed and self.models[node] not in allowed:
                continue
            devices = self._fit(node, pod)
            if devices is None:
                continue
            left = sum(self.devices[node]) - pod.gpu
            if not self.best:
                chosen = (left, node, devices)
                break
            if chosen is None or (left, node) < chosen[:2]:
                chosen = (left, node, devices)
        if chosen is None:
            return False
        _, node, devices = chosen
        for d in devices:
            self.devices[node][d] -= pod.fraction or 1.0
        self.cpu[node] -= pod.cpu
        self.memory[node] -= pod.memory
        return True

    def allocated(self) -> float:
        return self.total - sum(sum(d) for d in self.devices)


PACKERS: dict[str, Callable[[Sequence[NodeState], Workload], Packer]] = {
    "pier": lambda nodes, workload: PierPacker(nodes),
    "pier-fgd": PierPacker,
    "best-fit": lambda nodes, workload: ScanPacker(nodes, best=True),
    "first-fit": lambda nodes, workload: ScanPacker(nodes, best=False),
}


def run(
    name: str,
    nodes: Sequence[NodeState],
    pods: Sequence[Pod],
    workload: Workload,
    seed: int,
    until: float,
) -> dict[str, object]:
    rng = random.Random(seed)
    packer = PACKERS[name](nodes, workload)
    total = sum(len(n.device_free) for n in nodes)
    arrived = 0.0
    failed = 0
    marks = [c for c in CHECKPOINTS if c <= until]
    unallocated: dict[int, float] = {}
    started = time.process_time()
    while marks:
        pod = rng.choice(pods)
        arrived += pod.gpu
        if not packer.place(pod):
            failed += 1
        while marks and arrived >= total * marks[0] / 100:
            unallocated[marks.pop(0)] = 1 - packer.allocated() / total
    return {
        "unallocated": unallocated,
        "failed_pods": failed,
        "cpu_s": round(time.process_time() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", type=Path, help="the alibaba-gpu-v2023 folder")
    parser.add_argument("--nodes", default="openb_node_list_all_node.csv")
    parser.add_argument("--pods", default="openb_pod_list_default.csv")
    parser.add_argument("--packer", action="append", choices=sorted(PACKERS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--until", type=float, default=130.0, help="arrived GPUs, % of cluster")
    args = parser.parse_args(argv)
    nodes = load_nodes(args.traces / args.nodes)
    pods = load_pods(args.traces / args.pods)
    workload = workload_of(pods)
    for name in args.packer or list(PACKERS):
        runs = [run(name, nodes, pods, workload, seed, args.until) for seed in range(args.seeds)]
        marks = sorted({m for r in runs for m in r["unallocated"]})  # type: ignore[attr-defined]
        summary = {
            f"{m}%": round(statistics.mean(r["unallocated"][m] for r in runs), 4)  # type: ignore[index]
            for m in marks
        }
        line = {
            "packer": name,
            "pods": args.pods,
            "seeds": args.seeds,
            "unallocated_gpu_share_at_arrived": summary,
            "failed_pods": [r["failed_pods"] for r in runs],
            "cpu_s": [r["cpu_s"] for r in runs],
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
