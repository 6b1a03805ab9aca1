"""Builders for scheduler tests: nodes whose free capacity follows from the running jobs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from pier.scheduler.types import (
    Decisions,
    JobRequest,
    NodeState,
    Placement,
    Policy,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)


def node(
    name: str,
    gpus: int = 8,
    *,
    pool: str = "default",
    model: str | None = "a100",
    labels: Mapping[str, str] | None = None,
    cpus: float = 64.0,
    memory: int = 2**40,
) -> NodeState:
    return NodeState(
        name=name,
        pool=pool,
        labels=dict(labels or {}),
        gpu_model=model if gpus else None,
        cpus=cpus,
        memory=memory,
        device_free=(1.0,) * gpus,
        cpu_free=cpus,
        memory_free=memory,
    )


def job(
    job_id: str,
    gpu: float = 1.0,
    *,
    project: str = "p",
    created_at: float = 0.0,
    replicas: int = 1,
    preemptible: bool = True,
    interactive: bool = False,
    priority: int | None = None,
    cpu: float = 0.0,
    memory: int = 0,
    pool: str | None = None,
    model: str | None = None,
    schedule_timeout: float | None = None,
    not_before: float | None = None,
    pending_since: float | None = None,
    attained: float = 0.0,
) -> JobRequest:
    return JobRequest(
        id=job_id,
        project=project,
        created_at=created_at,
        replicas=tuple(
            ReplicaRequest("w", i, gpu, cpu, memory, model, pool) for i in range(replicas)
        ),
        priority=priority if priority is not None else (1 if interactive else 0),
        preemptible=preemptible,
        interactive=interactive,
        schedule_timeout=schedule_timeout,
        not_before=not_before,
        pending_since=pending_since,
        attained_gpu_seconds=attained,
    )


def interactive(job_id: str, gpu: float = 1.0, **kwargs: object) -> JobRequest:
    return job(job_id, gpu, preemptible=False, interactive=True, **kwargs)  # type: ignore[arg-type]


def running(
    job_id: str,
    project: str,
    placements: Sequence[tuple[str, Sequence[int]]],
    *,
    started_at: float = 0.0,
    preemptible: bool = True,
    priority: int = 0,
    terminating: bool = False,
    fraction: float = 0.0,
    attained: float = 0.0,
) -> RunningJob:
    """A running job holding whole devices (or ``fraction`` of each) on the given nodes."""
    places = tuple(
        Placement("w", i, name, tuple(devices), fraction)
        for i, (name, devices) in enumerate(placements)
    )
    gpu = sum(fraction if fraction else len(p.devices) for p in places)
    return RunningJob(
        job_id,
        project,
        gpu,
        preemptible,
        started_at,
        places,
        priority=priority,
        terminating=terminating,
        attained_gpu_seconds=attained,
    )


def snapshot(
    nodes: Iterable[NodeState],
    *,
    pending: Iterable[JobRequest] = (),
    running_jobs: Iterable[RunningJob] = (),
    projects: Iterable[ProjectState] = (),
    now: float = 1000.0,
) -> Snapshot:
    """Free capacity of each node = its size less the running jobs' placements."""
    run = tuple(running_jobs)
    used: dict[tuple[str, int], float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    mem: dict[str, int] = defaultdict(int)
    for r in run:
        for p in r.placements:
            for d in p.devices:
                used[(p.node, d)] += p.gpu_fraction or 1.0
            cpu[p.node] += p.cpu
            mem[p.node] += p.memory
    states = tuple(
        NodeState(
            n.name,
            n.pool,
            n.labels,
            n.gpu_model,
            n.cpus,
            n.memory,
            tuple(max(0.0, 1.0 - used[(n.name, d)]) for d in range(len(n.device_free))),
            n.cpus - cpu[n.name],
            n.memory - mem[n.name],
        )
        for n in nodes
    )
    return Snapshot(
        now=now,
        nodes=states,
        projects={p.name: p for p in projects},
        pending=tuple(pending),
        running=run,
    )


def decide(policy: Policy, snap: Snapshot) -> Decisions:
    return policy.decide(snap)


def admitted(decisions: Decisions) -> list[str]:
    return [a.job_id for a in decisions.admit]


def preempted(decisions: Decisions) -> list[str]:
    return [f.job_id for f in decisions.preempt]
