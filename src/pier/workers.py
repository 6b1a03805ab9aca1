"""Several API worker processes on one pier home (``pier server --workers N``).

One Python process serves about one core: the GIL. With ``workers > 1`` the server runs N
API processes on the same port (``pier.worker_pool``), each with its own database
connections and request handling, and one control process that serves no HTTP and runs the
control loop (scheduler + executor) while it holds an exclusive ``flock`` on
``$PIER_HOME/control.lock``. The API workers

- wake it over a unix datagram socket (a hint: a lost datagram costs at most the loop's
  periodic pass, ``scheduler_interval_seconds``);
- answer "why is this job pending" and the node inventory from a state file the control
  process rewrites (atomically) after passes, at most every ``STATE_EVERY`` seconds (so
  there, a pending job's explanation can be up to that much older);
- read job logs straight from the executor's run folders.

Keeping the control loop out of the API processes means a request never waits for a
scheduler pass holding its process's GIL, nor for a garbage collection over the scheduler's
per-job caches (see benchmarks/README.md, session 3). If the control process dies, the
kernel drops its lock; the server process starts a replacement, which takes the lock and
starts the control loop, re-attaching to the running jobs exactly as after a server restart.

The wake socket lives in Linux's abstract namespace (a path could exceed the 108 bytes of a
socket address): any local process could send it datagrams, which only make the loop run a
pass sooner; the payload names a job at most, and is never trusted beyond that.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from pier.executors.base import Device, NodeInfo, ProcessGroup, ProcessReporter
from pier.scheduler.types import PendingInfo

__all__ = [
    "TAKEOVER_EVERY",
    "ControlLock",
    "LogSource",
    "StateReader",
    "StateWriter",
    "WakeSender",
    "WorkerScheduler",
    "listen_for_wakes",
    "wake_address",
]

log = logging.getLogger("pier.workers")

STATE_EVERY = 1.0
"""Seconds between rewrites of the shared scheduler state (when something changed): it is
O(pending jobs) to write and to read, so not after every pass."""
STATE_CHECK_EVERY = 0.2
"""Seconds between a worker's checks whether the state file changed."""
TAKEOVER_EVERY = 1.0
"""Seconds between a standby worker's attempts to take the control lock."""
STATE_FILE = "scheduler-state.json"
LOCK_FILE = "control.lock"
_MAX_ID_BYTES = 200


class LogSource(Protocol):
    """What a worker without the control loop reads straight from the executor (the local
    one's run folders, or the Ray dashboard); process telemetry where it is a
    ``ProcessReporter``."""

    def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool
    ) -> AsyncIterator[bytes]: ...


class ControlLock:
    """The right to run the control loop on one home: an exclusive ``flock``, released by
    the kernel when its process dies, however it dies."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def wake_address(home: Path) -> str:
    """The abstract-namespace socket address of the control process of ``home``."""
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:24]
    return f"\0pier-wake-{digest}"


class WakeSender:
    """``SchedulerHandle.wake`` of a worker without the control loop."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)

    def send(self, submitted: str | None) -> None:
        payload = submitted.encode() if submitted else b""
        # No control process yet, or its queue is full: the periodic pass covers it.
        with contextlib.suppress(OSError):
            self._sock.sendto(payload, self._address)

    def close(self) -> None:
        self._sock.close()


class _WakeProtocol(asyncio.DatagramProtocol):
    def __init__(self, wake: Callable[[str | None], None]) -> None:
        self._wake = wake

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data:
            self._wake(None)
            return
        if len(data) > _MAX_ID_BYTES:
            return
        try:
            job_id = data.decode("ascii")
        except UnicodeDecodeError:
            return
        self._wake(job_id if job_id.isprintable() else None)


