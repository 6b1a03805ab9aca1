"""Neuro SDK dataclasses <-> pier's canonical :class:`~pier.spec.JobSpec` and
:class:`~pier.models.JobView`. Pure: no I/O.

Choices where the seed is vague (what the real Neuromation platform did):

- ``Resources.memory_mb`` is mebibytes (the platform asked Kubernetes for ``<n>Mi``); it is
  the memory request. ``shm=True`` asks for a large ``/dev/shm`` (``large_shm``).
- ``entrypoint`` and ``command`` are split like a shell would (``shlex``), without running
  a shell: ``entrypoint`` + ``command`` is the argv (Docker's ENTRYPOINT + CMD). A container
  without either runs the image's own only where pier has a container runtime (otherwise the
  server refuses it, saying so).
- Neuro jobs are not restarted when they fail: ``backoff_limit`` 0.
- ``JobStatus``: pier's ``Stopped`` (killed) reads as ``SUCCEEDED`` with the reason
  ``StoppedByUser``, as the platform reported killed jobs before it had a CANCELLED state.
- A job run without a name gets a generated one in pier (``job-<n>``), but reads back with
  ``name=None`` as in Neuro; the original ``entrypoint``/``command`` strings are kept in the
  spec's metadata so that ``JobDescription.container`` reads back what was given.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from yarl import URL

from pier.models import JobTelemetryView, JobView
from pier.sdk.errors import InvalidRequest
from pier.spec import JobSpec, Port, TaskRole
from pier.status import JobStatus as PierStatus

from .types import (
    Container,
    HTTPPort,
    JobDescription,
    JobStatus,
    JobStatusHistory,
    JobTelemetry,
    RemoteImage,
    Resources,
    Volume,
)

__all__ = ["describe", "pier_statuses", "telemetry", "to_spec"]

MIB = 2**20
META_UNNAMED = "neuro.pier.dev/unnamed"
META_ENTRYPOINT = "neuro.pier.dev/entrypoint"
META_COMMAND = "neuro.pier.dev/command"

_FROM_PIER = {
    PierStatus.PENDING: JobStatus.PENDING,
    PierStatus.RUNNING: JobStatus.RUNNING,
    PierStatus.SUCCEEDED: JobStatus.SUCCEEDED,
    PierStatus.STOPPED: JobStatus.SUCCEEDED,
    PierStatus.FAILED: JobStatus.FAILED,
    PierStatus.UNKNOWN: JobStatus.UNKNOWN,
}


def pier_statuses(statuses: Collection[JobStatus]) -> list[PierStatus]:
    """The pier statuses a Neuro status filter selects."""
    return [p for p, n in _FROM_PIER.items() if n in {JobStatus(s) for s in statuses}]


def _split(what: str, text: str | None) -> list[str]:
    if not text:
        return []
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"container {what} {text!r} cannot be split into words: {exc}"
        ) from None


def _volume_path(volume: Volume, index: int) -> str:
    uri = URL(str(volume.storage_uri))
    if uri.scheme in ("", "file") and uri.path.startswith("/"):
        return uri.path
    raise InvalidRequest(
        f"container.volumes[{index}].storage_uri {str(volume.storage_uri)!r}: pier mounts "
        "directories of its machine; give file:///path or /path"
    )


def to_spec(
    container: Container,
    *,
    name: str | None,
    description: str | None,
    is_preemptible: bool,
    schedule_timeout: float | None,
) -> JobSpec:
    """The job Neuro's ``Jobs.run`` asks for; :class:`InvalidRequest` names a bad field."""
    if not isinstance(container, Container):
        raise InvalidRequest(f"container must be a Container, not {type(container).__name__}")
    res = container.resources
    entrypoint = _split("entrypoint", container.entrypoint)
    command = _split("command", container.command)
    metadata = {
        key: value
        for key, value in (
            (META_ENTRYPOINT, container.entrypoint),
            (META_COMMAND, container.command),
            (META_UNNAMED, None if name else "true"),
        )
        if value is not None
    }
    task: dict[str, Any] = {
        "name": "main",
        "image": str(container.image),
        "command": entrypoint or command,
        "args": command if entrypoint else [],
        "env": dict(container.env),
        "resources": {
            "memory": _positive("resources.memory_mb", res.memory_mb) * MIB,
            "cpu": _positive("resources.cpu", res.cpu),
            "gpu": res.gpu or 0,
            "gpu_model": res.gpu_model,
            "large_shm": bool(res.shm),
        },
        "ports": (
            [
                {
                    "container_port": container.http.port,
                    "expose": "http",
                    "requires_auth": container.http.requires_auth,
                }
            ]
            if container.http is not None
            else []
        ),
        "volumes": [
            {
                "host_path": _volume_path(v, i),
                "mount_path": v.container_path,
                "read_only": v.read_only,
            }
            for i, v in enumerate(container.volumes)
        ],
    }
    body: dict[str, Any] = {
        "name": name,
        "description": description,
        "preemptible": is_preemptible,
        "metadata": metadata,
        "tasks": [task],
        "lifecycle": {"backoff_limit": 0, "schedule_timeout": schedule_timeout},
    }
    try:
        return JobSpec.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest.from_validation("job", exc) from exc


