"""Jobs: submit, read, list, stop, delete, history and logs. Every dialect calls these."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from pier import lifecycle
from pier.errors import Conflict, Invalid, NotFound, PierError, Unschedulable
from pier.models import HistoryEntry, JobView, Page, ReplicaView
from pier.scheduler.placement import explain_infeasible
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project, visible_project_ids
from pier.services.snapshot import job_request, node_states
from pier.spec import JobKind, JobSpec
from pier.status import TERMINAL, JobStatus, Reason
from pier.store.tables import history, jobs, name_counters, projects, users

__all__ = [
    "delete_job",
    "get_job",
    "job_history",
    "list_jobs",
    "resolve_log_target",
    "stop_job",
    "submit_job",
    "submit_jobs",
    "submit_validated",
]

# Built once: SQLAlchemy then reuses the compiled form instead of re-deriving it per submit.
INSERT_JOB = insert(jobs)
SUBMISSION_TAKEN = select(jobs.c.id).where(jobs.c.submission_id == bindparam("submission_id"))
SUBMITTED_MESSAGE = "Job submitted"
NAME_TAKEN = select(jobs.c.id).where(
    (jobs.c.project_id == bindparam("project_id"))
    & (jobs.c.name == bindparam("name"))
    & jobs.c.deleted_at.is_(None)
)
_TAKE_NUMBER = (
    update(name_counters)
    .where(
        (name_counters.c.project_id == bindparam("b_project_id"))
        & (name_counters.c.prefix == bindparam("b_prefix"))
    )
    .values(next_value=name_counters.c.next_value + 1)
    .returning(name_counters.c.next_value)
)

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_PAGE = 500
DEFAULT_PAGE = 100

_JOB_COLUMNS = (jobs, projects.c.name.label("project_name"), users.c.name.label("owner_name"))


def _joined() -> Any:
    return jobs.join(projects, projects.c.id == jobs.c.project_id).join(
        users, users.c.id == jobs.c.owner_id
    )


def _view(
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


def validate_for_executor(ctx: ServiceContext, spec: JobSpec) -> None:
    """Reject what the executor can never run, naming the field."""
    for i, task in enumerate(spec.tasks):
        if not task.command:
            what = f"image '{task.image}' alone" if task.image else "a job without a command"
            raise Invalid(
                f"{what} cannot run: this pier runs commands on its machines and has no "
                "container runtime, so give a command (the image is then recorded only)",
                loc=["body", "tasks", i, "command"],
            )
    lc = spec.lifecycle
    if lc.parallelism is not None and (
        len(spec.tasks) != 1 or lc.parallelism != spec.replica_count
    ):
        raise Invalid(
            "parallelism must equal the number of replicas of a single task role "
            "(set tasks[0].replicas)",
            loc=["body", "lifecycle", "parallelism"],
        )
    if lc.completions is not None and lc.completions > spec.replica_count:
        raise Invalid(
            "completions beyond the number of parallel replicas are not supported yet",
            loc=["body", "lifecycle", "completions"],
        )
    nodes = ctx.scheduler.nodes()
    if nodes and not ctx.elastic_capacity:
        problem = explain_infeasible(node_states(nodes, []), job_request("new", "", spec, 0.0))
        if problem is not None:
            raise Unschedulable(
                f"cannot be scheduled: {problem}; no available resource that meets the "
                "request requirements",
                loc=["body", "tasks"],
                problem=problem,
            )


def next_name(conn: Connection, project_id: str, prefix: str) -> str:
    """``<prefix>-<n>`` with n counting up per project and prefix (Run:AI's
    ``--job-name-prefix``), skipping names already taken by hand."""
    while True:
        name = f"{prefix}-{_take_number(conn, project_id, prefix)}"
        if conn.execute(NAME_TAKEN, {"project_id": project_id, "name": name}).first() is None:
            return name


def _take_number(conn: Connection, project_id: str, prefix: str) -> int:
    """The counter's next number, taken atomically: the ``UPDATE`` holds the counter's row
    until this transaction ends, so concurrent submits (several server replicas, or
    PostgreSQL's concurrent writers) never get the same number."""
    while True:
        taken = conn.execute(
            _TAKE_NUMBER, {"b_project_id": project_id, "b_prefix": prefix}
        ).scalar()
        if taken is not None:
            return int(taken) - 1
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(name_counters).values(project_id=project_id, prefix=prefix, next_value=2)
                )
            return 1
        except IntegrityError:
            continue  # another submit created the counter first: take a number from it


def submit_job(ctx: ServiceContext, caller: Principal, spec: JobSpec) -> JobView:
    validate_for_executor(ctx, spec)
    return submit_validated(ctx, caller, spec)


