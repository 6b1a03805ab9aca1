"""The only writer of job status. Every change is checked against the state machine, applied
with a guarded ``UPDATE ... WHERE status IN (...)`` (so two server replicas can never both
apply it) and recorded as a history entry in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, insert, null, update

from pier.status import ALLOWED, TERMINAL, JobStatus
from pier.store.tables import history, jobs

__all__ = ["Transition", "apply", "record_created", "record_created_many", "sources_for"]


def sources_for(target: JobStatus) -> frozenset[JobStatus]:
    """Statuses from which ``target`` may be reached."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


@dataclass(frozen=True, slots=True)
class Transition:
    job_id: str
    target: JobStatus
    reason: str
    message: str | None = None
    exit_code: int | None = None
    expect: frozenset[JobStatus] | None = None
    """Only apply from these statuses (a subset of the legal sources), e.g. a requeue that
    must not overtake a user's stop."""
    attempt: int | None = None
    """Only apply while the job is still on this attempt (events of an old attempt are
    ignored)."""
    values: Mapping[str, Any] | None = None
    """Extra columns to set together with the status (allocation, not_before, ...)."""
    at: float | None = None
    """When it really happened, if not now: a job that ended while the server was down
    finished at the time in its exit record, not at the restart."""


_INSERT_HISTORY = insert(history)


def record_created(conn: Connection, job_id: str, now: float, reason: str, message: str) -> None:
    conn.execute(
        _INSERT_HISTORY,
        {
            "job_id": job_id,
            "status": JobStatus.PENDING.value,
            "reason": reason,
            "message": message,
            "attempt": 0,
            "created_at": now,
        },
    )


def record_created_many(
    conn: Connection, job_ids: Iterable[str], now: float, reason: str, message: str
) -> None:
    """``record_created`` for several jobs created together (one ``executemany``)."""
    rows = [
        {
            "job_id": job_id,
            "status": JobStatus.PENDING.value,
            "reason": reason,
            "message": message,
            "attempt": 0,
            "created_at": now,
        }
        for job_id in job_ids
    ]
    if rows:
        conn.execute(_INSERT_HISTORY, rows)


def apply(conn: Connection, transitions: Iterable[Transition], now: float) -> list[str]:
    """Apply transitions in one transaction; returns the ids of jobs that changed.

    A transition whose job is no longer in an allowed source status (already finished,
    changed by another replica, or on a newer attempt) is skipped, not an error: the caller
    acted on a stale view and the store already holds the newer truth.
    """
    changed: list[str] = []
    for t in transitions:
        sources = sources_for(t.target)
        if t.expect is not None:
            sources = sources & t.expect
        values: dict[str, Any] = {
            "status": t.target.value,
            "reason": t.reason,
            "message": t.message,
            "updated_at": now,
        }
        if t.exit_code is not None or t.target in TERMINAL:
            values["exit_code"] = t.exit_code
        happened = t.at if t.at is not None else now
        if t.target in TERMINAL:
            values["finished_at"] = happened
        if t.target is JobStatus.PENDING:
            values["allocation"] = None
        if t.values:
            values.update(t.values)
        for key, value in values.items():
            if value is None and isinstance(jobs.c[key].type, JSON):
                # SQL NULL, not the JSON document ``null``: ``allocation IS NULL`` is how a
                # requeued job is told from a placed one.
                values[key] = null()
        stmt = (
            update(jobs)
            .where(jobs.c.id == t.job_id)
            .where(jobs.c.status.in_([s.value for s in sources]))
            .values(**values)
            .returning(jobs.c.attempt)
        )
        if t.attempt is not None:
            stmt = stmt.where(jobs.c.attempt == t.attempt)
        row = conn.execute(stmt).first()
        if row is None:
            continue
        conn.execute(
            insert(history).values(
                job_id=t.job_id,
                status=t.target.value,
                reason=t.reason,
                message=t.message,
                exit_code=t.exit_code,
                attempt=row.attempt,
                created_at=happened,
            )
        )
        changed.append(t.job_id)
    return changed
