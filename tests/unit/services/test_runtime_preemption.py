"""The runtime loop applying the quota policy's preemptions, on a real store (every backend)
with a scripted executor behind the ``Executor`` protocol: the test decides when each
replica exits, so it can check what happens while a victim is still stopping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import insert, select

from pier.executors.base import (
    Device,
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ReplicaExited,
    ReplicaKey,
    ReplicaStarted,
)
from pier.runtime import Runtime
from pier.scheduler.quota import QuotaPolicy
from pier.store.db import Database
from pier.store.tables import history, jobs, projects, users

NODE = NodeInfo("n1", cpus=16, memory_bytes=2**36, gpus=tuple(Device(i, "sim") for i in range(4)))


class ScriptedExecutor:
    """Starts replicas at once; on a stop, reports nothing: the test makes them exit."""

    def __init__(self) -> None:
        self.started: list[LaunchRequest] = []
        self.stops: list[tuple[str, int, float]] = []
        self._events: asyncio.Queue[ExecutorEvent] = asyncio.Queue()

    def capacity(self) -> Sequence[NodeInfo]:
        return [NODE]

    async def recover(self, active: Sequence[LaunchRequest]) -> Sequence[ExecutorEvent]:
        return []

    async def start(self, launch: LaunchRequest) -> None:
        self.started.append(launch)
        for p in launch.placements:
            key = ReplicaKey(launch.job_id, launch.attempt, p.task, p.index)
            self._events.put_nowait(ReplicaStarted(key, 1, time.time()))

    async def stop(self, job_id: str, attempt: int, grace_seconds: float) -> None:
        self.stops.append((job_id, attempt, grace_seconds))

    def exit(self, job_id: str, attempt: int, index: int, code: int) -> None:
        key = ReplicaKey(job_id, attempt, "main", index)
        self._events.put_nowait(ReplicaExited(key, code, time.time()))

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        while True:
            yield await self._events.get()

    async def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool, offset: int = 0
    ) -> AsyncIterator[bytes]:
        return
        yield b""

    async def close(self) -> None:
        return None


def _insert_job(db: Database, job_id: str, project: str, replicas: int, gpu: float) -> None:
    now = time.time()
    spec = {"tasks": [{"command": ["true"], "replicas": replicas, "resources": {"gpu": gpu}}]}
    with db.write() as conn:
        conn.execute(
            insert(jobs).values(
                id=job_id,
                project_id=project,
                owner_id="u",
                name=job_id,
                kind="train",
                preemptible=True,
                priority=0,
                gpu=gpu * replicas,
                spec=spec,
                status="Pending",
                attempt=0,
                retries=0,
                created_at=now,
                updated_at=now,
            )
        )


def _job(db: Database, job_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.fixture
def store(db: Database) -> Database:
    with db.write() as conn:
        conn.execute(
            insert(users).values(id="u", name="u", password_hash="x", is_admin=False, created_at=0)
        )
        for name in ("a", "b"):
            conn.execute(
                insert(projects).values(
                    id=name, name=name, gpu_quota=2, node_pools=[], created_at=0
                )
            )
    return db


async def test_beneficiary_waits_until_every_replica_of_the_victim_has_exited(
    store: Database,
) -> None:
    executor = ScriptedExecutor()
    runtime = Runtime(store, executor, QuotaPolicy(), clock=time.time, interval=0.05)
    await runtime.start()
    try:
        _insert_job(store, "gang", "b", replicas=2, gpu=2)  # borrows all 4 GPUs
        runtime.wake()
        await _until(lambda: _job(store, "gang").status == "Running")
        _insert_job(store, "own", "a", replicas=1, gpu=2)  # within a's quota of 2
        runtime.wake("own")
        await _until(lambda: executor.stops == [("gang", 1, 10.0)])
        info = runtime.pending_info("own")
        assert info is not None and info.reason == "Reclaiming"

        executor.exit("gang", 1, 0, 143)  # one replica is gone, the other still holds 2 GPUs
        await asyncio.sleep(0.5)
        assert _job(store, "gang").status == "Running"
        assert [launch.job_id for launch in executor.started] == ["gang"]
        assert executor.stops == [("gang", 1, 10.0)]  # preempted once, not again

        executor.exit("gang", 1, 1, 143)
        await _until(lambda: [launch.job_id for launch in executor.started] == ["gang", "own"])
        gang = _job(store, "gang")
        assert (gang.status, gang.reason, gang.retries) == ("Pending", "Preempted", 0)
        with store.read() as conn:
            preempted_at = conn.execute(
                select(history.c.created_at)
                .where(history.c.job_id == "gang")
                .where(history.c.reason == "Preempted")
            ).scalar_one()
        # The executor hears of the start before the store records it (mark_started).
        await _until(lambda: _job(store, "own").started_at is not None)
        assert _job(store, "own").started_at >= preempted_at
        # The requeued gang waits behind the owner's job, and says so.
        await _until(lambda: runtime.pending_info("gang") is not None)
    finally:
        await runtime.close()


async def test_a_new_submit_does_not_take_capacity_held_for_a_reclaim(store: Database) -> None:
    executor = ScriptedExecutor()
    # A long interval: passes after a submit are incremental (they load only new jobs).
    runtime = Runtime(store, executor, QuotaPolicy(), clock=time.time, interval=60.0)
    await runtime.start()
    try:
        for i in range(3):
            _insert_job(store, f"b{i}", "b", replicas=1, gpu=1)  # b borrows 3 of 4 GPUs
        runtime.wake()
        await _until(lambda: len(executor.started) == 3)
        _insert_job(store, "own", "a", replicas=1, gpu=2)  # 1 GPU idle: it reclaims one
        runtime.wake("own")
        await _until(lambda: len(executor.stops) == 1)
        victim = executor.stops[0][0]
        _insert_job(store, "late", "b", replicas=1, gpu=1)  # would fit on the idle GPU
        runtime.wake("late")
        await _until(lambda: runtime.pending_info("late") is not None)
        info = runtime.pending_info("late")
        assert info is not None and info.reason == "Held", info
        assert "own" in info.message
        assert len(executor.started) == 3

        executor.exit(victim, 1, 0, 143)
        await _until(lambda: [launch.job_id for launch in executor.started][3:] == ["own"])
        assert _job(store, "late").status == "Pending"
        assert _job(store, victim).reason == "Preempted"
    finally:
        await runtime.close()
