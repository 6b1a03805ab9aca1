"""pier.lifecycle on a real store: guarded transitions, history, SQL NULL allocations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from pier import lifecycle
from pier.status import JobStatus
from pier.store.db import Database
from pier.store.tables import history, jobs, projects, users

NOW = 1_000.0


def _job(conn: Connection, job_id: str, status: JobStatus, **values: Any) -> None:
    if conn.execute(select(projects.c.id)).first() is None:
        conn.execute(
            insert(projects).values(id="p", name="p", gpu_quota=0, node_pools=[], created_at=NOW)
        )
        conn.execute(
            insert(users).values(
                id="u", name="u", password_hash="x", is_admin=False, created_at=NOW
            )
        )
    row: dict[str, Any] = {
        "id": job_id,
        "project_id": "p",
        "owner_id": "u",
        "name": job_id,
        "kind": "train",
        "preemptible": True,
        "priority": 0,
        "gpu": 1.0,
        "spec": {"tasks": [{"command": ["true"]}]},
        "status": status.value,
        "attempt": 1,
        "retries": 0,
        "created_at": NOW,
        "updated_at": NOW,
        **values,
    }
    conn.execute(insert(jobs).values(**row))


def _history(conn: Connection, job_id: str) -> list[tuple[str, str | None, int | None]]:
    rows = conn.execute(
        select(history.c.status, history.c.reason, history.c.exit_code)
        .where(history.c.job_id == job_id)
        .order_by(history.c.id)
    ).all()
    return [(r.status, r.reason, r.exit_code) for r in rows]


PLACED = [{"task": "main", "index": 0, "node": "n", "devices": [0], "gpu_fraction": 0.0}]


def test_requeue_clears_the_allocation_to_sql_null(db: Database) -> None:
    with db.write() as conn:
        _job(conn, "a", JobStatus.RUNNING, allocation=PLACED)
        changed = lifecycle.apply(
            conn,
            [lifecycle.Transition("a", JobStatus.PENDING, "BackoffRetry", exit_code=3)],
            NOW + 1,
        )
        assert changed == ["a"]
        unplaced = conn.execute(select(jobs.c.id).where(jobs.c.allocation.is_(None))).scalars()
        assert list(unplaced) == ["a"]
        assert _history(conn, "a") == [("Pending", "BackoffRetry", 3)]


def test_failure_values_none_are_sql_null(db: Database) -> None:
    with db.write() as conn:
        _job(conn, "a", JobStatus.PENDING, allocation=PLACED)
        lifecycle.apply(
            conn,
            [
                lifecycle.Transition(
                    "a", JobStatus.FAILED, "Unschedulable", values={"allocation": None}
                )
            ],
            NOW,
        )
        row = conn.execute(
            select(jobs.c.status, jobs.c.finished_at, jobs.c.exit_code).where(
                jobs.c.allocation.is_(None)
            )
        ).one()
        assert (row.status, row.finished_at, row.exit_code) == ("Failed", NOW, None)


def test_terminal_jobs_do_not_move_and_get_no_history(db: Database) -> None:
    with db.write() as conn:
        _job(conn, "done", JobStatus.SUCCEEDED)
        changed = lifecycle.apply(
            conn, [lifecycle.Transition("done", JobStatus.RUNNING, "Started")], NOW
        )
        assert changed == []
        assert _history(conn, "done") == []
        status = conn.execute(select(jobs.c.status).where(jobs.c.id == "done")).scalar()
        assert status == "Succeeded"


def test_attempt_and_expect_guards(db: Database) -> None:
    with db.write() as conn:
        _job(conn, "a", JobStatus.RUNNING, attempt=2)
        stale = lifecycle.Transition("a", JobStatus.FAILED, "Error", exit_code=1, attempt=1)
        not_pending = lifecycle.Transition(
            "a", JobStatus.STOPPED, "StoppedByUser", expect=frozenset({JobStatus.PENDING})
        )
        assert lifecycle.apply(conn, [stale, not_pending], NOW) == []
        current = lifecycle.Transition(
            "a", JobStatus.SUCCEEDED, "Completed", exit_code=0, attempt=2
        )
        assert lifecycle.apply(conn, [current], NOW) == ["a"]
        assert _history(conn, "a") == [("Succeeded", "Completed", 0)]
        attempt = conn.execute(select(history.c.attempt).where(history.c.job_id == "a")).scalar()
        assert attempt == 2


def test_one_transaction_applies_many(db: Database) -> None:
    with db.write() as conn:
        for job_id in ("a", "b", "c"):
            _job(conn, job_id, JobStatus.PENDING)
        lifecycle.record_created(conn, "a", NOW, "Submitted", "Job submitted")
        changed = lifecycle.apply(
            conn,
            [
                lifecycle.Transition("a", JobStatus.RUNNING, "Started"),
                lifecycle.Transition("b", JobStatus.SUCCEEDED, "Completed"),  # illegal
                lifecycle.Transition("c", JobStatus.STOPPED, "StoppedByUser"),
            ],
            NOW,
        )
        assert changed == ["a", "c"]
        assert _history(conn, "a") == [("Pending", "Submitted", None), ("Running", "Started", None)]
        assert _history(conn, "b") == []
