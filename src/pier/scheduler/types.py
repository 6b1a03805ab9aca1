"""The scheduler's inputs and outputs: an immutable snapshot in, decisions out. No I/O.

The same types feed the server loop and the trace simulator, so a policy is measured on
traces exactly as it runs in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Admission",
    "Decisions",
    "Failure",
    "JobRequest",
    "NodeState",
    "PendingInfo",
    "Placement",
    "Policy",
    "ProjectState",
    "ReplicaRequest",
    "RunningJob",
    "Snapshot",
]


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node and what is still free on it."""

    name: str
    pool: str
    labels: Mapping[str, str]
    gpu_model: str | None
    cpus: float
    memory: int
    device_free: tuple[float, ...]
    """Free share of each device, by device index (1.0 = idle, 0.0 = fully used)."""
    cpu_free: float
    memory_free: int


@dataclass(frozen=True, slots=True)
class ReplicaRequest:
    task: str
    index: int
    gpu: float
    cpu: float = 0.0
    memory: int = 0
    gpu_model: str | None = None
    node_pool: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobRequest:
    id: str
    project: str
    created_at: float
    replicas: tuple[ReplicaRequest, ...]
    priority: int = 0
    preemptible: bool = True
    interactive: bool = False
    schedule_timeout: float | None = None
    not_before: float | None = None
    attained_gpu_seconds: float = 0.0
    """GPU-seconds of service the job received in earlier attempts (least-attained-service
    policies order by it; others ignore it)."""
    pending_since: float | None = None
    """When the job last entered Pending (submission, retry or preemption); its schedule
    timeout counts from here. ``None`` reads as ``created_at``."""

    @property
    def gpu(self) -> float:
        return sum(r.gpu for r in self.replicas)


@dataclass(frozen=True, slots=True)
class Placement:
    task: str
    index: int
    node: str
    devices: tuple[int, ...] = ()
    gpu_fraction: float = 0.0
    cpu: float = 0.0
    """CPUs the replica holds on the node (0 where unknown)."""
    memory: int = 0
    """Bytes of memory the replica holds on the node (0 where unknown)."""


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: str
    project: str
    gpu: float
    preemptible: bool
    started_at: float
    placements: tuple[Placement, ...] = ()
    priority: int = 0
    terminating: bool = False
    """A stop (or a preemption) was already sent: its resources are about to be freed, it is
    not counted as the project's usage and cannot be chosen as a victim again."""
    attained_gpu_seconds: float = 0.0
    """GPU-seconds of service received before the current attempt started."""


@dataclass(frozen=True, slots=True)
class ProjectState:
    name: str
    gpu_quota: float = 0.0
    max_gpu: float | None = None
    weight: float | None = None
    department: str | None = None
    cpu_quota: float | None = None
    memory_quota: int | None = None
    service_history: tuple[float, ...] = ()
    """GPU-seconds of service that the project's most recently finished preemptible jobs
    received in all, oldest first (the server sends up to 1,000): what ``GittinsPolicy``
    learns the distribution of job sizes from. Empty where not needed."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float
    nodes: tuple[NodeState, ...]
    projects: Mapping[str, ProjectState]
    pending: tuple[JobRequest, ...]
    running: tuple[RunningJob, ...] = ()


@dataclass(frozen=True, slots=True)
class Admission:
    job_id: str
    placements: tuple[Placement, ...]


@dataclass(frozen=True, slots=True)
class Failure:
    job_id: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PendingInfo:
    reason: str
    message: str
    position: int


@dataclass(slots=True)
class Decisions:
    admit: list[Admission] = field(default_factory=list)
    fail: list[Failure] = field(default_factory=list)
    preempt: list[Failure] = field(default_factory=list)
    pending: dict[str, PendingInfo] = field(default_factory=dict)


class Policy(Protocol):
    def decide(self, snapshot: Snapshot) -> Decisions: ...