def _positive(what: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidRequest(f"container.{what} must be a positive number, not {value!r}")
    return value


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _container(spec: JobSpec) -> Container:
    task: TaskRole = spec.tasks[0]
    res = task.resources
    meta = spec.metadata
    entrypoint = meta.get(META_ENTRYPOINT)
    command = meta.get(META_COMMAND)
    if entrypoint is None and command is None:  # not run through this SDK: argv as command
        command = shlex.join(task.argv) if task.argv else None
    port: Port | None = next((p for p in task.ports if p.expose == "http"), None)
    return Container(
        image=RemoteImage.parse(task.image) if task.image else RemoteImage(name=""),
        resources=Resources(
            memory_mb=(res.memory or 0) // MIB,
            cpu=res.cpu or 0.0,
            gpu=int(res.gpu) if res.gpu >= 1 else None,
            gpu_model=res.gpu_model,
            shm=res.large_shm,
        ),
        entrypoint=entrypoint,
        command=command,
        http=HTTPPort(port.container_port, port.requires_auth) if port else None,
        env=dict(task.env),
        volumes=[
            Volume(URL.build(scheme="file", path=v.host_path), v.mount_path, v.read_only)
            for v in task.volumes
        ],
    )


def describe(view: JobView, base_url: str) -> JobDescription:
    """A pier job as Neuro's JobDescription; ``base_url``: the server the client talks to."""
    status = _FROM_PIER.get(view.status, JobStatus.UNKNOWN)
    container = _container(view.spec)
    description = view.message or ""
    if view.status is PierStatus.PENDING and view.pending_reason:
        description = view.pending_reason
    http_url = (
        URL(f"{base_url.rstrip('/')}/v1/jobs/{view.id}/http/")
        if container.http is not None
        else URL()
    )
    return JobDescription(
        id=view.id,
        owner=view.owner,
        status=status,
        history=JobStatusHistory(
            status=status,
            reason=view.reason or "",
            description=description,
            exit_code=view.exit_code,
            created_at=_time(view.created_at),
            started_at=_time(view.started_at),
            finished_at=_time(view.finished_at),
        ),
        container=container,
        is_preemptible=view.preemptible,
        name=None if view.spec.metadata.get(META_UNNAMED) == "true" else view.name,
        description=view.spec.description,
        http_url=http_url,
        ssh_server=URL(),
        internal_hostname=view.replicas[0].node if view.replicas else None,
    )


def telemetry(sample: JobTelemetryView) -> JobTelemetry:
    return JobTelemetry(
        timestamp=sample.timestamp,
        cpu=sample.cpu,
        memory=sample.memory,
        gpu_duty_cycle=sample.gpu_duty_cycle,
        gpu_memory=sample.gpu_memory,
    )
