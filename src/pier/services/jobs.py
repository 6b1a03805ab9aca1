"""Jobs: read, list, stop, delete, history and logs (submitting: ``pier.services.submits``).
Every dialect calls these."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, or_, select, update

from pier import lifecycle
from pier.errors import Conflict, Invalid, NotFound
from pier.models import HistoryEntry, JobView, Page, ReplicaView
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project, visible_project_ids
from pier.spec import JobSpec
from pier.status import TERMINAL, JobStatus, Reason
from pier.store.tables import history, jobs, projects, users

__all__ = [
    "delete_job",
    "get_job",
    "job_history",
    "job_view",
    "list_jobs",
    "resolve_log_target",
    "stop_job",
]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_PAGE = 500
DEFAULT_PAGE = 100

_JOB_COLUMNS = (jobs, projects.c.name.label("project_name"), users.c.name.label("owner_name"))


def _joined() -> Any:
    return jobs.join(projects, projects.c.id == jobs.c.project_id).join(
        users, users.c.id == jobs.c.owner_id
    )


def job_view(
    ctx: ServiceContext,
    row: Row[Any],
    *,
    spec: JobSpec | None = None,
    history_rows: Sequence[Row[Any]] | None = None,
    explain: bool = True,
) -> JobView:
    """``explain=False``: no pending reason is looked up (a job just submitted has none yet;
    with several workers the lookup may re-read the published scheduler state)."""
    explained = explain and row.status == JobStatus.PENDING
    pending = ctx.scheduler.pending_info(row.id) if explained else None
    return JobView(
        id=row.id,
        name=row.name,
        project=row.project_name,
        owner=row.owner_name,
        status=JobStatus(row.status),
        reason=row.reason,
        message=row.message,
        exit_code=row.exit_code,
        kind=row.kind,
        preemptible=row.preemptible,
        gpu=row.gpu,
        attempt=row.attempt,
        retries=row.retries,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        submission_id=row.submission_id,
        stop_requested=row.stop_requested_at is not None,
        replicas=[ReplicaView.model_validate(r) for r in (row.allocation or [])],
        pending_reason=pending.message if pending else None,
        queue_position=pending.position if pending else None,
        spec=spec or JobSpec.model_validate(row.spec),
        history=[_history_entry(h) for h in history_rows] if history_rows is not None else None,
    )


def _history_entry(row: Row[Any]) -> HistoryEntry:
    return HistoryEntry(
        status=JobStatus(row.status),
        reason=row.reason,
        message=row.message,
        exit_code=row.exit_code,
        attempt=row.attempt,
        created_at=row.created_at,
    )


def _find(conn: Connection, caller: Principal, ref: str, project: str | None) -> Row[Any]:
    """A live job by id or by name; NotFound for missing and for invisible alike."""
    visible = visible_project_ids(conn, caller)
    if _UUID.match(ref):
        stmt = select(*_JOB_COLUMNS).select_from(_joined()).where(jobs.c.id == ref)
    else:
        try:
            project_row = resolve_project(conn, caller, project)
        except (NotFound, Invalid):
            raise NotFound(f"job '{ref}' not found", loc=["path", "job"]) from None
        stmt = (
            select(*_JOB_COLUMNS)
            .select_from(_joined())
            .where((jobs.c.project_id == project_row.id) & (jobs.c.name == ref))
        )
    row = conn.execute(stmt.where(jobs.c.deleted_at.is_(None))).first()
    if row is None or (visible is not None and row.project_id not in visible):
        raise NotFound(f"job '{ref}' not found", loc=["path", "job"])
    return row


def get_job(ctx: ServiceContext, caller: Principal, ref: str, project: str | None) -> JobView:
    with ctx.db.read() as conn:
        row = _find(conn, caller, ref, project)
        entries = conn.execute(
            select(history).where(history.c.job_id == row.id).order_by(history.c.id)
        ).all()
    return job_view(ctx, row, history_rows=entries)


def job_history(
    ctx: ServiceContext, caller: Principal, ref: str, project: str | None
) -> list[HistoryEntry]:
    with ctx.db.read() as conn:
        row = _find(conn, caller, ref, project)
        entries = conn.execute(
            select(history).where(history.c.job_id == row.id).order_by(history.c.id)
        ).all()
    return [_history_entry(h) for h in entries]


def _encode_cursor(row: Row[Any]) -> str:
    raw = json.dumps([row.created_at, row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, job_id = json.loads(base64.urlsafe_b64decode(padded))
        return float(created_at), str(job_id)
    except (ValueError, TypeError):
        raise Invalid("not a cursor returned by this API", loc=["query", "cursor"]) from None


def list_jobs(
    ctx: ServiceContext,
    caller: Principal,
    *,
    project: str | None = None,
    statuses: Sequence[JobStatus] = (),
    owner: str | None = None,
    name: str | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> Page[JobView]:
    """Newest first, ``limit`` at a time; ``next_cursor`` continues where this page ended."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", loc=["query", "limit"])
    with ctx.db.read() as conn:
        stmt = select(*_JOB_COLUMNS).select_from(_joined()).where(jobs.c.deleted_at.is_(None))
        if project is not None:
            stmt = stmt.where(jobs.c.project_id == resolve_project(conn, caller, project).id)
        else:
            visible = visible_project_ids(conn, caller)
            if visible is not None:
                stmt = stmt.where(jobs.c.project_id.in_(visible))
        if statuses:
            stmt = stmt.where(jobs.c.status.in_([s.value for s in statuses]))
        if owner is not None:
            stmt = stmt.where(users.c.name == owner)
        if name is not None:
            stmt = stmt.where(jobs.c.name == name)
        if cursor is not None:
            created_at, job_id = _decode_cursor(cursor)
            stmt = stmt.where(
                or_(
                    jobs.c.created_at < created_at,
                    and_(jobs.c.created_at == created_at, jobs.c.id < job_id),
                )
            )
        stmt = stmt.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        rows = conn.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[JobView](
        items=[job_view(ctx, r) for r in rows],
        next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
    )


