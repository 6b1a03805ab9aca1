"""The working state of one decision of a quota policy: per-project usage and queues, free
capacity, holds, chosen victims, and what the cycle has learnt (failed placements,
infeasible shapes, explanations) so that it is not worked out twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pier.scheduler.capacity import EPSILON, Capacity, Group, job_signature
from pier.scheduler.fairshare import ShareRequest, fair_shares
from pier.scheduler.fragmentation import Workload
from pier.scheduler.reclaim import VictimIndex
from pier.scheduler.types import (
    Decisions,
    JobRequest,
    PendingInfo,
    Placement,
    ProjectState,
    RunningJob,
    Snapshot,
)

__all__ = [
    "Cycle",
    "Explained",
    "Project",
    "job_cpu",
    "job_gpu",
    "job_memory",
    "no_capacity_message",
    "queue_shapes",
    "running_resources",
]


Explained = tuple[str, str, dict[int, PendingInfo]]
"""Why jobs wait (reason, message) and the explanations made of it, by queue position."""


@dataclass(slots=True)
class Project:
    name: str
    quota: float
    cpu_quota: float | None
    memory_quota: int | None
    max_gpu: float | None
    weight: float
    department: str | None
    used: float = 0.0
    running: float = 0.0
    """GPUs of its running jobs that are not stopping or chosen as victims (what can be
    reclaimed is judged on this, not on what was admitted in this cycle)."""
    cpu: float = 0.0
    memory: int = 0
    np_used: float = 0.0
    np_cpu: float = 0.0
    np_memory: int = 0
    by_priority: dict[int, float] = field(default_factory=dict)
    """GPUs held by preemptible jobs, by priority."""
    fair: float = 0.0
    queue: list[JobRequest] = field(default_factory=list)
    gpus: list[float] = field(default_factory=list)
    """GPUs of each job in ``queue``."""
    shapes: list[object] = field(default_factory=list)
    """:func:`~pier.scheduler.capacity.job_signature` of each job in ``queue``."""
    head: int = 0
    holding: bool = False

    @property
    def counts_resources(self) -> bool:
        """CPU and memory in use matter only against a CPU or memory quota."""
        return self.cpu_quota is not None or self.memory_quota is not None

    @classmethod
    def of(cls, name: str, state: ProjectState | None) -> Project:
        if state is None:
            return cls(name, 0.0, None, None, None, 0.0, None)
        weight = state.weight if state.weight is not None else state.gpu_quota
        return cls(
            name,
            state.gpu_quota,
            state.cpu_quota,
            state.memory_quota,
            state.max_gpu,
            weight,
            state.department,
        )

    def add(self, gpu: float, cpu: float, memory: int, preemptible: bool, priority: int) -> None:
        self.used += gpu
        self.cpu += cpu
        self.memory += memory
        if preemptible:
            self.by_priority[priority] = self.by_priority.get(priority, 0.0) + gpu
        else:
            self.np_used += gpu
            self.np_cpu += cpu
            self.np_memory += memory


def queue_shapes(queue: list[JobRequest]) -> tuple[list[float], list[object]]:
    """GPUs and :func:`~pier.scheduler.capacity.job_signature` of each job, in one pass
    (reading each job's replicas once: a cycle is bound by visiting ten thousand jobs)."""
    gpus: list[float] = []
    shapes: list[object] = []
    add_gpu, add_shape = gpus.append, shapes.append
    for job in queue:
        replicas = job.replicas
        if len(replicas) == 1:
            r = replicas[0]
            labels = tuple(r.node_selector.items()) if r.node_selector else ()
            add_shape((r.gpu, r.cpu, r.memory, r.node_pool, r.gpu_model, labels))
            add_gpu(r.gpu)
        else:
            add_shape(job_signature(job))
            add_gpu(sum([x.gpu for x in replicas]))
    return gpus, shapes


def job_gpu(job: JobRequest) -> float:
    replicas = job.replicas
    return replicas[0].gpu if len(replicas) == 1 else sum(r.gpu for r in replicas)


def job_cpu(job: JobRequest) -> float:
    return sum(r.cpu for r in job.replicas)


def job_memory(job: JobRequest) -> int:
    return sum(r.memory for r in job.replicas)


def running_resources(job: RunningJob) -> tuple[float, int]:
    cpu, memory = 0.0, 0
    for p in job.placements:
        cpu += p.cpu
        memory += p.memory
    return cpu, memory


class Cycle:
    """The working state of one decision: usage, free capacity, holds, victims."""

    def __init__(self, snapshot: Snapshot, workload: Workload | None = None) -> None:
        self.snapshot = snapshot
        self.now = snapshot.now
        self.decisions = Decisions()
        self.workload = workload
        self.capacity = Capacity(snapshot.nodes, workload)
        self.projects: dict[str, Project] = {
            name: Project.of(name, state) for name, state in snapshot.projects.items()
        }
        projects = self.projects
        running: dict[str, list[RunningJob]] = {}
        self.running = running
        name: str | None = None
        owner = Project.of("", None)
        listed: list[RunningJob] = []
        detailed = False
        self.stopping = False
        """Some running job is stopping: what it frees may be promised to a waiting job."""
        for run in snapshot.running:
            if run.terminating:
                self.stopping = True
                continue
            if run.project != name:
                name = run.project
                owner = projects.get(name) or self.project(name)
                listed = running.setdefault(name, [])
                detailed = owner.counts_resources
            listed.append(run)
            gpu = run.gpu
            owner.running += gpu
            if detailed:
                cpu, memory = running_resources(run)
                owner.add(gpu, cpu, memory, run.preemptible, run.priority)
                continue
            # the same, without CPU and memory, which no quota of this project needs
            owner.used += gpu
            if run.preemptible:
                by = owner.by_priority
                by[run.priority] = by.get(run.priority, 0.0) + gpu
            else:
                owner.np_used += gpu
        name = None
        queue: list[JobRequest] = []
        for job in snapshot.pending:
            if job.project != name:
                name = job.project
                queue = (projects.get(name) or self.project(name)).queue
            queue.append(job)
        self.admitted: list[Placement] = []
        self.holders: dict[int, str] = {}
        self.victims: set[str] = set()
        self.infeasible: dict[object, str | None] = {}
        self.messages: dict[object, str] = {}
        self.groups: dict[object, Group] = {}
        self.reclaim_failed: set[object] = set()
        """Reclaims that found no victims: with victims only ever removed, the same shape of
        the same rank in the same project finds none either, later in the cycle."""
        self._shadow: Capacity | None = None
        self._victims: VictimIndex | None = None
        self.searches = 0
        self.cpu_only = False
        self.over_quota = any(p.running > p.quota + EPSILON for p in self.projects.values())
        """Some project is over its deserved quota: another's job within quota may reclaim."""
        self._explained: dict[tuple[str, str], Explained] = {}
        self.summaries: dict[str, tuple[int | None, dict[int, int]]] = {}
        """Per project: the lowest priority of its preemptible running jobs, and by priority
        the highest service rank among them."""

    def share_fairly(self) -> None:
        """Every project's fair share of the cluster's GPUs, from its demand: what it runs
        plus what it waits for, capped by its hard limit."""
        capacity = float(sum(len(n.device_free) for n in self.snapshot.nodes))
        requests = []
        for p in self.projects.values():
            demand = p.used + sum(p.gpus)
            if p.max_gpu is not None:
                demand = min(demand, p.max_gpu)
            requests.append(ShareRequest(p.name, p.department, p.quota, p.weight, demand))
        for name, share in fair_shares(capacity, requests).items():
            self.projects[name].fair = share

    def explained(self, reason: str, message: str) -> Explained:
        """A reason and message to wait with, and the explanations made of them so far
        by queue position (shared: an explanation is immutable)."""
        key = (reason, message)
        found = self._explained.get(key)
        if found is None:
            found = self._explained[key] = (reason, message, {})
        return found

    def project(self, name: str) -> Project:
        p = self.projects.get(name)
        if p is None:
            p = self.projects[name] = Project.of(name, None)
        return p

    def shadow(self) -> Capacity:
        """Free capacity once terminating jobs and chosen victims are gone, less what was
        admitted or promised this cycle."""
        if self._shadow is None:
            self._shadow = Capacity(self.snapshot.nodes, self.workload)
            for job in self.snapshot.running:
                if job.terminating:
                    self._shadow.vacate(job.placements)
            self._shadow.occupy(self.admitted)
        return self._shadow

    def shadow_rejected(self, signature: object) -> bool:
        """Whether jobs of ``signature`` are known not to fit in the shadow."""
        return self._shadow is not None and self._shadow.rejected(signature)

    def victim_index(self, rank: Callable[[RunningJob, float], int] | None) -> VictimIndex:
        if self._victims is None:
            self._victims = VictimIndex(self.snapshot.running, self.now, self.capacity.index, rank)
        return self._victims

    def hold(self, nodes: list[int], job_id: str) -> None:
        for node in nodes:
            self.capacity.hold(node)
            self.holders.setdefault(node, job_id)


def no_capacity_message(group: Group, job: JobRequest) -> str:
    """Why a job that could run on an idle cluster does not fit now."""
    where, idle = group.where(), group.idle_total
    if len(job.replicas) > 1:
        return (
            f"gang of {len(job.replicas)} replicas needs {job.gpu:g} GPUs at once; "
            f"{idle} idle GPUs in {where}"
        )
    gpu = job.replicas[0].gpu
    if gpu >= 1 and idle >= gpu:
        return (
            f"fragmentation: {idle} idle GPUs in {where}, but no node has {gpu:g} of them "
            "together with the CPU and memory asked"
        )
    return f"waiting for {gpu:g} GPUs in {where}; {idle} idle"
