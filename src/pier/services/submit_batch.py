"""Group commit: submits that arrive together are written in one transaction.

One process's concurrent submits (``pier.api.batching`` collects them) share one write
transaction: one ``BEGIN``/``COMMIT`` and one turn of the write lock for the batch, the
project looked up once per caller and project, and the job and history rows inserted with
one ``executemany`` each. Every submit is still answered only after the transaction that
holds its row committed.

A submit that cannot be accepted (a name or submission id already taken, also by an
earlier submit of the same batch; a project the caller cannot use) fails alone: it is
checked inside the transaction before anything of it is written, so the others commit.
Should the database still refuse the batch (a unique key taken at the same moment by
another server replica, which these checks cannot see on PostgreSQL), the whole batch is
rolled back and every submit is retried on its own, exactly as ``submit_job`` does it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from pier import lifecycle
from pier.errors import PierError
from pier.models import JobView
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project
from pier.services.submits import (
    INSERT_JOB,
    NAME_TAKEN,
    SUBMISSION_TAKEN,
    SUBMITTED_MESSAGE,
    created_view,
    job_values,
    name_conflict,
    next_name,
    submission_conflict,
    submit_validated,
)
from pier.spec import JobSpec
from pier.status import Reason

__all__ = ["Outcome", "submit_batch"]

Outcome = JobView | PierError
"""A submit's result: its job, or the error to answer it with."""


def submit_batch(ctx: ServiceContext, items: Sequence[tuple[Principal, JobSpec]]) -> list[Outcome]:
    """Submit specs (each already accepted by ``validate_for_executor``) in one
    transaction; one outcome per item, in order."""
    if len(items) == 1:
        return [_alone(ctx, *items[0])]
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            outcomes = _write(conn, ctx, items, now)
    except IntegrityError:
        return [_alone(ctx, caller, spec) for caller, spec in items]
    for outcome in outcomes:
        if isinstance(outcome, JobView):
            ctx.scheduler.wake(submitted=outcome.id)
    return outcomes


def _alone(ctx: ServiceContext, caller: Principal, spec: JobSpec) -> Outcome:
    try:
        return submit_validated(ctx, caller, spec)
    except PierError as exc:
        return exc


def _write(
    conn: Connection,
    ctx: ServiceContext,
    items: Sequence[tuple[Principal, JobSpec]],
    now: float,
) -> list[Outcome]:
    projects: dict[tuple[str, str | None], Row[Any] | PierError] = {}
    names: set[tuple[str, str]] = set()
    submission_ids: set[str] = set()
    outcomes: list[Outcome] = []
    rows: list[dict[str, Any]] = []
    for caller, spec in items:
        key = (caller.user_id, spec.project)
        if key not in projects:
            try:
                projects[key] = resolve_project(conn, caller, spec.project, loc=("body", "project"))
            except PierError as exc:
                projects[key] = exc
        project = projects[key]
        if isinstance(project, PierError):
            outcomes.append(project)
            continue
        sid = spec.submission_id
        if sid is not None and (
            sid in submission_ids
            or conn.execute(SUBMISSION_TAKEN, {"submission_id": sid}).first() is not None
        ):
            outcomes.append(submission_conflict(sid))
            continue
        if spec.name:
            name = spec.name
            taken = (project.id, name) in names or (
                conn.execute(NAME_TAKEN, {"project_id": project.id, "name": name}).first()
                is not None
            )
            if taken:
                outcomes.append(name_conflict(name, project.name))
                continue
        else:
            name = next_name(conn, project.id, spec.name_prefix or "job")
            while (project.id, name) in names:  # named by hand earlier in this batch
                name = next_name(conn, project.id, spec.name_prefix or "job")
        names.add((project.id, name))
        if sid is not None:
            submission_ids.add(sid)
        values, stored = job_values(caller, spec, project, name, str(uuid.uuid4()), now)
        rows.append(values)
        outcomes.append(created_view(ctx, caller, project, values, stored))
    if rows:
        conn.execute(INSERT_JOB, rows)
        lifecycle.record_created_many(
            conn, (r["id"] for r in rows), now, Reason.SUBMITTED.value, SUBMITTED_MESSAGE
        )
    return outcomes