def stop_job(ctx: ServiceContext, caller: Principal, ref: str, project: str | None) -> JobView:
    """Stop a job: a queued one ends at once; a running one gets SIGTERM, then SIGKILL after
    its grace period, and ends ``Stopped`` with its real exit code."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _find(conn, caller, ref, project)
        if JobStatus(row.status) in TERMINAL:
            raise Conflict(f"job '{row.name}' has already finished ({row.status})")
        _request_stop(conn, row, now)
        row = _find(conn, caller, row.id, None)
    ctx.scheduler.wake()
    return job_view(ctx, row)


def _request_stop(conn: Connection, row: Row[Any], now: float) -> None:
    if row.status == JobStatus.PENDING and row.allocation is None:
        lifecycle.apply(
            conn,
            [
                lifecycle.Transition(
                    row.id,
                    JobStatus.STOPPED,
                    Reason.STOPPED_BY_USER.value,
                    "Stopped before it started",
                    expect=frozenset({JobStatus.PENDING}),
                    values={"stop_requested_at": now},
                )
            ],
            now,
        )
        return
    conn.execute(
        update(jobs)
        .where((jobs.c.id == row.id) & jobs.c.stop_requested_at.is_(None))
        .values(stop_requested_at=now, updated_at=now)
    )


def delete_job(ctx: ServiceContext, caller: Principal, ref: str, project: str | None) -> None:
    """Remove a job from every listing (its name becomes free); a live one is stopped first
    and its record and logs are purged once it has ended."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _find(conn, caller, ref, project)
        if JobStatus(row.status) not in TERMINAL:
            _request_stop(conn, row, now)
        conn.execute(update(jobs).where(jobs.c.id == row.id).values(deleted_at=now))
    ctx.scheduler.wake()


def resolve_log_target(
    ctx: ServiceContext,
    caller: Principal,
    ref: str,
    project: str | None,
    replica: str | None,
    attempt: int | None,
) -> tuple[JobView, int, str]:
    """The job, attempt and replica whose log to read (access checked)."""
    with ctx.db.read() as conn:
        row = _find(conn, caller, ref, project)
    view = job_view(ctx, row)
    names = [f"{t.name}-{i}" for t in view.spec.tasks for i in range(t.replicas)]
    chosen = replica or names[0]
    if chosen not in names:
        raise NotFound(
            f"job '{view.name}' has no replica '{chosen}' (it has {', '.join(names)})",
            loc=["query", "replica"],
        )
    if attempt is not None and not 1 <= attempt <= max(view.attempt, 1):
        raise NotFound(f"job '{view.name}' has no attempt {attempt}", loc=["query", "attempt"])
    return view, attempt or view.attempt, chosen


def is_finished(ctx: ServiceContext, job_id: str, attempt: int) -> bool:
    """Whether the job has moved past ``attempt`` (ended, or requeued)."""
    with ctx.db.read() as conn:
        row = conn.execute(select(jobs.c.status, jobs.c.attempt).where(jobs.c.id == job_id)).first()
    return row is None or JobStatus(row.status) in TERMINAL or row.attempt != attempt


def log_stream(
    ctx: ServiceContext, job_id: str, attempt: int, replica: str, follow: bool
) -> AsyncIterator[bytes]:
    return ctx.scheduler.logs(job_id, attempt, replica, follow=follow)


def current_attempt(ctx: ServiceContext, job_id: str) -> int | None:
    """The job's attempt number (0 until first placed); None once it has ended unplaced."""
    with ctx.db.read() as conn:
        row = conn.execute(select(jobs.c.status, jobs.c.attempt).where(jobs.c.id == job_id)).first()
    if row is None or (row.attempt == 0 and JobStatus(row.status) in TERMINAL):
        return None
    return int(row.attempt)
