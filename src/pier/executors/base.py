"""The executor protocol: what every backend (local processes, Ray, Kubernetes) provides.

An executor runs what the scheduler placed and reports what happened; it never decides
policy. Work is addressed per job *attempt* (a retry or a requeue after preemption is a new
attempt), and each attempt has one or more replicas (``task`` role name + index).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pier.spec import JobSpec

__all__ = [
    "Device",
    "Executor",
    "ExecutorEvent",
    "LaunchRequest",
    "NodeInfo",
    "ProcessGroup",
    "ProcessReporter",
    "ReplicaExited",
    "ReplicaKey",
    "ReplicaLost",
    "ReplicaPlacement",
    "ReplicaStarted",
    "ReplicaUnreachable",
    "StartError",
]


@dataclass(frozen=True, slots=True)
class Device:
    index: int
    model: str
    memory_bytes: int = 0
    uuid: str = ""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One machine the executor can place replicas on."""

    name: str
    cpus: float
    memory_bytes: int
    gpus: tuple[Device, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    pool: str = "default"


@dataclass(frozen=True, slots=True)
class ReplicaKey:
    job_id: str
    attempt: int
    task: str
    index: int

    @property
    def replica(self) -> str:
        return f"{self.task}-{self.index}"


@dataclass(frozen=True, slots=True)
class ReplicaPlacement:
    """Where one replica runs: node, device indexes, and the share of a device when < 1."""

    task: str
    index: int
    node: str
    devices: tuple[int, ...] = ()
    gpu_fraction: float = 0.0


@dataclass(frozen=True, slots=True)
class LaunchRequest:
    job_id: str
    attempt: int
    spec: JobSpec
    placements: tuple[ReplicaPlacement, ...]
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment pier sets for every replica (PIER_JOB_ID, PIER_PROJECT, ...)."""


@dataclass(frozen=True, slots=True)
class ReplicaStarted:
    key: ReplicaKey
    pid: int
    started_at: float


@dataclass(frozen=True, slots=True)
class ReplicaExited:
    key: ReplicaKey
    exit_code: int
    """The process' exit status; ``128 + N`` when it was killed by signal N (shell style)."""
    finished_at: float
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReplicaLost:
    """``reason``: ``NotStarted`` (nothing ran: run it again), ``PlatformLost`` (the platform
    lost it, e.g. a Ray head restarted without its jobs: requeued, not counted against the
    job's backoff limit), anything else (it failed, e.g. ``SupervisorLost``)."""

    key: ReplicaKey
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ReplicaUnreachable:
    """The executor cannot see the replica now (a remote cluster's head is unreachable) and
    keeps checking. Later: ``ReplicaStarted`` when it is found running again, its
    ``ReplicaExited``, or ``ReplicaLost(reason="PlatformLost")`` when the cluster came back
    without it."""

    key: ReplicaKey
    message: str


ExecutorEvent = ReplicaStarted | ReplicaExited | ReplicaLost | ReplicaUnreachable


class StartError(Exception):
    """The executor could not start a replica (bad working dir, missing binary, ...)."""


@runtime_checkable
class Executor(Protocol):
    def capacity(self) -> Sequence[NodeInfo]:
        """Nodes and devices available for placement."""
        ...

    async def recover(self, active: Sequence[LaunchRequest]) -> Sequence[ExecutorEvent]:
        """On server start: re-attach to the attempts the store believes are placed.

        Returns, per replica of ``active``: ``ReplicaStarted`` if it is still running (and is
        watched again from now on), ``ReplicaExited`` with its real exit code and times if it
        finished while the server was down, ``ReplicaLost(reason="NotStarted")`` if it never
        started (no run record and no live supervisor: safe to run again), or
        ``ReplicaLost(reason="SupervisorLost")`` if it started but its supervisor vanished
        without recording an exit.
        """
        ...

    async def start(self, launch: LaunchRequest) -> None:
        """Start every replica of the attempt; raise :class:`StartError` if any cannot start
        (replicas already started for it are stopped again)."""
        ...

    async def stop(self, job_id: str, attempt: int, grace_seconds: float) -> None:
        """SIGTERM-equivalent to every replica, then kill after ``grace_seconds``. Returns at
        once; the exits arrive as events."""
        ...

    def events(self) -> AsyncIterator[ExecutorEvent]:
        """Every start, exit and loss, in the order they were observed."""
        ...

    def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool, offset: int = 0
    ) -> AsyncIterator[bytes]:
        """The replica's combined stdout/stderr from byte ``offset``; with ``follow``, keeps
        yielding until the replica has exited and its log is drained."""
        ...

    async def close(self) -> None:
        """Stop watching (replicas keep running: they belong to their supervisors)."""
        ...


@dataclass(frozen=True, slots=True)
class ProcessGroup:
    """A running replica's job process as its supervisor recorded it: pid, process group,
    and start time in clock ticks since boot (with the pid, it names one process exactly)."""

    pid: int
    pgid: int
    ticks: int


@runtime_checkable
class ProcessReporter(Protocol):
    """An executor whose replicas are processes on this machine: telemetry measures them.
    Optional: executors that are not (Kubernetes, Ray) report usage their own way."""

    def job_processes(self, job_id: str, attempt: int) -> Sequence[ProcessGroup]:
        """The job processes of the attempt's replicas that this executor watches now."""
        ...
