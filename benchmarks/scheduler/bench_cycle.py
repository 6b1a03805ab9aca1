"""One scheduling cycle at scale: 10,000 pending jobs, 1,000 nodes x 8 GPUs, 100 projects.

    .venv/bin/python -m benchmarks.scheduler.bench_cycle [--repeat 30] [--policy quota|las]

Scenarios (deterministic, seeded):
- ``busy``: the cluster 97% used by running jobs of every shape, some projects over quota,
  10,000 pending jobs (1/2/4/8 GPUs, fractions, gangs, pools), a few in-quota ones that
  reclaim;
- ``full``: every GPU used, nothing fits, no reclaim possible (the common steady state);
- ``empty``: an idle cluster and 10,000 pending jobs: the cycle admits until it is full;
- ``admit``: admission throughput: an idle cluster of 1,250 nodes x 8 GPUs (10,000 GPUs)
  and 10,000 pending jobs of 1 GPU (a tenth of them 2, 4 or 8 GPUs; 100 projects): one
  cycle admits as many as fit; reported as admitted jobs per second.
Prints one JSON line per scenario with p50/p95/max of ``decide()`` in milliseconds, wall
clock and CPU time (the machine is shared: CPU time is what the cycle itself costs).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time

from pier import gc_tuning
from pier.scheduler.capacity import Capacity
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import (
    JobRequest,
    NodeState,
    Policy,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)

NODES = 1000
GPUS = 8
PROJECTS = 100
PENDING = 10_000
SHAPES = [(0.5, 1), (1, 1), (1, 1), (1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (8, 4)]


def _nodes(count: int = NODES) -> list[NodeState]:
    return [
        NodeState(
            f"node-{i:04d}",
            "big" if i % 10 == 0 else "default",
            {},
            "h100" if i % 4 == 0 else "a100",
            128.0,
            2**40,
            (1.0,) * GPUS,
            128.0,
            2**40,
        )
        for i in range(count)
    ]


def _request(rng: random.Random, job_id: str, project: str, created: float) -> JobRequest:
    gpu, replicas = rng.choice(SHAPES)
    pool = "big" if rng.random() < 0.05 else None
    interactive = rng.random() < 0.1 and replicas == 1
    return JobRequest(
        job_id,
        project,
        created,
        tuple(ReplicaRequest("w", i, gpu, 4.0, 2**34, None, pool) for i in range(replicas)),
        priority=1 if interactive else 0,
        preemptible=not interactive,
        interactive=interactive,
        attained_gpu_seconds=rng.choice([0.0, 0.0, 1800.0, 7200.0, 90000.0]),
    )


def admission_scenario(seed: int = 1) -> Snapshot:
    """10,000 GPUs idle, 10,000 pending jobs that nearly all fit."""
    rng = random.Random(seed)
    nodes = _nodes(10_000 // GPUS)
    projects = {
        f"proj-{i:03d}": ProjectState(f"proj-{i:03d}", gpu_quota=100.0) for i in range(PROJECTS)
    }
    names = sorted(projects)
    now = 100_000.0
    pending = []
    for i in range(PENDING):
        gpu = rng.choice([2.0, 4.0, 8.0]) if rng.random() < 0.1 else 1.0
        pending.append(
            JobRequest(
                f"job-{i}",
                rng.choice(names),
                now - rng.uniform(0, 600),
                (ReplicaRequest("w", 0, gpu, 4.0, 2**34),),
            )
        )
    return Snapshot(now, tuple(nodes), projects, tuple(pending), ())


def scenario(name: str, seed: int = 1) -> Snapshot:
    if name == "admit":
        return admission_scenario(seed)
    rng = random.Random(seed)
    nodes = _nodes()
    projects = {
        f"proj-{i:03d}": ProjectState(
            f"proj-{i:03d}",
            gpu_quota=float(NODES * GPUS // PROJECTS),
            weight=None if i % 3 else 2.0,
            department=f"dept-{i % 10}",
        )
        for i in range(PROJECTS)
    }
    names = sorted(projects)
    now = 100_000.0
    running: list[RunningJob] = []
    if name != "empty":
        capacity = Capacity(nodes)
        target = NODES * GPUS * (0.97 if name == "busy" else 1.0)
        used = 0.0
        # Skewed usage: low-numbered projects borrow, high-numbered ones are under quota.
        weights = [1.0 / (1 + i) for i in range(PROJECTS)]
        i = 0
        while used < target and i < 20 * NODES:
            project = rng.choices(names, weights)[0]
            req = _request(rng, f"run-{i}", project, now - rng.uniform(0, 80_000))
            i += 1
            if name == "full":
                req = JobRequest(req.id, project, req.created_at, req.replicas[:1], 0)
            placements = capacity.try_place(req)
            if placements is None:
                if name == "full":
                    fill = JobRequest(
                        req.id, project, 0.0, (ReplicaRequest("w", 0, 1, 4.0, 2**34),)
                    )
                    placements = capacity.try_place(fill)
                    if placements is None:
                        break
                    req = fill
                else:
                    continue
            used += req.gpu
            running.append(
                RunningJob(
                    req.id,
                    project,
                    req.gpu,
                    req.preemptible,
                    req.created_at + 60,
                    placements,
                    priority=req.priority,
                    attained_gpu_seconds=req.attained_gpu_seconds,
                )
            )
        nodes = [
            NodeState(
                n.name,
                n.pool,
                n.labels,
                n.gpu_model,
                n.cpus,
                n.memory,
                tuple(capacity.devices[k]),
                capacity.cpu[k],
                capacity.memory[k],
            )
            for k, n in enumerate(nodes)
        ]
    pending = [
        _request(rng, f"job-{i}", rng.choice(names), now - rng.uniform(0, 50_000))
        for i in range(PENDING)
    ]
    if name == "full":
        # Nothing can reclaim: every project at or over quota stays so; pending ones borrow.
        usage: dict[str, float] = {}
        for r in running:
            usage[r.project] = usage.get(r.project, 0.0) + r.gpu
        projects = {
            k: ProjectState(k, gpu_quota=min(p.gpu_quota, usage.get(k, 0.0)), weight=p.weight)
            for k, p in projects.items()
        }
        pending = [
            JobRequest(j.id, j.project, j.created_at, j.replicas, 0, True, False) for j in pending
        ]
    return Snapshot(now, tuple(nodes), projects, tuple(pending), tuple(running))


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, math.ceil(len(ordered) * 0.95) - 1)]
    return round(statistics.median(ordered), 2), round(p95, 2), round(ordered[-1], 2)


def measure(policy: Policy, snap: Snapshot, repeat: int) -> dict[str, float | int | str]:
    times = []
    cpu = []
    decisions = policy.decide(snap)
    # The collector as in the server's control process (pier.gc_tuning): what is alive now
    # (the snapshot, the policy's caches) is frozen, young collections are rarer.
    gc_tuning.settle()
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        decisions = policy.decide(snap)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    p50, p95, most = _percentiles(times)
    cpu_p50, cpu_p95, _ = _percentiles(cpu)
    admitted = len(decisions.admit)
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": most,
        "cpu_p50_ms": cpu_p50,
        "cpu_p95_ms": cpu_p95,
        "admitted": admitted,
        "admitted_per_s_p50": round(admitted / (p50 / 1000)) if p50 else 0,
        "admitted_per_s_cpu_p50": round(admitted / (cpu_p50 / 1000)) if cpu_p50 else 0,
        "preempted": len(decisions.preempt),
        "pending": len(decisions.pending),
        "running": len(snap.running),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--policy", choices=["quota", "las"], default="quota")
    parser.add_argument("--scenario", action="append", choices=["busy", "full", "empty", "admit"])
    args = parser.parse_args()
    policy: Policy = QuotaPolicy() if args.policy == "quota" else LasPolicy()
    for name in args.scenario or ["busy", "full", "empty", "admit"]:
        snap = scenario(name)
        result = {"scenario": name, "policy": args.policy, **measure(policy, snap, args.repeat)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
