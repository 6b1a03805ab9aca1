"""The runtime with a remote executor's faults (what the Ray executor reports), on a real
store: a replica that cannot be seen makes its job Unknown with the reason; found again, it
is Running; lost by the platform, it is requeued without counting against the backoff limit.

The executor here is scripted behind the executor protocol: the test decides its events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import insert, select

from pier.executors.base import (
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ReplicaExited,
    ReplicaKey,
    ReplicaLost,
    ReplicaStarted,
    ReplicaUnreachable,
)
from pier.runtime import Runtime
from pier.scheduler.fifo import FifoPolicy
from pier.store.db import Database
from pier.store.tables import history, jobs, projects, users


class ScriptedExecutor:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        self.started: list[LaunchRequest] = []

    def capacity(self) -> Sequence[NodeInfo]:
        return [NodeInfo("n1", 4.0, 1 << 30)]

    async def recover(self, active: Sequence[LaunchRequest]) -> Sequence[ExecutorEvent]:
        return []

    async def start(self, launch: LaunchRequest) -> None:
        self.started.append(launch)

    async def stop(self, job_id: str, attempt: int, grace_seconds: float) -> None:
        return None

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        while (event := await self.queue.get()) is not None:
            yield event

    async def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool, offset: int = 0
    ) -> AsyncIterator[bytes]:
        return
        yield b""

    async def close(self) -> None:
        self.queue.put_nowait(None)


def _insert_job(db: Database) -> None:
    now = time.time()
    with db.write() as conn:
        conn.execute(
            insert(projects).values(id="p", name="p", gpu_quota=0, node_pools=[], created_at=now)
        )
        conn.execute(
            insert(users).values(
                id="u", name="u", password_hash="x", is_admin=False, created_at=now
            )
        )
        conn.execute(
            insert(jobs).values(
                id="j1",
                project_id="p",
                owner_id="u",
                name="j1",
                kind="train",
                preemptible=True,
                priority=0,
                gpu=0.0,
                spec={"tasks": [{"command": ["true"]}], "lifecycle": {"backoff_limit": 0}},
                status="Pending",
                reason="Submitted",
                attempt=0,
                retries=0,
                created_at=now,
                updated_at=now,
            )
        )


def _job(db: Database) -> Any:
    with db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == "j1")).one()


async def _until(db: Database, check: Any, what: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        row = await asyncio.to_thread(_job, db)
        if check(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"job never {what}: {row.status} {row.reason} {row.message}")
        await asyncio.sleep(0.02)


def test_unreachable_then_found_then_lost_then_rerun(db: Database) -> None:
    # A loop of its own (not the test runner's): the runtime's tasks live and die with it.
    asyncio.run(_run(db))
    _check_history(db)


async def _run(db: Database) -> None:
    _insert_job(db)
    executor = ScriptedExecutor()
    runtime = Runtime(db, executor, FifoPolicy(), clock=time.time, interval=0.05)
    await runtime.start()
    try:
        async with asyncio.timeout(120):  # a hang fails here, with this test's stack
            await _scenario(db, executor)
    finally:
        await runtime.close()


async def _scenario(db: Database, executor: ScriptedExecutor) -> None:
    await _until(db, lambda r: r.status == "Running", "started")
    key = ReplicaKey("j1", 1, "main", 0)
    executor.queue.put_nowait(ReplicaStarted(key, 0, time.time()))

    executor.queue.put_nowait(ReplicaUnreachable(key, "the Ray cluster is unreachable"))
    row = await _until(db, lambda r: r.status == "Unknown", "Unknown")
    assert row.reason == "ExecutorUnreachable" and "unreachable" in row.message

    executor.queue.put_nowait(ReplicaStarted(key, 0, time.time()))
    row = await _until(db, lambda r: r.status == "Running", "Running again")
    assert row.reason == "Reattached" and row.attempt == 1

    executor.queue.put_nowait(ReplicaUnreachable(key, "unreachable again"))
    await _until(db, lambda r: r.status == "Unknown", "Unknown again")
    executor.queue.put_nowait(ReplicaLost(key, "PlatformLost", "the head lost the job"))
    # Requeued, not failed (backoff_limit 0), and run again as attempt 2.
    row = await _until(db, lambda r: r.attempt == 2 and r.status == "Running", "rerun")
    assert row.retries == 0
    assert len(executor.started) == 2

    second = ReplicaKey("j1", 2, "main", 0)
    executor.queue.put_nowait(ReplicaExited(second, 0, time.time()))
    row = await _until(db, lambda r: r.status == "Succeeded", "Succeeded")
    assert row.retries == 0


def _check_history(db: Database) -> None:
    with db.read() as conn:
        steps = conn.execute(
            select(history.c.status, history.c.reason, history.c.message)
            .where(history.c.job_id == "j1")
            .order_by(history.c.id)
        ).all()
    reasons = [(s.status, s.reason) for s in steps]
    assert reasons == [
        ("Running", "Started"),
        ("Unknown", "ExecutorUnreachable"),
        ("Running", "Reattached"),
        ("Unknown", "ExecutorUnreachable"),
        ("Pending", "PlatformFailure"),
        ("Running", "Started"),
        ("Succeeded", "Completed"),
    ]
    assert steps[4].message == "the head lost the job"
