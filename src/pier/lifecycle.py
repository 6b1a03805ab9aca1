"""The only writer of job status. Every change is checked against the state machine, applied
with a guarded ``UPDATE ... WHERE status IN (...)`` (so two server replicas can never both
apply it) and recorded as a history entry in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Update, bindparam, insert, null, or_, update

from pier.status import ALLOWED, TERMINAL, JobStatus
from pier.store.tables import history, jobs

__all__ = ["Transition", "apply", "record_created", "record_created_many", "sources_for"]


def sources_for(target: JobStatus) -> frozenset[JobStatus]:
    """Statuses from which ``target`` may be reached."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


_SOURCES = {target: sources_for(target) for target in JobStatus}
_JSON_COLUMNS = frozenset(c.name for c in jobs.c if isinstance(c.type, JSON))


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
    """Extra columns to set together with the status (allocation, not_before, ...): plain
    values, bound into a prebuilt statement (not SQL expressions)."""
    at: float | None = None
    """When it really happened, if not now: a job that ended while the server was down
    finished at the time in its exit record, not at the restart."""


_INSERT_HISTORY = insert(history)

_Shape = tuple[frozenset[JobStatus], bool, tuple[tuple[str, bool], ...]]
_UPDATES: dict[_Shape, Update] = {}
"""Prebuilt guarded UPDATEs by shape (source statuses, attempt guard, columns set; a JSON
column set to SQL NULL is part of the shape): a transition binds values into a statement
SQLAlchemy compiled once, instead of building and cache-keying a new one (~5x the CPU)."""


def _update_for(shape: _Shape) -> Update:
    stmt = _UPDATES.get(shape)
    if stmt is not None:
        return stmt
    sources, guard_attempt, columns = shape
    stmt = (
        update(jobs)
        .where(jobs.c.id == bindparam("w_id"))
        # Not ``IN (...)``: SQLAlchemy expands an IN list on every execution.
        .where(or_(*(jobs.c.status == s.value for s in sorted(sources))))
        .values(
            {
                name: null() if sql_null else bindparam(f"v_{name}", type_=jobs.c[name].type)
                for name, sql_null in columns
            }
        )
        .returning(jobs.c.attempt)
    )
    if guard_attempt:
        stmt = stmt.where(jobs.c.attempt == bindparam("w_attempt"))
    _UPDATES[shape] = stmt
    return stmt


def _created_row(job_id: str, now: float, reason: str, message: str) -> dict[str, object]:
    return {
        "job_id": job_id,
        "status": JobStatus.PENDING.value,
        "reason": reason,
        "message": message,
        "attempt": 0,
        "created_at": now,
    }


def record_created(conn: Connection, job_id: str, now: float, reason: str, message: str) -> None:
    conn.execute(_INSERT_HISTORY, _created_row(job_id, now, reason, message))


def record_created_many(
    conn: Connection, job_ids: Iterable[str], now: float, reason: str, message: str
) -> None:
    """``record_created`` for several jobs created together (one ``executemany``)."""
    rows = [_created_row(job_id, now, reason, message) for job_id in job_ids]
    if rows:
        conn.execute(_INSERT_HISTORY, rows)


def apply(conn: Connection, transitions: Iterable[Transition], now: float) -> list[str]:
    """Apply transitions in one transaction; returns the ids of jobs that changed.

    A transition whose job is no longer in an allowed source status (already finished,
    changed by another replica, or on a newer attempt) is skipped, not an error: the caller
    acted on a stale view and the store already holds the newer truth. Each job's guarded
    UPDATE runs in the order given; their history entries are inserted together at the end
    (one ``executemany``), in the same order and the same transaction.
    """
    changed: list[str] = []
    entries: list[dict[str, Any]] = []
    for t in transitions:
        sources = _SOURCES[t.target]
        if t.expect is not None:
            sources = sources & t.expect
        if not sources:
            continue  # no status it could be reached from: never applies
        values: dict[str, Any] = {
            "status": t.target.value,
            "reason": t.reason,
            "message": t.message,
            "updated_at": now,
        }
        terminal = t.target in TERMINAL
        if t.exit_code is not None or terminal:
            values["exit_code"] = t.exit_code
        happened = t.at if t.at is not None else now
        if terminal:
            values["finished_at"] = happened
        if t.target is JobStatus.PENDING:
            values["allocation"] = None
        if t.values:
            values.update(t.values)
        # SQL NULL, not the JSON document ``null``: ``allocation IS NULL`` is how a requeued
        # job is told from a placed one.
        columns = tuple(
            (key, value is None and key in _JSON_COLUMNS) for key, value in values.items()
        )
        stmt = _update_for((sources, t.attempt is not None, columns))
        params = {f"v_{key}": value for key, value in values.items()}
        params["w_id"] = t.job_id
        if t.attempt is not None:
            params["w_attempt"] = t.attempt
        attempt = conn.execute(stmt, params).scalar()
        if attempt is None:
            continue
        entries.append(
            {
                "job_id": t.job_id,
                "status": t.target.value,
                "reason": t.reason,
                "message": t.message,
                "exit_code": t.exit_code,
                "attempt": attempt,
                "created_at": happened,
            }
        )
        changed.append(t.job_id)
    if entries:
        conn.execute(_INSERT_HISTORY, entries)
    return changed