def submit_validated(ctx: ServiceContext, caller: Principal, spec: JobSpec) -> JobView:
    """``submit_job`` of a spec ``validate_for_executor`` already accepted."""
    now = ctx.clock()
    job_id = str(uuid.uuid4())
    project_name = name = ""
    try:
        with ctx.db.write() as conn:
            project = resolve_project(conn, caller, spec.project, loc=("body", "project"))
            project_name = project.name
            name = spec.name or next_name(conn, project.id, spec.name_prefix or "job")
            # No savepoint: a unique-key clash rolls the whole submit back (nothing else was
            # written), and the conflict is classified below from a fresh read.
            view = _insert(conn, ctx, caller, spec, project, name, job_id, now)
    except IntegrityError:
        raise _conflict(ctx, spec, name, project_name) from None
    ctx.scheduler.wake(submitted=job_id)
    return view


def submit_jobs(ctx: ServiceContext, caller: Principal, specs: Sequence[JobSpec]) -> list[JobView]:
    """Submit several jobs all or nothing (one transaction). An error's ``loc`` starts with
    ``["body", <index of the spec>]``."""
    for i, spec in enumerate(specs):
        with _located(i):
            validate_for_executor(ctx, spec)
    now = ctx.clock()
    views: list[JobView] = []
    try:
        with ctx.db.write() as conn:
            for i, spec in enumerate(specs):
                with _located(i):
                    project = resolve_project(conn, caller, spec.project, loc=("body", "project"))
                    name = spec.name or next_name(conn, project.id, spec.name_prefix or "job")
                    if conn.execute(NAME_TAKEN, {"project_id": project.id, "name": name}).first():
                        raise name_conflict(name, project.name)
                    job_id = str(uuid.uuid4())
                    views.append(_insert(conn, ctx, caller, spec, project, name, job_id, now))
    except IntegrityError:
        raise Conflict("a job of this request was submitted at the same time; retry") from None
    for view in views:
        ctx.scheduler.wake(submitted=view.id)
    return views


@contextmanager
def _located(index: int) -> Iterator[None]:
    """Prefix a :class:`PierError`'s ``loc`` with the index of the spec it is about."""
    try:
        yield
    except PierError as exc:
        rest = exc.loc[1:] if exc.loc[:1] == ["body"] else exc.loc
        exc.loc = ["body", index, *rest]
        raise


def _insert(
    conn: Connection,
    ctx: ServiceContext,
    caller: Principal,
    spec: JobSpec,
    project: Row[Any],
    name: str,
    job_id: str,
    now: float,
) -> JobView:
    values, stored = job_values(caller, spec, project, name, job_id, now)
    conn.execute(INSERT_JOB, values)
    lifecycle.record_created(conn, job_id, now, Reason.SUBMITTED.value, SUBMITTED_MESSAGE)
    return created_view(ctx, caller, project, values, stored)


def job_values(
    caller: Principal,
    spec: JobSpec,
    project: Row[Any],
    name: str,
    job_id: str,
    now: float,
) -> tuple[dict[str, Any], JobSpec]:
    """The new job's row (for ``INSERT_JOB``) and its spec as stored."""
    stored = spec.model_copy(update={"name": name, "project": project.name})
    values = {
        "id": job_id,
        "project_id": project.id,
        "owner_id": caller.user_id,
        "name": name,
        "submission_id": spec.submission_id,
        "kind": spec.kind.value,
        "preemptible": spec.is_preemptible,
        "priority": 1 if spec.kind is JobKind.INTERACTIVE else 0,
        "gpu": spec.total_gpu,
        "spec": stored.dump(),
        "status": JobStatus.PENDING.value,
        "reason": Reason.SUBMITTED.value,
        "attempt": 0,
        "retries": 0,
        "created_at": now,
        "updated_at": now,
        "ttl_after_finish": spec.lifecycle.ttl_after_finish,
    }
    return values, stored


def created_view(
    ctx: ServiceContext,
    caller: Principal,
    project: Row[Any],
    values: dict[str, Any],
    stored: JobSpec,
) -> JobView:
    """The view of a job just inserted with ``values``: no read-back."""
    row_values = {
        **values,
        "project_name": project.name,
        "owner_name": caller.name,
        "message": None,
        "exit_code": None,
        "allocation": None,
        "started_at": None,
        "finished_at": None,
        "stop_requested_at": None,
    }
    return _view(ctx, _RowLike(row_values), spec=stored, explain=False)  # type: ignore[arg-type]


def name_conflict(name: str, project: str) -> Conflict:
    return Conflict(
        f"a job named '{name}' already exists in project '{project}'", loc=["body", "name"]
    )


def submission_conflict(submission_id: str) -> Conflict:
    return Conflict(
        f"a job with submission id '{submission_id}' already exists",
        loc=["body", "submission_id"],
    )


def _conflict(ctx: ServiceContext, spec: JobSpec, name: str, project: str) -> Conflict:
    if spec.submission_id is not None:
        with ctx.db.read() as conn:
            taken = conn.execute(SUBMISSION_TAKEN, {"submission_id": spec.submission_id}).first()
        if taken is not None:
            return submission_conflict(spec.submission_id)
    return name_conflict(name, project)


class _RowLike:
    """Attribute access over the values just inserted, so submit needs no read-back."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


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
    return _view(ctx, row, history_rows=entries)


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
        items=[_view(ctx, r) for r in rows],
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
    return _view(ctx, row)


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
    view = _view(ctx, row)
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
