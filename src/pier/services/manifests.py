"""Jobs submitted as manifests: the project comes from a namespace, the ``user`` label must be
the caller's own name (it is shown, never trusted), and a file is submitted all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from pier.errors import Forbidden, Invalid, NotFound
from pier.models import JobView
from pier.services import submits
from pier.services.context import Principal, ServiceContext
from pier.services.projects import resolve_project
from pier.spec import JobSpec

__all__ = ["NAMESPACE_PREFIX", "NamespacedSpec", "namespace_candidates", "submit_namespaced"]

NAMESPACE_PREFIX = "runai-"


@dataclass(frozen=True, slots=True)
class NamespacedSpec:
    """A job as a manifest states it: ``spec.project`` unset, ``namespace`` as written."""

    spec: JobSpec
    namespace: str | None
    user: str | None


def namespace_candidates(namespace: str) -> list[str]:
    """Projects a namespace may mean, most specific first: Run:AI's ``runai-<project>``
    and the bare project name (a project literally named ``runai-x`` wins over ``x``)."""
    names = [namespace]
    stripped = namespace.removeprefix(NAMESPACE_PREFIX)
    if stripped != namespace and stripped:
        names.append(stripped)
    return names


def submit_namespaced(
    ctx: ServiceContext,
    caller: Principal,
    items: Sequence[NamespacedSpec],
    project: str | None = None,
) -> list[JobView]:
    """Submit every item or none. ``project`` (``-p``) applies to items without a namespace
    and must agree with those that have one. Errors' ``loc`` is ``["body", <item>, ...]``."""
    specs: list[JobSpec] = []
    with ctx.db.read() as conn:
        given = (
            None if project is None else _project_of(conn, caller, project, ["query", "project"])
        )
        for i, item in enumerate(items):
            if item.user is not None and item.user != caller.name and not caller.is_admin:
                raise Forbidden(
                    f"the user label says '{item.user}' but you are '{caller.name}' (the label "
                    "is for display; only an admin may name another user)",
                    loc=["body", i, "labels", "user"],
                )
            name = given
            if item.namespace is not None:
                name = _project_of(conn, caller, item.namespace, ["body", i, "project"])
                if given is not None and name != given:
                    raise Invalid(
                        f"namespace '{item.namespace}' is project '{name}', not the project "
                        f"'{given}' asked for",
                        loc=["body", i, "project"],
                    )
            if name is None:
                name = resolve_project(conn, caller, None, loc=["body", i, "project"]).name
            specs.append(item.spec.model_copy(update={"project": name}))
    return submits.submit_jobs(ctx, caller, specs)


def _project_of(
    conn: Connection, caller: Principal, namespace: str, loc: Sequence[str | int]
) -> str:
    for candidate in namespace_candidates(namespace):
        try:
            return str(resolve_project(conn, caller, candidate).name)
        except (NotFound, Invalid):
            continue
    names = " or ".join(f"'{n}'" for n in namespace_candidates(namespace))
    raise NotFound(
        f"namespace '{namespace}': no project {names} that you are a member of",
        loc=loc,
    )
