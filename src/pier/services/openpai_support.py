"""What the OpenPAI dialect needs beyond the common services: jobs looked up by their
OpenPAI name, submit/stop/re-run with OpenPAI's rules, users with OpenPAI's admin rules, and
virtual clusters' (projects') real usage."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from pier.errors import Conflict, Forbidden, NotFound
from pier.models import JobView, UserCreate
from pier.services import accounts, jobs, submits
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project, set_user_projects, visible_project_ids
from pier.spec import JobSpec
from pier.status import TERMINAL, JobStatus
from pier.store.tables import jobs as jobs_table
from pier.store.tables import projects as projects_table

__all__ = [
    "ClusterCapacity",
    "VcUsage",
    "cluster_capacity",
    "delete_job",
    "execute_job",
    "find_job",
    "grant_virtual_clusters",
    "list_jobs",
    "put_user",
    "submit_job",
    "virtual_clusters",
]

SUBMISSION_PREFIX = "openpai/"
_HOLDING = (JobStatus.RUNNING.value, JobStatus.UNKNOWN.value)
_QUEUED = (JobStatus.PENDING.value,)


def _key(project_id: str, job_name: str) -> str:
    return f"{SUBMISSION_PREFIX}{project_id}/{job_name}"


# -- jobs -----------------------------------------------------------------------------------


def _project_ids(conn: Connection, caller: Principal) -> list[str]:
    visible = visible_project_ids(conn, caller)
    if visible is not None:
        return sorted(visible)
    return list(conn.execute(select(projects_table.c.id)).scalars())


def find_job(ctx: ServiceContext, caller: Principal, job_name: str) -> JobView:
    """The newest live job of the caller's virtual clusters submitted under ``job_name``,
    else one whose pier name it is; NotFound for missing and invisible alike."""
    with ctx.db.read() as conn:
        project_ids = _project_ids(conn, caller)
        live = jobs_table.c.deleted_at.is_(None) & jobs_table.c.project_id.in_(project_ids)
        newest = (jobs_table.c.created_at.desc(), jobs_table.c.id.desc())
        job_id = conn.execute(
            select(jobs_table.c.id)
            .where(live)
            .where(jobs_table.c.submission_id.in_([_key(p, job_name) for p in project_ids]))
            .order_by(*newest)
            .limit(1)
        ).scalar()
        if job_id is None:
            job_id = conn.execute(
                select(jobs_table.c.id)
                .where(live & (jobs_table.c.name == job_name))
                .order_by(*newest)
                .limit(1)
            ).scalar()
    if job_id is None:
        raise NotFound(f"could not find job {job_name}", loc=["path", "jobName"])
    return jobs.get_job(ctx, caller, str(job_id), None)


def list_jobs(ctx: ServiceContext, caller: Principal, owner: str | None) -> list[JobView]:
    """Every live job the caller may see (newest first), optionally of one owner."""
    found: list[JobView] = []
    cursor: str | None = None
    while True:
        page = jobs.list_jobs(ctx, caller, owner=owner, limit=jobs.MAX_PAGE, cursor=cursor)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def submit_job(ctx: ServiceContext, caller: Principal, spec: JobSpec, job_name: str) -> JobView:
    """Submit under OpenPAI name ``job_name``, unique per virtual cluster. The pier name is
    ``spec.name`` when free, else one numbered from it."""
    vc = spec.project or accounts.DEFAULT_PROJECT
    with ctx.db.read() as conn:
        try:
            project = resolve_project(conn, caller, vc, loc=("body", "virtualCluster"))
        except NotFound:
            raise Forbidden(
                f"User {caller.name} is not allowed to do operation in {vc}",
                loc=["body", "virtualCluster"],
            ) from None
        key = _key(project.id, job_name)
        holder = conn.execute(
            select(jobs_table.c.id, jobs_table.c.deleted_at).where(
                jobs_table.c.submission_id == key
            )
        ).first()
    duplicate = Conflict(
        f"job {job_name} already exists in virtual cluster {vc}", loc=["body", "jobName"]
    )
    if holder is not None:
        if holder.deleted_at is None:
            raise duplicate
        _release_key(ctx, key)
    spec = spec.model_copy(update={"submission_id": key, "project": project.name})
    try:
        return submits.submit_job(ctx, caller, spec)
    except Conflict as exc:
        if exc.loc != ["body", "name"] or spec.name is None:
            raise duplicate from None
    prefix = spec.name[:40].rstrip("-") or "job"
    renamed = spec.model_copy(update={"name": None, "name_prefix": prefix})
    try:
        return submits.submit_job(ctx, caller, renamed)
    except Conflict:
        raise duplicate from None


def _release_key(ctx: ServiceContext, key: str) -> None:
    """A deleted job keeps its submission id; its OpenPAI name is free again."""
    with ctx.db.write() as conn:
        conn.execute(
            update(jobs_table)
            .where((jobs_table.c.submission_id == key) & jobs_table.c.deleted_at.is_not(None))
            .values(submission_id=None)
        )


def _check_owner(caller: Principal, view: JobView, job_name: str, action: str) -> None:
    if not caller.is_admin and view.owner != caller.name:
        raise Forbidden(f"User {caller.name} is not allowed to {action} job {job_name}.")


def execute_job(ctx: ServiceContext, caller: Principal, job_name: str, start: bool) -> None:
    """OpenPAI's executionType: STOP stops a live job; START runs a finished job's config
    again (as a new run under the same name). Either is a no-op where it already holds."""
    view = find_job(ctx, caller, job_name)
    _check_owner(caller, view, job_name, "execute")
    finished = view.status in TERMINAL
    if not start and not finished and not view.stop_requested:
        with contextlib.suppress(Conflict):  # it ended meanwhile: as good as stopped
            jobs.stop_job(ctx, caller, view.id, None)
    elif start and finished:
        _rerun(ctx, caller, view)


def _rerun(ctx: ServiceContext, caller: Principal, view: JobView) -> None:
    """Retire the finished run (deleted, its submission id freed), then submit its spec
    again; the retired run comes back if the new one cannot be submitted."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        retired = conn.execute(
            update(jobs_table)
            .where((jobs_table.c.id == view.id) & jobs_table.c.deleted_at.is_(None))
            .values(submission_id=None, deleted_at=now)
        ).rowcount
    if retired == 0:
        return  # another request retired it first
    try:
        submits.submit_job(ctx, caller, view.spec.model_copy(update={"name": view.name}))
    except Exception:
        with ctx.db.write() as conn:
            conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == view.id)
                .values(submission_id=view.submission_id, deleted_at=None)
            )
        raise


