"""The runtime's store side of the quota scheduler, on a real store (every backend):
preemption requests (guarded, applied once), victims returning to Pending with reason
``Preempted``, attained service, and what the snapshot carries for the policy."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, insert, select

from pier.attempts import AttemptState
from pier.executors.base import Device, NodeInfo
from pier.scheduler.types import Failure
from pier.services import execution
from pier.services.snapshot import CycleInputs, SpecCache, load_snapshot
from pier.spec import JobSpec
from pier.status import JobStatus
from pier.store.db import Database
from pier.store.tables import history, jobs, projects, users

NOW = 1_000.0
NODE = NodeInfo(
    "n1", cpus=16, memory_bytes=64 * 2**30, gpus=tuple(Device(i, "sim") for i in range(4))
)
SPEC: dict[str, Any] = {
    "tasks": [{"command": ["true"], "resources": {"gpu": 2, "cpu": 3, "memory": 2**30}}]
}
ALLOCATION = [{"task": "main", "index": 0, "node": "n1", "devices": [0, 1], "gpu_fraction": 0}]


def _project(conn: Connection, name: str, **values: Any) -> None:
    conn.execute(
        insert(projects).values(
            id=name, name=name, node_pools=[], created_at=NOW, **{"gpu_quota": 0, **values}
        )
    )


def _job(conn: Connection, job_id: str, status: JobStatus, **values: Any) -> None:
    if conn.execute(select(users.c.id)).first() is None:
        conn.execute(
            insert(users).values(
                id="u", name="u", password_hash="x", is_admin=False, created_at=NOW
            )
        )
    row: dict[str, Any] = {
        "id": job_id,
        "project_id": "b",
        "owner_id": "u",
        "name": job_id,
        "kind": "train",
        "preemptible": True,
        "priority": 0,
        "gpu": 2.0,
        "spec": SPEC,
        "status": status.value,
        "attempt": 1,
        "retries": 0,
        "created_at": NOW - 100,
        "updated_at": NOW,
    }
    if status is JobStatus.RUNNING:
        row |= {"allocation": ALLOCATION, "started_at": NOW - 50}
    conn.execute(insert(jobs).values(**{**row, **values}))


@pytest.fixture
def store(db: Database) -> Database:
    with db.write() as conn:
        _project(conn, "default")
        _project(conn, "a", gpu_quota=2, cpu_quota=8.0, memory_quota=2**33, weight=3.0)
        _project(conn, "b", gpu_quota=1, max_gpu=4, department="research")
    return db


def _inputs(db: Database, specs: SpecCache | None = None) -> CycleInputs:
    with db.read() as conn:
        return load_snapshot(conn, [NODE], specs or SpecCache(), NOW)


def _row(db: Database, job_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def _history(db: Database, job_id: str) -> list[tuple[str, str | None]]:
    with db.read() as conn:
        rows = conn.execute(
            select(history.c.status, history.c.reason)
            .where(history.c.job_id == job_id)
            .order_by(history.c.id)
        ).all()
    return [(r.status, r.reason) for r in rows]


def _ended(job_id: str, code: int, at: float, attempt: int = 1) -> AttemptState:
    state = AttemptState(job_id, attempt, JobSpec.model_validate(SPEC))
    state.record_exit("main-0", code, at=at)
    assert state.decide() is not None
    return state


def _decided(state: AttemptState) -> list[tuple[AttemptState, Any]]:
    assert state.outcome is not None
    return [(state, state.outcome)]


PREEMPT = Failure("v", "Preempted", "preempted to reclaim deserved quota of project a for job o")


def test_preemption_is_requested_once_and_reaches_the_snapshot(store: Database) -> None:
    with store.write() as conn:
        _job(conn, "v", JobStatus.RUNNING)
    inputs = _inputs(store)
    with store.write() as conn:
        stops = execution.request_preemption(conn, [PREEMPT], inputs, NOW)
    assert stops == [("v", 1, 10.0)]  # the job's grace period, as for a user's stop
    # A second replica acting on the same snapshot applies nothing.
    with store.write() as conn:
        assert execution.request_preemption(conn, [PREEMPT], inputs, NOW + 1) == []
    row = _row(store, "v")
    assert (row.preempt_requested_at, row.preempt_message) == (NOW, PREEMPT.message)
    assert row.status == JobStatus.RUNNING.value  # it runs until it has exited
    after = _inputs(store)
    (running,) = after.snapshot.running
    assert running.terminating
    assert after.to_stop == [("v", 1, 10.0)]
    assert after.preempting == frozenset({("v", 1)})
    # its GPUs stay in use until it has exited
    assert after.snapshot.nodes[0].device_free == (0.0, 0.0, 1.0, 1.0)


def test_preemption_skips_a_job_that_changed(store: Database) -> None:
    with store.write() as conn:
        _job(conn, "v", JobStatus.RUNNING)
        _job(conn, "w", JobStatus.RUNNING, stop_requested_at=NOW - 1)
    inputs = _inputs(store)
    with store.write() as conn:
        conn.execute(jobs.update().where(jobs.c.id == "v").values(attempt=2))
        stops = execution.request_preemption(
            conn,
            [PREEMPT, Failure("w", "Preempted", "x"), Failure("gone", "Preempted", "x")],
            inputs,
            NOW,
        )
    assert stops == []
    assert _row(store, "v").preempt_requested_at is None


def test_a_preempted_job_returns_to_pending_without_a_retry(store: Database) -> None:
    with store.write() as conn:
        _job(conn, "v", JobStatus.RUNNING, not_before=NOW - 90, attained_gpu_seconds=10.0)
    inputs = _inputs(store)
    with store.write() as conn:
        assert execution.request_preemption(conn, [PREEMPT], inputs, NOW)
    with store.write() as conn:
        execution.apply_outcomes(conn, _decided(_ended("v", 143, at=NOW + 4)), NOW + 5)
    row = _row(store, "v")
    assert (row.status, row.reason, row.message) == ("Pending", "Preempted", PREEMPT.message)
    assert row.allocation is None
    assert row.retries == 0 and row.not_before is None
    assert row.created_at == NOW - 100  # keeps its place
    assert row.pending_since == NOW + 5
    assert row.preempt_requested_at is None and row.preempt_message is None
    # 2 GPUs from NOW - 50 to its exit at NOW + 4, after 10 GPU-seconds before
    assert row.attained_gpu_seconds == pytest.approx(10.0 + 2 * 54)
    assert _history(store, "v")[-1] == ("Pending", "Preempted")
    (request,) = _inputs(store).snapshot.pending
    assert request.pending_since == NOW + 5
    assert request.attained_gpu_seconds == pytest.approx(118.0)
    assert request.created_at == NOW - 100


def test_a_user_stop_during_preemption_ends_stopped(store: Database) -> None:
    with store.write() as conn:
        _job(conn, "v", JobStatus.RUNNING)
    inputs = _inputs(store)
    with store.write() as conn:
        assert execution.request_preemption(conn, [PREEMPT], inputs, NOW)
        conn.execute(jobs.update().where(jobs.c.id == "v").values(stop_requested_at=NOW + 1))
    with store.write() as conn:
        execution.apply_outcomes(conn, _decided(_ended("v", 0, at=NOW + 2)), NOW + 2)
    assert (_row(store, "v").status, _row(store, "v").reason) == ("Stopped", "StoppedByUser")


def test_a_job_that_succeeded_before_the_preemption_succeeds(store: Database) -> None:
    with store.write() as conn:
        _job(conn, "v", JobStatus.RUNNING)
    inputs = _inputs(store)
    with store.write() as conn:
        assert execution.request_preemption(conn, [PREEMPT], inputs, NOW)
    with store.write() as conn:
        execution.apply_outcomes(conn, _decided(_ended("v", 0, at=NOW - 1)), NOW + 1)
    assert _row(store, "v").status == "Succeeded"


def test_a_failed_training_job_retries_with_backoff_and_keeps_its_service(
    store: Database,
) -> None:
    with store.write() as conn:
        _job(conn, "f", JobStatus.RUNNING)
    with store.write() as conn:
        execution.apply_outcomes(conn, _decided(_ended("f", 1, at=NOW)), NOW)
    row = _row(store, "f")
    assert (row.status, row.reason, row.retries) == ("Pending", "BackoffRetry", 1)
    assert row.not_before == NOW + 1.0 and row.pending_since == NOW
    assert row.attained_gpu_seconds == pytest.approx(100.0)


def test_snapshot_carries_what_the_quota_policy_needs(store: Database) -> None:
    interactive = {**SPEC, "kind": "interactive"}
    with store.write() as conn:
        _job(
            conn,
            "r",
            JobStatus.RUNNING,
            spec=interactive,
            kind="interactive",
            preemptible=False,
            attained_gpu_seconds=7.0,
        )
        _job(conn, "p", JobStatus.PENDING, pending_since=NOW - 10, project_id="a")
    inputs = _inputs(store)
    (running,) = inputs.snapshot.running
    assert (running.priority, running.preemptible, running.terminating) == (1, False, False)
    assert running.attained_gpu_seconds == 7.0
    (placement,) = running.placements
    assert (placement.cpu, placement.memory) == (3.0, 2**30)
    (pending,) = inputs.snapshot.pending
    assert (pending.priority, pending.pending_since) == (0, NOW - 10)
    projects_ = inputs.snapshot.projects
    a = projects_["a"]
    assert (a.gpu_quota, a.cpu_quota, a.memory_quota, a.weight) == (2.0, 8.0, 2**33, 3.0)
    b = projects_["b"]
    assert (b.gpu_quota, b.max_gpu, b.department) == (1.0, 4.0, "research")
    # ``default`` with no quota of its own deserves what the others leave: 4 - 2 - 1.
    assert projects_["default"].gpu_quota == 1.0
    assert inputs.attempts == {"r": 1}


def test_default_project_keeps_a_quota_it_was_given(store: Database) -> None:
    with store.write() as conn:
        conn.execute(projects.update().where(projects.c.name == "default").values(gpu_quota=3))
    assert _inputs(store).snapshot.projects["default"].gpu_quota == 3.0


def test_a_victim_that_exits_0_on_sigterm_is_requeued(store: Database) -> None:
    """A job that checkpoints and exits 0 on SIGTERM has not finished its work."""
    with store.write() as conn:
        _job(conn, "v", JobStatus.RUNNING)
    inputs = _inputs(store)
    with store.write() as conn:
        assert execution.request_preemption(conn, [PREEMPT], inputs, NOW)
    with store.write() as conn:
        execution.apply_outcomes(conn, _decided(_ended("v", 0, at=NOW + 1)), NOW + 1)
    assert (_row(store, "v").status, _row(store, "v").reason) == ("Pending", "Preempted")
