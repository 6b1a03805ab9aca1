"""What every service function receives: the store, the clock, and a handle on the scheduler
loop. Injected, so tests pass a fake clock and a real database."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pier.executors.base import NodeInfo, ProcessGroup
from pier.scheduler.types import PendingInfo
from pier.store.db import Database

__all__ = ["IDLE_SCHEDULER", "Principal", "PrincipalCache", "SchedulerHandle", "ServiceContext"]


class SchedulerHandle(Protocol):
    """The part of the background runtime that request handlers may touch."""

    def wake(self, submitted: str | None = None) -> None:
        """Something changed: run a pass soon. Thread-safe. ``submitted``: the only change is
        this new job, so an incremental pass over new jobs suffices."""
        ...

    def pending_info(self, job_id: str) -> PendingInfo | None: ...

    def nodes(self) -> Sequence[NodeInfo]: ...

    def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool
    ) -> AsyncIterator[bytes]:
        """A replica's output, from the executor that ran it."""
        ...

    def job_processes(self, job_id: str, attempt: int) -> Sequence[ProcessGroup] | None:
        """The attempt's processes on this machine (telemetry); None where the executor
        does not run jobs as local processes."""
        ...


async def _no_logs() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


class _IdleScheduler:
    """For contexts with no runtime (CLI tools, migrations): nothing to wake."""

    def wake(self, submitted: str | None = None) -> None:
        return None

    def pending_info(self, job_id: str) -> PendingInfo | None:
        return None

    def nodes(self) -> Sequence[NodeInfo]:
        return ()

    def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool
    ) -> AsyncIterator[bytes]:
        return _no_logs()

    def job_processes(self, job_id: str, attempt: int) -> Sequence[ProcessGroup] | None:
        return None


IDLE_SCHEDULER: SchedulerHandle = _IdleScheduler()


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    user_id: str
    name: str
    is_admin: bool
    default_project_id: str | None
    token_id: str | None = None


class PrincipalCache:
    """Token hash -> principal, for a few seconds. Authenticating every request against the
    store cost more than the request; a revocation through this process drops its entry at
    once, one through another server replica takes effect within ``ttl`` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Principal, float, float]] = {}

    def get(self, token_hash: str, now: float) -> Principal | None:
        hit = self._entries.get(token_hash)
        if hit is None:
            return None
        principal, token_expires_at, cached_at = hit
        if now >= token_expires_at or now - cached_at >= self.ttl:
            del self._entries[token_hash]
            return None
        return principal

    def put(
        self, token_hash: str, principal: Principal, token_expires_at: float, now: float
    ) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token_hash] = (principal, token_expires_at, now)

    def drop_token(self, token_id: str) -> None:
        for key in [k for k, v in self._entries.items() if v[0].token_id == token_id]:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Principals changed (membership, default project): forget them all."""
        self._entries.clear()


@dataclass(slots=True)
class ServiceContext:
    db: Database
    clock: Callable[[], float] = time.time
    scheduler: SchedulerHandle = field(default_factory=_IdleScheduler)
    token_ttl_seconds: int = 30 * 86400
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    files_dir: Path | None = None
    """Uploaded runtime_env packages and cached pip environments (None: not supported)."""
    elastic_capacity: bool = False
    """The inventory can grow (a Ray cluster's autoscaler): a job no current node can hold
    waits Pending with the reason instead of being rejected at submit."""
    runs_images: bool = False
    """The executor runs a task's ``image`` (a container runtime): an image without a
    command is then accepted (its entrypoint runs)."""
