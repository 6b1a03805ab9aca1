"""Building the scheduler's snapshot from the store and the executor's inventory."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, func, select

from pier.executors.base import NodeInfo
from pier.scheduler.types import (
    JobRequest,
    NodeState,
    Placement,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)
from pier.services.accounts import DEFAULT_PROJECT
from pier.spec import JobKind, JobSpec
from pier.status import JobStatus
from pier.store.tables import jobs, projects

__all__ = [
    "CycleInputs",
    "SpecCache",
    "job_priority",
    "job_request",
    "load_snapshot",
    "node_states",
    "placements_of",
    "project_states",
    "service_histories",
]

_PLACED = (JobStatus.PENDING.value, JobStatus.RUNNING.value, JobStatus.UNKNOWN.value)


def job_request(
    job_id: str,
    project: str,
    spec: JobSpec,
    created_at: float,
    *,
    not_before: float | None = None,
    pending_since: float | None = None,
    attained_gpu_seconds: float = 0.0,
) -> JobRequest:
    replicas = tuple(
        ReplicaRequest(
            task=task.name,
            index=i,
            gpu=task.resources.gpu,
            cpu=task.resources.cpu or 0.0,
            memory=task.resources.memory or 0,
            gpu_model=task.resources.gpu_model,
            node_pool=task.resources.node_pool,
            node_selector=task.resources.node_selector,
        )
        for task in spec.tasks
        for i in range(task.replicas)
    )
    interactive = spec.kind is JobKind.INTERACTIVE
    return JobRequest(
        id=job_id,
        project=project,
        created_at=created_at,
        replicas=replicas,
        priority=job_priority(spec),
        preemptible=spec.is_preemptible,
        interactive=interactive,
        schedule_timeout=spec.lifecycle.schedule_timeout,
        not_before=not_before,
        attained_gpu_seconds=attained_gpu_seconds,
        pending_since=pending_since,
    )


def job_priority(spec: JobSpec) -> int:
    """Interactive jobs rank above training jobs (1 and 0)."""
    return 1 if spec.kind is JobKind.INTERACTIVE else 0


def project_states(rows: Iterable[Any], nodes: Iterable[NodeInfo]) -> dict[str, ProjectState]:
    """The projects as the scheduler sees them.

    The ``default`` project, while its GPU quota is unset (0), deserves what the other
    projects' quotas leave of the cluster: on a single machine with nothing configured, all
    of it, so interactive (non-preemptible) GPU jobs run there out of the box; once an admin
    gives other projects quotas, ``default`` shrinks to the rest."""
    rows = list(rows)
    states = {
        p.name: ProjectState(
            p.name,
            gpu_quota=p.gpu_quota or 0.0,
            max_gpu=p.max_gpu,
            weight=p.weight,
            department=p.department,
            cpu_quota=p.cpu_quota,
            memory_quota=p.memory_quota,
        )
        for p in rows
    }
    default = states.get(DEFAULT_PROJECT)
    if default is not None and not default.gpu_quota:
        total = sum(len(n.gpus) for n in nodes)
        others = sum(s.gpu_quota for name, s in states.items() if name != DEFAULT_PROJECT)
        states[DEFAULT_PROJECT] = replace(default, gpu_quota=max(0.0, total - others))
    return states


def service_histories(conn: Connection, limit: int) -> dict[str, tuple[float, ...]]:
    """Per project, the attained GPU-seconds of its ``limit`` most recently finished
    preemptible jobs that succeeded, oldest first (``ProjectState.service_history``, which
    ``GittinsPolicy`` learns job sizes from)."""
    rank = (
        func.row_number()
        .over(
            partition_by=jobs.c.project_id,
            order_by=(jobs.c.finished_at.desc(), jobs.c.id.desc()),
        )
        .label("rank")
    )
    recent = (
        select(jobs.c.project_id, jobs.c.attained_gpu_seconds, jobs.c.finished_at, jobs.c.id, rank)
        .where(jobs.c.status == JobStatus.SUCCEEDED.value)
        .where(jobs.c.preemptible.is_(True))
        .where(jobs.c.attained_gpu_seconds > 0)
        .subquery()
    )
    rows = conn.execute(
        select(projects.c.name, recent.c.attained_gpu_seconds)
        .join(projects, projects.c.id == recent.c.project_id)
        .where(recent.c.rank <= limit)
        .order_by(recent.c.project_id, recent.c.finished_at, recent.c.id)
    ).all()
    histories: dict[str, list[float]] = defaultdict(list)
    for name, attained in rows:
        histories[name].append(float(attained))
    return {name: tuple(values) for name, values in histories.items()}


def placements_of(
    allocation: Sequence[dict[str, Any]] | None, spec: JobSpec | None = None
) -> tuple[Placement, ...]:
    """A stored allocation as placements; with the job's spec, each carries the CPU and
    memory its replica holds (what a preemption would free)."""
    resources = {t.name: t.resources for t in spec.tasks} if spec is not None else {}
    placements = []
    for a in allocation or ():
        r = resources.get(a["task"])
        placements.append(
            Placement(
                task=a["task"],
                index=int(a["index"]),
                node=a["node"],
                devices=tuple(a.get("devices", ())),
                gpu_fraction=float(a.get("gpu_fraction", 0.0)),
                cpu=(r.cpu or 0.0) if r is not None else 0.0,
                memory=(r.memory or 0) if r is not None else 0,
            )
        )
    return tuple(placements)


def node_states(
    nodes: Iterable[NodeInfo],
    used: Iterable[tuple[Placement, float, int]],
) -> tuple[NodeState, ...]:
    """Free capacity per node after the ``(placement, cpu, memory)`` already in use."""
    device_used: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    cpu_used: dict[str, float] = defaultdict(float)
    mem_used: dict[str, int] = defaultdict(int)
    for placement, cpu, memory in used:
        for d in placement.devices:
            device_used[placement.node][d] += placement.gpu_fraction or 1.0
        cpu_used[placement.node] += cpu
        mem_used[placement.node] += memory
    states = []
    for n in nodes:
        devices = tuple(
            max(0.0, 1.0 - device_used[n.name][d.index]) for d in sorted(n.gpus, key=_index)
        )
        states.append(
            NodeState(
                name=n.name,
                pool=n.pool,
                labels=n.labels,
                gpu_model=n.gpus[0].model if n.gpus else None,
                cpus=n.cpus,
                memory=n.memory_bytes,
                device_free=devices,
                cpu_free=n.cpus - cpu_used[n.name],
                memory_free=n.memory_bytes - mem_used[n.name],
            )
        )
    return tuple(states)


def _index(device: Any) -> int:
    return int(device.index)


class SpecCache:
    """Parsed specs and scheduler requests by job id. A job's spec never changes, and
    reading and parsing thousands of them every cycle would dominate the cycle."""

    def __init__(self) -> None:
        self._specs: dict[str, JobSpec] = {}
        self._requests: dict[str, tuple[tuple[float | None, ...], JobRequest]] = {}

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._specs

    def get(self, job_id: str, raw: dict[str, Any]) -> JobSpec:
        spec = self._specs.get(job_id)
        if spec is None:
            spec = self._specs[job_id] = JobSpec.model_validate(raw)
        return spec

    def cached(self, job_id: str) -> JobSpec:
        return self._specs[job_id]

    def request(
        self,
        job_id: str,
        project: str,
        created_at: float,
        not_before: float | None,
        pending_since: float | None = None,
        attained_gpu_seconds: float | None = None,
    ) -> JobRequest:
        key = (created_at, not_before, pending_since, attained_gpu_seconds)
        hit = self._requests.get(job_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        req = job_request(
            job_id,
            project,
            self._specs[job_id],
            created_at,
            not_before=not_before,
            pending_since=pending_since,
            attained_gpu_seconds=attained_gpu_seconds or 0.0,
        )
        self._requests[job_id] = (key, req)
        return req

    def forget(self, job_id: str) -> None:
        self._specs.pop(job_id, None)
        self._requests.pop(job_id, None)

    def retain(self, job_ids: set[str]) -> None:
        """Drop every job not in ``job_ids`` (ended, deleted): the cache follows the queue."""
        for job_id in [j for j in self._specs if j not in job_ids]:
            self.forget(job_id)


@dataclass(frozen=True, slots=True)
class CycleInputs:
    snapshot: Snapshot
    specs: dict[str, JobSpec]
    """Specs of every job in the snapshot, pending or placed."""
    names: dict[str, str]
    to_stop: list[tuple[str, int, float]]
    """(job id, attempt, grace seconds) of placed jobs whose stop (by a user, or a
    preemption) was requested."""
    preempting: frozenset[tuple[str, int]] = frozenset()
    """(job id, attempt) of placed jobs being preempted."""
    attempts: Mapping[str, int] = field(default_factory=dict)
    """The current attempt of every placed job."""


def load_snapshot(
    conn: Connection,
    nodes: Sequence[NodeInfo],
    specs: SpecCache,
    now: float,
    only_pending: Collection[str] | None = None,
    histories: Mapping[str, tuple[float, ...]] | None = None,
) -> CycleInputs:
    """Everything one scheduling cycle needs, read in one transaction.

    With ``only_pending``, the snapshot holds every placed job (what is in use) but only
    those pending jobs: an incremental pass over jobs just submitted. ``histories``
    (:func:`service_histories`) go into the projects' ``service_history``."""
    project_rows = conn.execute(select(projects)).all()
    project_names = {p.id: p.name for p in project_rows}
    # Specs are read only for jobs this process has not parsed yet: the light columns of
    # 10,000 queued jobs cost a few ms, their JSON specs tens.
    light = select(
        jobs.c.id,
        jobs.c.project_id,
        jobs.c.status,
        jobs.c.allocation,
        jobs.c.created_at,
        jobs.c.started_at,
        jobs.c.not_before,
        jobs.c.gpu,
        jobs.c.preemptible,
        jobs.c.stop_requested_at,
        jobs.c.attempt,
        jobs.c.name,
        jobs.c.pending_since,
        jobs.c.attained_gpu_seconds,
        jobs.c.preempt_requested_at,
    )
    if only_pending is None:
        rows = conn.execute(light.where(jobs.c.status.in_(_PLACED))).all()
        specs.retain({r.id for r in rows})
    else:
        rows = list(
            conn.execute(
                light.where(jobs.c.status.in_(_PLACED)).where(jobs.c.allocation.is_not(None))
            ).all()
        )
        if only_pending:
            rows += conn.execute(
                light.where(jobs.c.id.in_(list(only_pending)))
                .where(jobs.c.status == JobStatus.PENDING.value)
                .where(jobs.c.allocation.is_(None))
            ).all()
    missing = [r.id for r in rows if r.id not in specs]
    for i in range(0, len(missing), 500):
        chunk = missing[i : i + 500]
        for job_id, raw in conn.execute(
            select(jobs.c.id, jobs.c.spec).where(jobs.c.id.in_(chunk))
        ).all():
            specs.get(job_id, raw)
    pending: list[JobRequest] = []
    running: list[RunningJob] = []
    used: list[tuple[Placement, float, int]] = []
    all_specs: dict[str, JobSpec] = {}
    names: dict[str, str] = {}
    to_stop: list[tuple[str, int, float]] = []
    preempting: set[tuple[str, int]] = set()
    attempts: dict[str, int] = {}
    for row in rows:
        spec = specs.cached(row.id)
        all_specs[row.id] = spec
        names[row.id] = row.name
        project = project_names[row.project_id]
        if row.allocation is None:
            if row.status == JobStatus.PENDING and row.stop_requested_at is None:
                pending.append(
                    specs.request(
                        row.id,
                        project,
                        row.created_at,
                        row.not_before,
                        row.pending_since,
                        row.attained_gpu_seconds,
                    )
                )
            continue
        attempts[row.id] = row.attempt
        terminating = row.stop_requested_at is not None or row.preempt_requested_at is not None
        if terminating:
            to_stop.append((row.id, row.attempt, spec.lifecycle.stop_grace_period))
        if row.preempt_requested_at is not None and row.stop_requested_at is None:
            preempting.add((row.id, row.attempt))
        placements = placements_of(row.allocation, spec)
        used.extend((p, p.cpu, p.memory) for p in placements)
        running.append(
            RunningJob(
                row.id,
                project,
                row.gpu,
                row.preemptible,
                row.started_at or now,
                placements,
                priority=job_priority(spec),
                terminating=terminating,
                attained_gpu_seconds=row.attained_gpu_seconds or 0.0,
            )
        )
    project_map = project_states(project_rows, nodes)
    if histories:
        for name, history in histories.items():
            if name in project_map:
                project_map[name] = replace(project_map[name], service_history=history)
    snapshot = Snapshot(
        now=now,
        nodes=node_states(nodes, used),
        projects=project_map,
        pending=tuple(pending),
        running=tuple(running),
    )
    return CycleInputs(snapshot, all_specs, names, to_stop, frozenset(preempting), attempts)
