"""The Neuro SDK's job dataclasses (``neuromation.api``), field for field, read-only.

What each field means to pier is in ``docs/sdk-neuro.md`` and in :mod:`.translate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from yarl import URL

__all__ = [
    "Container",
    "HTTPPort",
    "JobDescription",
    "JobStatus",
    "JobStatusHistory",
    "JobTelemetry",
    "RemoteImage",
    "Resources",
    "Volume",
]


class JobStatus(str, Enum):  # noqa: UP042 - Neuro's JobStatus is a (str, Enum), not a StrEnum
    """A job's state, as the Neuro SDK names it."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RemoteImage:
    """An image reference ``[registry/][owner/]name[:tag]``. A pier with a container runtime
    runs the job in it; without one, the image is recorded, not pulled."""

    name: str
    tag: str | None = None
    owner: str | None = None
    registry: str | None = None

    @classmethod
    def parse(cls, text: str) -> RemoteImage:
        """``"ubuntu:22.04"`` -> RemoteImage("ubuntu", "22.04"); registry/owner from the
        leading path segments."""
        path, _, tag = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] else (text, "", "")
        parts = path.split("/")
        name = parts[-1]
        owner = parts[-2] if len(parts) >= 2 else None
        registry = "/".join(parts[:-2]) if len(parts) >= 3 else None
        return cls(name=name, tag=tag or None, owner=owner, registry=registry)

    def __str__(self) -> str:
        prefix = "/".join(p for p in (self.registry, self.owner) if p)
        ref = f"{prefix}/{self.name}" if prefix else self.name
        return f"{ref}:{self.tag}" if self.tag else ref


@dataclass(frozen=True)
class Resources:
    memory_mb: int
    """Requested memory, megabytes (2**20 bytes, as Kubernetes' ``Mi``)."""
    cpu: float
    gpu: int | None = None
    gpu_model: str | None = None
    shm: bool | None = None


@dataclass(frozen=True)
class HTTPPort:
    port: int
    requires_auth: bool = True


@dataclass(frozen=True)
class Volume:
    """A directory of the server's machine (``file:///path`` or ``/path``) made available
    at ``container_path``."""

    storage_uri: URL
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Container:
    image: RemoteImage
    resources: Resources
    entrypoint: str | None = None
    command: str | None = None
    http: HTTPPort | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: Sequence[Volume] = field(default_factory=list)


@dataclass(frozen=True)
class JobStatusHistory:
    status: JobStatus
    reason: str
    description: str
    exit_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class JobDescription:
    id: str
    owner: str
    status: JobStatus
    history: JobStatusHistory
    container: Container
    is_preemptible: bool
    name: str | None = None
    description: str | None = None
    http_url: URL = field(default_factory=URL)
    ssh_server: URL = field(default_factory=URL)
    internal_hostname: str | None = None


@dataclass(frozen=True)
class JobTelemetry:
    timestamp: float
    """Seconds since the epoch, like ``time.time()``."""
    cpu: float
    """CPU load: 1 is one fully loaded core."""
    memory: float
    """Resident memory, megabytes."""
    gpu_duty_cycle: int | None = None
    """Percent of time the job's GPUs were busy; None without a GPU."""
    gpu_memory: float | None = None
    """Share of the job's GPU memory in use, 0..1; None without a GPU."""