def delete_job(ctx: ServiceContext, caller: Principal, job_name: str) -> None:
    view = find_job(ctx, caller, job_name)
    _check_owner(caller, view, job_name, "remove")
    jobs.delete_job(ctx, caller, view.id, None)


# -- users ----------------------------------------------------------------------------------


def put_user(
    ctx: ServiceContext,
    caller: Principal,
    username: str,
    password: str,
    *,
    admin: bool | None,
    modify: bool,
) -> None:
    """OpenPAI's ``PUT /user``: an admin creates users (``modify`` false) or changes any
    user's password and admin flag; a user changes only their own password. A new user can
    use the default virtual cluster, as every OpenPAI user can."""
    own_password_change = username == caller.name and modify and not admin
    if not caller.is_admin and not own_password_change:
        raise Forbidden("only an administrator can add users or change other users")
    if not modify:
        with ctx.db.read() as conn:
            default = conn.execute(
                select(projects_table.c.id).where(projects_table.c.name == accounts.DEFAULT_PROJECT)
            ).first()
        # Built without re-validation: OpenPAI's password rule (6 characters) was checked
        # by the dialect, and pier's own minimum applies to the native API only.
        body = UserCreate.model_construct(
            name=username,
            password=password,
            is_admin=bool(admin),
            email=None,
            projects=[accounts.DEFAULT_PROJECT] if default else [],
        )
        accounts.create_user(ctx, caller, body)
        return
    if password:
        accounts.change_password(ctx, caller, username, password)
    if admin is not None and caller.is_admin:
        accounts.set_admin(ctx, caller, username, admin)


def grant_virtual_clusters(
    ctx: ServiceContext, caller: Principal, username: str, names: Sequence[str]
) -> None:
    """Exactly these virtual clusters for ``username``, and the default one."""
    set_user_projects(ctx, caller, username, names, always=(accounts.DEFAULT_PROJECT,))


# -- virtual clusters -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterCapacity:
    gpus: float
    cpus: float
    memory: int


@dataclass(frozen=True, slots=True)
class VcUsage:
    """A project's quotas and what its jobs hold now."""

    name: str
    gpu_quota: float
    max_gpu: float | None
    cpu_quota: float | None
    jobs_running: int
    jobs_pending: int
    gpu_used: float
    cpu_used: float
    memory_used: int


def cluster_capacity(ctx: ServiceContext) -> ClusterCapacity:
    nodes = ctx.scheduler.nodes()
    return ClusterCapacity(
        gpus=float(sum(len(node.gpus) for node in nodes)),
        cpus=float(sum(node.cpus for node in nodes)),
        memory=sum(node.memory_bytes for node in nodes),
    )


def virtual_clusters(
    ctx: ServiceContext, caller: Principal, name: str | None = None
) -> list[VcUsage]:
    """The caller's projects (all for admins), or the one named (NotFound when invisible),
    with the resources their running jobs request and their queue counts."""
    with ctx.db.read() as conn:
        if name is not None:
            rows = [resolve_project(conn, caller, name, loc=("path", "vcName"))]
        else:
            stmt = select(projects_table).order_by(projects_table.c.name)
            visible = visible_project_ids(conn, caller)
            if visible is not None:
                stmt = stmt.where(projects_table.c.id.in_(visible))
            rows = list(conn.execute(stmt).all())
        live = conn.execute(
            select(jobs_table.c.project_id, jobs_table.c.status, jobs_table.c.spec)
            .where(jobs_table.c.project_id.in_([row.id for row in rows]))
            .where(jobs_table.c.deleted_at.is_(None))
            .where(jobs_table.c.status.in_(_HOLDING + _QUEUED))
        ).all()
    usage: dict[str, list[float]] = {row.id: [0, 0, 0.0, 0.0, 0] for row in rows}
    for job in live:
        figures = usage[job.project_id]
        if job.status in _QUEUED:
            figures[1] += 1
            continue
        spec = JobSpec.model_validate(job.spec)
        figures[0] += 1
        for task in spec.tasks:
            figures[2] += task.resources.gpu * task.replicas
            figures[3] += (task.resources.cpu or 0.0) * task.replicas
            figures[4] += (task.resources.memory or 0) * task.replicas
    return [
        VcUsage(
            name=row.name,
            gpu_quota=row.gpu_quota,
            max_gpu=row.max_gpu,
            cpu_quota=row.cpu_quota,
            jobs_running=int(usage[row.id][0]),
            jobs_pending=int(usage[row.id][1]),
            gpu_used=usage[row.id][2],
            cpu_used=usage[row.id][3],
            memory_used=int(usage[row.id][4]),
        )
        for row in rows
    ]