async def listen_for_wakes(
    address: str, wake: Callable[[str | None], None]
) -> asyncio.DatagramTransport:
    """Receive the other workers' wakes (``wake(job_id or None)`` on this loop)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(address)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _WakeProtocol(wake), sock=sock)
    return transport


def _node_json(node: NodeInfo) -> dict[str, Any]:
    return {**asdict(node), "gpus": [asdict(d) for d in node.gpus]}


def _node_from(data: Mapping[str, Any]) -> NodeInfo:
    return NodeInfo(
        name=data["name"],
        cpus=float(data["cpus"]),
        memory_bytes=int(data["memory_bytes"]),
        gpus=tuple(Device(**d) for d in data["gpus"]),
        labels=dict(data["labels"]),
        pool=data["pool"],
    )


class StateWriter:
    """Publishes the control process's nodes and pending explanations to the others."""

    def __init__(
        self,
        home: Path,
        nodes: Callable[[], Sequence[NodeInfo]],
        pending: Callable[[], Mapping[str, PendingInfo]],
        version: Callable[[], int],
    ) -> None:
        self.path = home / STATE_FILE
        self._nodes = nodes
        self._pending = pending
        self._version = version
        self._written: int | None = None

    def capture(self) -> tuple[int, list[NodeInfo], dict[str, PendingInfo]] | None:
        """What to publish, if it changed since the last write (on the loop's thread: the
        control loop mutates what ``pending`` returns a copy of)."""
        version = self._version()
        if version == self._written:
            return None
        return version, list(self._nodes()), dict(self._pending())

    def write(self, captured: tuple[int, list[NodeInfo], dict[str, PendingInfo]]) -> None:
        version, nodes, pending = captured
        body = {
            "pid": os.getpid(),
            "at": time.time(),
            "nodes": [_node_json(n) for n in nodes],
            "pending": {
                job_id: [info.reason, info.message, info.position]
                for job_id, info in pending.items()
            },
        }
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body, separators=(",", ":")))
        os.replace(tmp, self.path)
        self._written = version

    async def run(self) -> None:
        while True:
            captured = self.capture()
            if captured is not None:
                try:
                    await asyncio.to_thread(self.write, captured)
                except OSError:
                    log.exception("cannot write %s; retrying", self.path)
            await asyncio.sleep(STATE_EVERY)


class StateReader:
    """The last state the control process published (re-read when the file changes)."""

    def __init__(self, home: Path, fallback_nodes: Sequence[NodeInfo]) -> None:
        self.path = home / STATE_FILE
        self._fallback = tuple(fallback_nodes)
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._nodes: tuple[NodeInfo, ...] = self._fallback
        self._pending: dict[str, PendingInfo] = {}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < STATE_CHECK_EVERY:
            return
        self._checked = now
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            body = json.loads(self.path.read_bytes())
            nodes = tuple(_node_from(n) for n in body["nodes"])
            pending = {
                job_id: PendingInfo(reason, message, int(position))
                for job_id, (reason, message, position) in body["pending"].items()
            }
        except (OSError, ValueError, KeyError, TypeError):
            return  # replaced while read, or written by another version: keep the last
        self._stamp = stamp
        self._nodes = nodes or self._fallback
        self._pending = pending

    def nodes(self) -> Sequence[NodeInfo]:
        self._refresh()
        return self._nodes

    def pending_info(self, job_id: str) -> PendingInfo | None:
        self._refresh()
        return self._pending.get(job_id)


class WorkerScheduler:
    """The ``SchedulerHandle`` of a worker that does not run the control loop."""

    def __init__(self, sender: WakeSender, state: StateReader, logs: LogSource) -> None:
        self._sender = sender
        self._state = state
        self._logs = logs

    def wake(self, submitted: str | None = None) -> None:
        self._sender.send(submitted)

    def pending_info(self, job_id: str) -> PendingInfo | None:
        return self._state.pending_info(job_id)

    def nodes(self) -> Sequence[NodeInfo]:
        return self._state.nodes()

    def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool
    ) -> AsyncIterator[bytes]:
        return self._logs.logs(job_id, attempt, replica, follow=follow)

    def job_processes(self, job_id: str, attempt: int) -> Sequence[ProcessGroup] | None:
        if not isinstance(self._logs, ProcessReporter):
            return None
        return self._logs.job_processes(job_id, attempt)
