"""Projects: quotas for the scheduler, and the membership that decides who sees which jobs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from pier.errors import Conflict, Forbidden, Invalid, NotFound
from pier.models import MemberAdd, ProjectCreate, ProjectUpdate, ProjectView
from pier.services.context import Principal, ServiceContext
from pier.status import JobStatus
from pier.store.tables import jobs, project_members, projects, users

__all__ = [
    "add_member",
    "create_project",
    "get_project",
    "list_projects",
    "remove_member",
    "resolve_project",
    "update_project",
    "visible_project_ids",
]


def visible_project_ids(conn: Connection, caller: Principal) -> set[str] | None:
    """Projects whose jobs the caller may see; None means all (admins)."""
    if caller.is_admin:
        return None
    rows = conn.execute(
        select(project_members.c.project_id).where(project_members.c.user_id == caller.user_id)
    ).scalars()
    return set(rows)


# Built once (this runs on every submit and job lookup): SQLAlchemy reuses the compiled form.
_PROJECT_BY = {
    "id": select(projects).where(projects.c.id == bindparam("key")),
    "name": select(projects).where(projects.c.name == bindparam("key")),
}
_MEMBER_PROJECT_BY = {
    by: stmt.join(
        project_members,
        (project_members.c.project_id == projects.c.id)
        & (project_members.c.user_id == bindparam("user")),
    )
    for by, stmt in _PROJECT_BY.items()
}


def resolve_project(
    conn: Connection,
    caller: Principal,
    name: str | None,
    *,
    loc: Sequence[str | int] = ("query", "project"),
) -> Row[tuple[object, ...]]:
    """The project row for ``name`` (or the caller's default); NotFound when it does not
    exist *or* the caller is not a member, so existence does not leak."""
    if name is None:
        if caller.default_project_id is None:
            raise Invalid("no project given and you have no default project", loc=loc)
        by, key = "id", caller.default_project_id
    else:
        by, key = "name", name
    if caller.is_admin:
        row = conn.execute(_PROJECT_BY[by], {"key": key}).first()
    else:
        row = conn.execute(_MEMBER_PROJECT_BY[by], {"key": key, "user": caller.user_id}).first()
    if row is None:
        raise NotFound(f"project '{name}' not found", loc=loc)
    return row


def _view(conn: Connection, row: Row[tuple[object, ...]]) -> ProjectView:
    members = conn.execute(
        select(users.c.name)
        .join(project_members, project_members.c.user_id == users.c.id)
        .where(project_members.c.project_id == row.id)
        .order_by(users.c.name)
    ).scalars()
    usage = conn.execute(
        select(jobs.c.status, func.count(), func.coalesce(func.sum(jobs.c.gpu), 0.0))
        .where(jobs.c.project_id == row.id)
        .where(jobs.c.deleted_at.is_(None))
        .where(jobs.c.status.in_([JobStatus.PENDING.value, JobStatus.RUNNING.value]))
        .group_by(jobs.c.status)
    ).all()
    counts = {status: (count, gpu) for status, count, gpu in usage}
    return ProjectView(
        id=row.id,
        name=row.name,
        description=row.description,
        department=row.department,
        gpu_quota=row.gpu_quota,
        cpu_quota=row.cpu_quota,
        memory_quota=row.memory_quota,
        max_gpu=row.max_gpu,
        weight=row.weight,
        node_pools=list(row.node_pools or []),
        members=list(members),
        created_at=row.created_at,
        gpu_allocated=float(counts.get(JobStatus.RUNNING.value, (0, 0.0))[1]),
        jobs_running=int(counts.get(JobStatus.RUNNING.value, (0, 0.0))[0]),
        jobs_pending=int(counts.get(JobStatus.PENDING.value, (0, 0.0))[0]),
    )


def _user_id(conn: Connection, name: str, loc: Sequence[str | int]) -> str:
    user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar()
    if user_id is None:
        raise Invalid(f"user '{name}' does not exist", loc=loc)
    return str(user_id)


def _add_membership(conn: Connection, project_id: str, user_id: str, role: str) -> None:
    existing = conn.execute(
        select(project_members.c.role).where(
            (project_members.c.project_id == project_id) & (project_members.c.user_id == user_id)
        )
    ).first()
    if existing is None:
        conn.execute(
            insert(project_members).values(project_id=project_id, user_id=user_id, role=role)
        )
    else:
        conn.execute(
            update(project_members)
            .where(
                (project_members.c.project_id == project_id)
                & (project_members.c.user_id == user_id)
            )
            .values(role=role)
        )
    # A user's first project becomes their default, so `-p` is optional from then on.
    conn.execute(
        update(users)
        .where((users.c.id == user_id) & users.c.default_project_id.is_(None))
        .values(default_project_id=project_id)
    )


def _require_admin(caller: Principal, action: str) -> None:
    if not caller.is_admin:
        raise Forbidden(f"only an admin can {action}")


def create_project(ctx: ServiceContext, caller: Principal, body: ProjectCreate) -> ProjectView:
    _require_admin(caller, "create projects")
    project_id = str(uuid.uuid4())
    with ctx.db.write() as conn:
        member_ids = [
            _user_id(conn, name, ("body", "members", i)) for i, name in enumerate(body.members)
        ]
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(projects).values(
                        id=project_id,
                        name=body.name,
                        description=body.description,
                        department=body.department,
                        gpu_quota=body.gpu_quota,
                        cpu_quota=body.cpu_quota,
                        memory_quota=body.memory_quota,
                        max_gpu=body.max_gpu,
                        weight=body.weight,
                        node_pools=body.node_pools,
                        created_at=ctx.clock(),
                    )
                )
        except IntegrityError:
            raise Conflict(f"project '{body.name}' already exists", loc=["body", "name"]) from None
        for user_id in member_ids:
            _add_membership(conn, project_id, user_id, "member")
        row = conn.execute(select(projects).where(projects.c.id == project_id)).one()
        view = _view(conn, row)
    ctx.principals.clear()  # new members may have a new default project
    return view


def list_projects(ctx: ServiceContext, caller: Principal) -> list[ProjectView]:
    with ctx.db.read() as conn:
        visible = visible_project_ids(conn, caller)
        stmt = select(projects).order_by(projects.c.name)
        if visible is not None:
            stmt = stmt.where(projects.c.id.in_(visible))
        return [_view(conn, r) for r in conn.execute(stmt).all()]


def get_project(ctx: ServiceContext, caller: Principal, name: str) -> ProjectView:
    with ctx.db.read() as conn:
        return _view(conn, resolve_project(conn, caller, name, loc=("path", "name")))


_NOT_NULL: dict[str, object] = {"gpu_quota": 0, "node_pools": []}
"""Fields a PATCH may change but not clear (max_gpu, weight and the rest clear to "none")."""


def update_project(
    ctx: ServiceContext, caller: Principal, name: str, body: ProjectUpdate
) -> ProjectView:
    _require_admin(caller, "change projects")
    values = body.model_dump(exclude_unset=True)
    for key, default in _NOT_NULL.items():
        if key in values and values[key] is None:
            raise Invalid(f"{key} cannot be null (use {default!r})", loc=["body", key])
    with ctx.db.write() as conn:
        row = resolve_project(conn, caller, name, loc=("path", "name"))
        if values:
            conn.execute(update(projects).where(projects.c.id == row.id).values(**values))
        row = conn.execute(select(projects).where(projects.c.id == row.id)).one()
        view = _view(conn, row)
    ctx.scheduler.wake()
    return view


def add_member(ctx: ServiceContext, caller: Principal, name: str, body: MemberAdd) -> ProjectView:
    _require_admin(caller, "add project members")
    with ctx.db.write() as conn:
        row = resolve_project(conn, caller, name, loc=("path", "name"))
        _add_membership(conn, row.id, _user_id(conn, body.user, ("body", "user")), body.role)
        view = _view(conn, row)
    ctx.principals.clear()
    return view


def remove_member(ctx: ServiceContext, caller: Principal, name: str, user: str) -> ProjectView:
    _require_admin(caller, "remove project members")
    with ctx.db.write() as conn:
        row = resolve_project(conn, caller, name, loc=("path", "name"))
        user_id = _user_id(conn, user, ("path", "user"))
        result = conn.execute(
            delete(project_members).where(
                (project_members.c.project_id == row.id) & (project_members.c.user_id == user_id)
            )
        )
        if result.rowcount == 0:
            raise NotFound(f"user '{user}' is not a member of project '{name}'")
        conn.execute(
            update(users)
            .where((users.c.id == user_id) & (users.c.default_project_id == row.id))
            .values(default_project_id=None)
        )
        view = _view(conn, row)
    ctx.principals.clear()
    return view


__all__ += ["set_user_projects"]


def set_user_projects(
    ctx: ServiceContext,
    caller: Principal,
    user: str,
    names: Sequence[str],
    *,
    always: Sequence[str] = (),
) -> None:
    """Make ``user`` a member of exactly ``names`` (plus those of ``always`` that exist);
    memberships elsewhere end. Admins only; every name in ``names`` must exist."""
    _require_admin(caller, "change a user's projects")
    with ctx.db.write() as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.name == user)).scalar()
        if user_id is None:
            raise NotFound(f"user '{user}' not found", loc=["path", "username"])
        wanted: dict[str, str] = {}
        for i, name in enumerate([*names, *always]):
            pid = conn.execute(select(projects.c.id).where(projects.c.name == name)).scalar()
            if pid is None and i < len(names):
                raise NotFound(f"project '{name}' not found", loc=["body", "projects", i])
            if pid is not None:
                wanted[str(pid)] = name
        current = set(
            conn.execute(
                select(project_members.c.project_id).where(project_members.c.user_id == user_id)
            ).scalars()
        )
        for pid in current - wanted.keys():
            conn.execute(
                delete(project_members).where(
                    (project_members.c.project_id == pid) & (project_members.c.user_id == user_id)
                )
            )
        conn.execute(
            update(users)
            .where((users.c.id == user_id) & users.c.default_project_id.not_in(list(wanted)))
            .values(default_project_id=None)
        )
        for pid in wanted:
            if pid not in current:
                _add_membership(conn, pid, str(user_id), "member")
        if wanted:  # a default project that was taken away is replaced by the first kept
            conn.execute(
                update(users)
                .where((users.c.id == user_id) & users.c.default_project_id.is_(None))
                .values(default_project_id=next(iter(wanted)))
            )
    ctx.principals.clear()
