"""Request and response bodies of the native REST API (``/v1``), shared by server and SDK.

Requests reject unknown fields; fields the server owns (ids, owner, status, times) appear only
in responses. No I/O here.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from pier.spec import NAME_MAX, NAME_PATTERN, JobSpec, Memory
from pier.status import JobStatus

__all__ = [
    "ErrorBody",
    "HistoryEntry",
    "JobTelemetryView",
    "JobView",
    "MemberAdd",
    "NodeView",
    "Page",
    "ProjectCreate",
    "ProjectUpdate",
    "ProjectView",
    "ReplicaView",
    "TokenCreate",
    "TokenView",
    "UserCreate",
    "UserView",
]

T = TypeVar("T")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorDetail(_Response):
    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str = "value_error"


class ErrorBody(_Response):
    """Every native 4xx/5xx: ``{"error": {"code", "message", "details": [...]}}``."""

    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class TokenCreate(_Request):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    name: str | None = Field(None, max_length=128)
    expires_in: int | None = Field(None, ge=60, le=366 * 86400, description="seconds")


class TokenView(_Response):
    id: str
    token: str | None = None
    """Only in the answer to ``POST /v1/tokens``; never stored or shown again."""
    user: str
    name: str | None = None
    created_at: float
    expires_at: float
    revoked_at: float | None = None


class UserCreate(_Request):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    password: str = Field(min_length=8, max_length=1024)
    is_admin: bool = False
    email: str | None = Field(None, max_length=256)
    projects: list[str] = Field(default_factory=list)


class UserView(_Response):
    id: str
    name: str
    is_admin: bool
    email: str | None = None
    default_project: str | None = None
    projects: list[str] = Field(default_factory=list)
    created_at: float


class ProjectCreate(_Request):
    name: str = Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)
    description: str | None = Field(None, max_length=4096)
    department: str | None = Field(None, max_length=NAME_MAX)
    gpu_quota: float = Field(0.0, ge=0, le=1_000_000, description="deserved GPUs")
    cpu_quota: float | None = Field(None, ge=0, le=10_000_000)
    memory_quota: Memory | None = None
    max_gpu: float | None = Field(None, ge=0, le=1_000_000, description="hard limit")
    weight: float | None = Field(None, gt=0, le=1_000_000, description="fair-share weight")
    node_pools: list[str] = Field(default_factory=list)
    members: list[str] = Field(default_factory=list)


class ProjectUpdate(_Request):
    description: str | None = Field(None, max_length=4096)
    department: str | None = Field(None, max_length=NAME_MAX)
    gpu_quota: float | None = Field(None, ge=0, le=1_000_000)
    cpu_quota: float | None = Field(None, ge=0, le=10_000_000)
    memory_quota: Memory | None = None
    max_gpu: float | None = Field(None, ge=0, le=1_000_000)
    weight: float | None = Field(None, gt=0, le=1_000_000)
    node_pools: list[str] | None = None


class ProjectView(_Response):
    id: str
    name: str
    description: str | None = None
    department: str | None = None
    gpu_quota: float
    cpu_quota: float | None = None
    memory_quota: int | None = None
    max_gpu: float | None = None
    weight: float | None = None
    node_pools: list[str] = Field(default_factory=list)
    members: list[str] = Field(default_factory=list)
    created_at: float
    gpu_allocated: float = 0.0
    jobs_running: int = 0
    jobs_pending: int = 0


class MemberAdd(_Request):
    user: str = Field(min_length=1, max_length=64)
    role: str = Field("member", pattern=r"^(member|admin)$")


class HistoryEntry(_Response):
    status: JobStatus
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    attempt: int = 0
    created_at: float


class ReplicaView(_Response):
    task: str
    index: int
    node: str
    devices: list[int] = Field(default_factory=list)
    gpu_fraction: float = 0.0


class JobView(_Response):
    id: str
    name: str
    project: str
    owner: str
    status: JobStatus
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    kind: str
    preemptible: bool
    gpu: float
    attempt: int = 0
    retries: int = 0
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    submission_id: str | None = None
    stop_requested: bool = False
    replicas: list[ReplicaView] = Field(default_factory=list)
    pending_reason: str | None = None
    queue_position: int | None = None
    spec: JobSpec
    history: list[HistoryEntry] | None = None


class DeviceView(_Response):
    index: int
    model: str
    memory_bytes: int = 0
    allocated: float = 0.0


class NodeView(_Response):
    name: str
    pool: str
    labels: dict[str, str] = Field(default_factory=dict)
    cpus: float
    memory_bytes: int
    gpus: list[DeviceView] = Field(default_factory=list)
    gpu_allocated: float = 0.0


class Page(_Response, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class JobTelemetryView(_Response):
    """One usage sample of a running job (``GET /v1/jobs/{ref}/telemetry``, one per line)."""

    timestamp: float
    """Seconds since the epoch."""
    cpu: float
    """Cores busy: 1.0 is one core fully loaded."""
    memory: float
    """Resident memory of the job's processes, megabytes (2**20 bytes)."""
    gpu_duty_cycle: int | None = None
    """Percent of time the job's GPUs were busy; None without a (real) GPU."""
    gpu_memory: float | None = None
    """Share of the job's GPU memory in use, 0..1; None without a (real) GPU."""
    attempt: int = 0
    processes: int = 0
