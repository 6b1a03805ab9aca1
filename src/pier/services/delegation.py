"""Acting for another user: a request authenticated as one user that names another (Run:AI's
``RA-USER`` header). Only an admin may act for someone else, and only for an existing member
of the project concerned; a named user never authenticates anyone by itself."""

from __future__ import annotations

from sqlalchemy import select

from pier.errors import Forbidden
from pier.models import JobView
from pier.services import submits
from pier.services.context import Principal, ServiceContext
from pier.spec import JobSpec
from pier.store.tables import project_members, projects, users

__all__ = ["acting_principal", "submit_as"]


def acting_principal(
    ctx: ServiceContext, caller: Principal, user: str | None, project: str | None
) -> Principal:
    """The principal a request acts as: the caller when ``user`` is absent or names the
    caller; for an admin, the named user, who must exist and be a member of ``project``
    (when given). Forbidden otherwise, saying why."""
    if user is None or user == caller.name:
        return caller
    if not caller.is_admin:
        raise Forbidden(
            f"RA-USER '{user}' is not the user of this token ('{caller.name}'); only an admin "
            "may submit on behalf of another user",
            loc=["header", "RA-USER"],
        )
    with ctx.db.read() as conn:
        row = conn.execute(
            select(users.c.id, users.c.name, users.c.is_admin, users.c.default_project_id).where(
                users.c.name == user
            )
        ).first()
        if row is None:
            raise Forbidden(f"RA-USER '{user}' names no user", loc=["header", "RA-USER"])
        member = (
            project is None
            or row.is_admin
            or conn.execute(
                select(project_members.c.user_id)
                .join(projects, projects.c.id == project_members.c.project_id)
                .where((projects.c.name == project) & (project_members.c.user_id == row.id))
            ).first()
            is not None
        )
    if not member:
        raise Forbidden(
            f"RA-USER '{user}' is not a member of project '{project}'",
            loc=["header", "RA-USER"],
        )
    return Principal(row.id, row.name, row.is_admin, row.default_project_id)


def submit_as(ctx: ServiceContext, caller: Principal, user: str | None, spec: JobSpec) -> JobView:
    """Submit ``spec`` owned by ``user`` (see :func:`acting_principal`)."""
    return submits.submit_job(ctx, acting_principal(ctx, caller, user, spec.project), spec)
