"""Seeded random snapshots and a digest of a policy's decisions on them, to check that a
faster implementation decides exactly as the one before it (see test_decisions_golden.py)."""

from __future__ import annotations

import hashlib
import json
import random

from pier.scheduler.capacity import Capacity
from pier.scheduler.types import (
    Decisions,
    JobRequest,
    NodeState,
    Placement,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)

SHAPES = [0.0, 0.25, 0.5, 1.0, 1.0, 1.0, 2.0, 4.0, 8.0]


def _request(rng: random.Random, job_id: str, projects: list[str], now: float) -> JobRequest:
    gpu = rng.choice(SHAPES)
    cpu = rng.choice([0.0, 1.0, 8.0])
    memory = rng.choice([0, 2**30, 2**34])
    pool = rng.choice([None, None, "a", "b"])
    model = rng.choice([None, None, None, "a100", "H100"])
    selector = {"zone": "z1"} if rng.random() < 0.1 else {}
    replicas = tuple(
        ReplicaRequest("w", i, gpu, cpu, memory, model, pool, selector)
        for i in range(rng.choice([1, 1, 1, 1, 2, 3]))
    )
    preemptible = rng.random() < 0.8
    interactive = not preemptible and rng.random() < 0.5
    return JobRequest(
        job_id,
        rng.choice(projects),
        now - rng.uniform(0, 5000),
        replicas,
        priority=1 if interactive else rng.choice([0, 0, 0, 2]),
        preemptible=preemptible,
        interactive=interactive,
        schedule_timeout=rng.choice([None, None, None, 10.0, 3000.0]),
        not_before=rng.choice([None] * 6 + [now - 10, now + 100]),
        attained_gpu_seconds=rng.choice([0.0, 0.0, 1800.0, 7200.0, 90000.0]),
        pending_since=rng.choice([None, None, now - rng.uniform(0, 1000)]),
    )


def random_snapshot(seed: int, nodes: int = 12, pending: int = 120) -> Snapshot:
    """A cluster partly filled by running jobs (some stopping), projects in departments with
    quotas and limits, and pending jobs of every kind."""
    rng = random.Random(seed)
    now = 10_000.0
    states = [
        NodeState(
            f"n{i}",
            rng.choice(["a", "b"]),
            {"zone": rng.choice(["z1", "z2"])},
            rng.choice(["a100", "h100"]),
            float(rng.choice([16, 64])),
            rng.choice([2**35, 2**38]),
            (1.0,) * rng.choice([0, 4, 8, 8]),
            0.0,
            0,
        )
        for i in range(nodes)
    ]
    states = [
        NodeState(
            n.name, n.pool, n.labels, n.gpu_model, n.cpus, n.memory, n.device_free, n.cpus, n.memory
        )
        for n in states
    ]
    names = [f"p{i}" for i in range(rng.choice([2, 4, 6]))]
    projects = {
        name: ProjectState(
            name,
            gpu_quota=float(rng.choice([0, 2, 4, 8, 16])),
            max_gpu=rng.choice([None, None, 24.0]),
            weight=rng.choice([None, None, 1.0, 3.0]),
            department=rng.choice([None, "d1", "d2"]),
            cpu_quota=rng.choice([None, None, None, 40.0]),
            memory_quota=rng.choice([None, None, None, 2**37]),
        )
        for name in names[:-1]  # the last project is unknown to the snapshot
    }
    capacity = Capacity(states)
    running: list[RunningJob] = []
    fill = rng.uniform(0.3, 1.0)
    total = sum(len(n.device_free) for n in states)
    used = 0.0
    for i in range(4 * total):
        if used >= fill * total:
            break
        req = _request(rng, f"r{i}", names, now)
        placements = capacity.try_place(req)
        if placements is None:
            continue
        used += req.gpu
        running.append(
            RunningJob(
                req.id,
                req.project,
                req.gpu,
                req.preemptible,
                now - rng.uniform(0, 20_000),
                placements,
                priority=req.priority,
                terminating=rng.random() < 0.05,
                attained_gpu_seconds=req.attained_gpu_seconds,
            )
        )
    free = [
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
        for k, n in enumerate(states)
    ]
    jobs = [_request(rng, f"j{i}", names, now) for i in range(pending)]
    rng.shuffle(jobs)
    return Snapshot(now, tuple(free), projects, tuple(jobs), tuple(running))


def _placement(p: Placement) -> list[object]:
    return [p.task, p.index, p.node, list(p.devices), p.gpu_fraction, p.cpu, p.memory]


def digest(decisions: Decisions) -> str:
    """A hash of everything decided, in order."""
    record = {
        "admit": [[a.job_id, [_placement(p) for p in a.placements]] for a in decisions.admit],
        "fail": [[f.job_id, f.reason, f.message] for f in decisions.fail],
        "preempt": [[f.job_id, f.reason, f.message] for f in decisions.preempt],
        "pending": sorted(
            [k, v.reason, v.message, v.position] for k, v in decisions.pending.items()
        ),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
