"""Submitting jobs: one (``submit_job``), several all or nothing (``submit_jobs``), and the
pieces group commit (``pier.services.submit_batch``) shares with them. Every dialect
submits through these."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from pier import lifecycle
from pier.errors import Conflict, Invalid, PierError, Unschedulable
from pier.models import JobView
from pier.scheduler.placement import explain_infeasible
from pier.services.context import Principal, ServiceContext
from pier.services.jobs import job_view
from pier.services.projects import resolve_project
from pier.services.snapshot import job_request, node_states
from pier.spec import JobKind, JobSpec
from pier.status import JobStatus, Reason
from pier.store.tables import jobs, name_counters

__all__ = [
    "INSERT_JOB",
    "NAME_TAKEN",
    "SUBMISSION_TAKEN",
    "SUBMITTED_MESSAGE",
    "created_view",
    "job_values",
    "name_conflict",
    "next_name",
    "submission_conflict",
    "submit_job",
    "submit_jobs",
    "submit_validated",
    "validate_for_executor",
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


def validate_for_executor(ctx: ServiceContext, spec: JobSpec) -> None:
    """Reject what the executor can never run, naming the field."""
    for i, task in enumerate(spec.tasks):
        if not task.command and not (task.image and ctx.runs_images):
            if task.image:
                message = (
                    f"image '{task.image}' alone cannot run: this pier runs commands on its "
                    "machines and has no container runtime, so give a command (the image is "
                    "then recorded only)"
                )
            else:
                message = "a job without a command cannot run: give a command or an image"
            raise Invalid(message, loc=["body", "tasks", i, "command"])
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
    return job_view(ctx, _RowLike(row_values), spec=stored, explain=False)  # type: ignore[arg-type]


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
