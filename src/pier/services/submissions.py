"""Jobs addressed the Ray Jobs way: by submission id (or pier's job id), within a tenant.

A *tenant* is a pier project: the ``X-Tenant-Id`` a request names. With one, only that
project's jobs are found (another project's are missing, 404); without one, a submit goes to
the caller's default project and reads find any job the caller may see. Everything else is
:mod:`pier.services.jobs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select

from pier.errors import Conflict, NotFound, Unschedulable
from pier.models import JobView
from pier.services import jobs as job_service
from pier.services import submits
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project, visible_project_ids
from pier.services.runtime_envs import materialise
from pier.spec import JobSpec
from pier.status import TERMINAL, JobStatus
from pier.store.tables import jobs

__all__ = [
    "delete",
    "get",
    "list_all",
    "log_stream",
    "log_target",
    "progress",
    "stop",
    "submit",
]


def _not_found(ref: str) -> NotFound:
    return NotFound(f"Job {ref} does not exist.", loc=["path", "job_id"])


@dataclass(frozen=True, slots=True)
class _Found:
    id: str
    project_id: str
    status: JobStatus


def _find(conn: Connection, caller: Principal, ref: str, tenant: str | None) -> _Found:
    stmt = select(jobs.c.id, jobs.c.project_id, jobs.c.status).where(
        or_(jobs.c.submission_id == ref, jobs.c.id == ref) & jobs.c.deleted_at.is_(None)
    )
    row = conn.execute(stmt).first()
    if row is None:
        raise _not_found(ref)
    if tenant is not None:
        try:
            project = resolve_project(conn, caller, tenant, loc=("header", "X-Tenant-Id"))
        except NotFound:
            raise _not_found(ref) from None
        if project.id != row.project_id:
            raise _not_found(ref)
    visible = visible_project_ids(conn, caller)
    if visible is not None and row.project_id not in visible:
        raise _not_found(ref)
    return _Found(str(row.id), str(row.project_id), JobStatus(row.status))


def _job_id(ctx: ServiceContext, caller: Principal, ref: str, tenant: str | None) -> str:
    with ctx.db.read() as conn:
        return _find(conn, caller, ref, tenant).id


def _check_custom_resources(ctx: ServiceContext, spec: JobSpec) -> None:
    """pier's nodes offer GPUs, CPUs and memory only, so a custom resource (Ray's ``NPU``)
    asked for in any amount above zero can never be placed."""
    for task in spec.tasks:
        for name, amount in task.resources.custom.items():
            if amount > 0:
                problem = f"no node offers custom resource '{name}' (asked for {amount:g})"
                raise Unschedulable(
                    f"cannot be scheduled: {problem}",
                    loc=["body", "entrypoint_resources", name],
                    problem=problem,
                )


def submit(ctx: ServiceContext, caller: Principal, spec: JobSpec) -> JobView:
    """Submit into the tenant project, with the runtime_env's setup step put in front."""
    _check_custom_resources(ctx, spec)
    with ctx.db.read() as conn:
        project = resolve_project(conn, caller, spec.project, loc=("header", "X-Tenant-Id"))
    runnable = materialise(ctx, str(project.id), spec.model_copy(update={"project": project.name}))
    return submits.submit_job(ctx, caller, runnable)


def get(ctx: ServiceContext, caller: Principal, ref: str, tenant: str | None) -> JobView:
    return job_service.get_job(ctx, caller, _job_id(ctx, caller, ref, tenant), None)


def list_all(ctx: ServiceContext, caller: Principal, tenant: str | None) -> list[JobView]:
    """Every job of the tenant (or every job the caller may see), newest first: Ray's list
    is one unpaginated array."""
    found: list[JobView] = []
    cursor: str | None = None
    while True:
        page = job_service.list_jobs(
            ctx, caller, project=tenant, limit=job_service.MAX_PAGE, cursor=cursor
        )
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def stop(ctx: ServiceContext, caller: Principal, ref: str, tenant: str | None) -> bool:
    """True if a live job was told to stop; False if it had already ended (Ray's answer)."""
    with ctx.db.read() as conn:
        row = _find(conn, caller, ref, tenant)
    if row.status in TERMINAL:
        return False
    try:
        job_service.stop_job(ctx, caller, row.id, None)
    except Conflict:  # it ended between the read and the stop
        return False
    return True


def delete(ctx: ServiceContext, caller: Principal, ref: str, tenant: str | None) -> bool:
    """Delete an ended job; a live one is refused, as Ray refuses it."""
    with ctx.db.read() as conn:
        row = _find(conn, caller, ref, tenant)
    if row.status not in TERMINAL:
        ray_status = "PENDING" if row.status == JobStatus.PENDING else "RUNNING"
        raise Conflict(
            f"Attempted to delete job '{ref}', but it is in a non-terminal state {ray_status}. "
            "Stop it first.",
            loc=["path", "job_id"],
        )
    job_service.delete_job(ctx, caller, row.id, None)
    return True


def log_target(
    ctx: ServiceContext, caller: Principal, ref: str, tenant: str | None
) -> tuple[JobView, int, str]:
    """The job, its current attempt (0: never started) and its replica, for its log."""
    job_id = _job_id(ctx, caller, ref, tenant)
    return job_service.resolve_log_target(ctx, caller, job_id, None, None, None)


def log_stream(
    ctx: ServiceContext, job_id: str, attempt: int, replica: str, *, follow: bool
) -> AsyncIterator[bytes]:
    return job_service.log_stream(ctx, job_id, attempt, replica, follow)


def progress(ctx: ServiceContext, job_id: str) -> tuple[bool, int]:
    """(whether the job has ended, its current attempt) for a log follower; a deleted job
    counts as ended."""
    with ctx.db.read() as conn:
        row = conn.execute(
            select(jobs.c.status, jobs.c.attempt, jobs.c.deleted_at).where(jobs.c.id == job_id)
        ).first()
    if row is None:
        return True, 0
    ended = JobStatus(row.status) in TERMINAL or row.deleted_at is not None
    return ended, int(row.attempt)
