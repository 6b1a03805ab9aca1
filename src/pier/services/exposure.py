"""HTTP exposure of jobs: which port a job serves, who may reach it, and where it listens.

A job exposes HTTP when a task declares a port with ``expose="http"`` (the Neuro SDK's
``Container.http``); the first such port of the first task role is served at
``/v1/jobs/<id>/http/`` by pier's reverse proxy (:mod:`pier.api.routers.proxy`).

- The job listens on ``127.0.0.1:<port>`` (``host_port`` when given, else the declared
  ``container_port``): the local executor runs jobs as processes on the server's machine,
  so the port is the machine's; two running jobs cannot share one. pier sets
  ``PIER_HTTP_PORT`` and ``PIER_HTTP_BASE_PATH`` in the job's environment.
- ``requires_auth=True``: only callers who may see the job get through (pier token as a
  bearer header, a ``pier_token`` query parameter, or the cookie the proxy sets from it).
  ``requires_auth=False``: anyone who knows the job's id.
- The proxy strips ``/v1/jobs/<id>/http`` from the path, so ``python -m http.server``
  works as is. An app that builds its links from a base URL (Jupyter's ``base_url``) sets
  ``PIER_HTTP_KEEP_PREFIX=1`` in the job's environment and is then sent the full path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from pier.errors import Conflict, NotFound, Unauthenticated
from pier.services import jobs as job_service
from pier.services.context import Principal, ServiceContext
from pier.spec import JobSpec, Port
from pier.status import JobStatus
from pier.store.tables import jobs

__all__ = [
    "KEEP_PREFIX_ENV",
    "Target",
    "base_path",
    "http_env",
    "http_port",
    "resolve_target",
]

KEEP_PREFIX_ENV = "PIER_HTTP_KEEP_PREFIX"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True, slots=True)
class Target:
    job_id: str
    host: str
    port: int
    keep_prefix: bool
    requires_auth: bool

    @property
    def prefix(self) -> str:
        return base_path(self.job_id).rstrip("/")


def base_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/http/"


def http_port(spec: JobSpec) -> Port | None:
    """The job's exposed HTTP port (the first one declared), if any."""
    for task in spec.tasks:
        for port in task.ports:
            if port.expose == "http":
                return port
    return None


def http_env(job_id: str, spec: JobSpec) -> dict[str, str]:
    """What a job exposing HTTP finds in its environment."""
    port = http_port(spec)
    if port is None:
        return {}
    return {
        "PIER_HTTP_PORT": str(port.host_port or port.container_port),
        "PIER_HTTP_BASE_PATH": base_path(job_id),
    }


def _keep_prefix(spec: JobSpec) -> bool:
    value = next((t.env[KEEP_PREFIX_ENV] for t in spec.tasks if KEEP_PREFIX_ENV in t.env), "")
    return value.strip().lower() in ("1", "true", "yes")


def resolve_target(ctx: ServiceContext, caller: Principal | None, ref: str) -> Target:
    """Where to send a proxied request for job ``ref``.

    Without a caller only a job whose port is public is found; anything else (no such job,
    a job that requires authentication, a job that exposes nothing) answers 401 alike, so
    an anonymous caller learns nothing about which jobs exist.
    """
    if caller is None:
        spec, status = _anonymous(ctx, ref)
        job_id = ref
    else:
        view = job_service.get_job(ctx, caller, ref, None)
        spec, status, job_id = view.spec, view.status, view.id
    port = http_port(spec)
    if port is None:
        raise NotFound(
            f"job '{ref}' exposes no HTTP port (declare one with expose 'http')",
            loc=["path", "job"],
        )
    if status is not JobStatus.RUNNING:
        raise Conflict(f"job '{ref}' is {status}, not Running: nothing serves its HTTP port")
    return Target(
        job_id=job_id,
        host="127.0.0.1",
        port=port.host_port or port.container_port,
        keep_prefix=_keep_prefix(spec),
        requires_auth=port.requires_auth,
    )


def _anonymous(ctx: ServiceContext, ref: str) -> tuple[JobSpec, JobStatus]:
    denied = Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    if not _UUID.match(ref):
        raise denied
    with ctx.db.read() as conn:
        row: Any = conn.execute(
            select(jobs.c.spec, jobs.c.status).where(
                (jobs.c.id == ref) & jobs.c.deleted_at.is_(None)
            )
        ).first()
    if row is None:
        raise denied
    spec = JobSpec.model_validate(row.spec)
    port = http_port(spec)
    if port is None or port.requires_auth:
        raise denied
    return spec, JobStatus(row.status)
