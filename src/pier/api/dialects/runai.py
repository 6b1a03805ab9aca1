"""The Run:AI researcher REST dialect (seed 000): ``{"job": {...}}`` <-> :class:`JobSpec`.

Pure translation, no I/O. Choices where the seed is vague (following Run:AI's published
researcher API where it says more; docs/dialects/runai-rest.md has the full table):

- The body is JSON. Because the seed's own examples have a comma before ``}`` and write
  ``"KEY"=50`` inside a map, this route also reads a comma before a closing bracket and ``=``
  between a key and its value (both outside strings, where valid JSON never has them).
- Unknown job parameters are rejected (422 naming them), as pier's native API does: a typo
  such as ``gpus`` must not silently run a CPU job.
- ``command`` is ``true`` (the Run:AI CLI's ``--command`` flag: ``arguments`` are the whole
  command line, replacing the image's entry point), an array of strings (the later API), or a
  string (split like a shell would). Without it, ``arguments`` are arguments to the image's
  entry point.
- ``gpu``: a whole number of GPUs or a fraction strictly between 0 and 1. ``cpu``/``cpuLimit``
  are cores (``"500m"`` also accepted), ``memory``/``memoryLimit`` Kubernetes quantities
  (``"1G"`` = 10**9 bytes, ``"1Gi"`` = 2**30), ``ttlAfterFinish`` a duration (``"5s"``,
  ``"2m"``, ``"3h"``) or seconds.
- ``environment`` values may be JSON numbers or booleans (the seed's example); they become
  their JSON text (``50`` -> ``"50"``).
- ``volume`` maps a host path to a container path; a ``:ro`` suffix on the container path
  mounts it read-only. ``ports`` items are ``{"container", "external", "autoGenerate"}``
  objects, a container port number, or ``"external:container"``.
- ``nodeType`` is the node pool the job must run in. ``backoffLimit`` is for training jobs
  only (an interactive job that sets it is rejected); the default is 6 for training.
- ``parallelism`` is the number of replicas run together; ``completions`` the successes
  that complete the job (the other replicas are then stopped); more completions than
  parallel replicas (several waves) are rejected. ``jobNamePrefix`` names the job
  ``<prefix>-<n>`` when ``name`` is omitted (a given ``name`` wins; the prefix is kept).
- Job info ``status``: pier's ``Stopped`` (stopped by a user) is reported as ``Failed``, the
  seed allowing only Pending, Running, Succeeded, Failed and Unknown. ``nodes`` and
  ``images`` are comma-separated when a job spans several; ``currentAllocatedGPUs`` counts
  the devices (or the fraction of one) held now, 0 once the job has ended.
- Errors: ``{"status": <http status>, "message": "<field>: <problem>", "details": "<code>"}``
  plus ``"field"`` (for example ``"job.gpu"``) when one field is at fault, following the
  ``error.Error`` shape of Run:AI's researcher API.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel
from starlette.responses import JSONResponse, Response

from pier.api.dialects.relaxed_json import loads
from pier.api.dialects.runai_view import READ_ONLY, job_info, spec_to_job, submitted
from pier.errors import Invalid
from pier.spec import (
    MAX_REPLICAS,
    NAME_MAX,
    NAME_PATTERN,
    Cpu,
    Duration,
    JobKind,
    JobSpec,
    Lifecycle,
    Memory,
    Port,
    PvcMount,
    Resources,
    TaskRole,
    VolumeMount,
)

__all__ = [
    "PREFIX",
    "JobRef",
    "RunAiJob",
    "error_field",
    "error_response",
    "job_info",
    "job_to_spec",
    "parse_delete",
    "parse_submit",
    "spec_to_job",
    "submitted",
]

PREFIX = "/api/job"
_PULL_POLICIES = {"always": "Always", "ifnotpresent": "IfNotPresent", "never": "Never"}
_SERVICE_TYPES = ("loadbalancer", "nodeport", "ingress")
_NAME_RULE = (
    "lowercase letters, digits and '-', starting and ending with a letter or digit, "
    f"at most {NAME_MAX} characters"
)
_NAME_RE = re.compile(NAME_PATTERN)


# ---------------------------------------------------------------------------------------------
# The job parameters


def _env_value(value: object) -> object:
    if isinstance(value, dict):
        return {k: _env_text(v) for k, v in value.items()}
    return value


def _env_text(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value


def _port_item(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return {"container": value}
    if isinstance(value, str):
        external, _, container = value.rpartition(":")
        try:
            port = {"container": int(container)}
            return port | {"external": int(external)} if external else port
        except ValueError:
            raise ValueError(
                f"'{value}' is not a port: use 8080, '30080:8080' or "
                '{"container": 8080, "external": 30080}'
            ) from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=to_camel, populate_by_name=False
    )


class RunAiPvc(_Model):
    storage_class: str | None = Field(None, max_length=253)
    size: Memory | None = None
    path: str = Field(min_length=1, max_length=4096)
    read_only: bool | None = None


class RunAiPort(_Model):
    container: int = Field(ge=1, le=65535)
    external: int | None = Field(None, ge=1, le=65535)
    auto_generate: bool | None = None


class RunAiJob(_Model):
    """The seed's job parameters, as a client sends them."""

    name: str | None = None
    project: str = Field(min_length=1, max_length=NAME_MAX)
    interactive: bool | None = None
    image: str = Field(min_length=1, max_length=1024)
    command: bool | list[str] | str | None = None
    arguments: list[str] | None = None
    environment: Annotated[dict[str, str] | None, BeforeValidator(_env_value)] = None
    image_pull_policy: str | None = None
    stdin: bool | None = None
    tty: bool | None = None
    working_dir: str | None = Field(None, min_length=1, max_length=4096)
    create_home_dir: bool | None = None
    gpu: float | None = Field(None, ge=0, le=4096)
    cpu: Cpu | None = None
    cpu_limit: Cpu | None = None
    memory: Memory | None = None
    memory_limit: Memory | None = None
    large_shm: bool | None = None
    pvc: list[RunAiPvc] | None = None
    volume: dict[str, str] | None = None
    host_ipc: bool | None = None
    host_network: bool | None = None
    ports: list[Annotated[RunAiPort, BeforeValidator(_port_item)]] | None = None
    backoff_limit: int | None = Field(None, ge=0, le=1000)
    completions: int | None = Field(None, ge=1, le=100_000)
    parallelism: int | None = Field(None, ge=1, le=MAX_REPLICAS)
    elastic: bool | None = None
    preemptible: bool | None = None
    service_type: str | None = None
    ttl_after_finish: Duration | None = None
    prevent_privilege_escalation: bool | None = None
    node_type: str | None = Field(None, min_length=1, max_length=128)
    job_name_prefix: str | None = None

    @field_validator("name", "job_name_prefix")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not _is_name(value):
            raise ValueError(f"'{value}' is not a job name: use {_NAME_RULE}")
        return value

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, value: float | None) -> float | None:
        if value is not None and value > 1 and value != int(value):
            raise ValueError(
                f"{value:g} GPUs: use a whole number of GPUs or a fraction between 0 and 1"
            )
        return value

    @field_validator("image_pull_policy")
    @classmethod
    def _pull_policy(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in _PULL_POLICIES:
            raise ValueError(f"'{value}' is not one of always, ifNotPresent, never")
        return value

    @field_validator("service_type")
    @classmethod
    def _service_type(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in _SERVICE_TYPES:
            raise ValueError(f"'{value}' is not one of {', '.join(_SERVICE_TYPES)}")
        return value

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"'{key}' is not a valid environment variable name")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _command_words(cls, value: object) -> object:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, list):
            if not all(isinstance(word, str) for word in value):
                raise ValueError("an array of command words must hold strings only")
            return value
        if not isinstance(value, str):
            raise ValueError("must be true, an array of strings, or a command line string")
        try:
            shlex.split(value)
        except ValueError as error:
            raise ValueError(f"cannot split '{value}' into words: {error}") from None
        return value


def _is_name(value: str) -> bool:
    return len(value) <= NAME_MAX and _NAME_RE.match(value) is not None


class JobRef(_Model):
    """One job of a ``DELETE /api/job`` body."""

    name: str = Field(min_length=1, max_length=NAME_MAX)
    project: str = Field(min_length=1, max_length=NAME_MAX)


MAX_DELETE = 1000


# ---------------------------------------------------------------------------------------------
# Run:AI -> JobSpec


def parse_submit(raw: bytes) -> JobSpec:
    """A ``POST /api/job`` body as a JobSpec; Invalid (or MalformedBody) names the problem."""
    body = loads(raw)
    if not isinstance(body, dict):
        raise Invalid('the body must be a JSON object: {"job": {...}}', loc=["body"])
    for key in body:
        if key != "job":
            raise Invalid(
                f"unknown field '{key}': the body is {{\"job\": {{...}}}}", loc=["body", key]
            )
    job = body.get("job")
    if not isinstance(job, dict):
        raise Invalid("required: the job's parameters as a JSON object", loc=["body", "job"])
    try:
        model = RunAiJob.model_validate(job)
    except ValidationError as error:
        raise _invalid(error, ("body", "job")) from None
    return job_to_spec(model)


def parse_delete(raw: bytes) -> list[JobRef]:
    """A ``DELETE /api/job`` body: ``[{"name": ..., "project": ...}, ...]``."""
    body = loads(raw)
    if not isinstance(body, list):
        raise Invalid(
            'the body must be a JSON array of {"name": ..., "project": ...}', loc=["body"]
        )
    if len(body) > MAX_DELETE:
        raise Invalid(f"at most {MAX_DELETE} jobs per request", loc=["body"])
    refs = []
    for i, item in enumerate(body):
        try:
            refs.append(JobRef.model_validate(item))
        except ValidationError as error:
            raise _invalid(error, ("body", i)) from None
    return refs


def _invalid(error: ValidationError, prefix: tuple[str | int, ...]) -> Invalid:
    problems: list[tuple[list[str | int], str]] = []
    for err in error.errors():
        loc = [*prefix, *err["loc"]]
        kind = err["type"]
        if kind == "missing":
            msg = "required"
        elif kind == "extra_forbidden":
            msg = "unknown parameter"
        elif kind in ("model_type", "dict_type"):
            msg = "must be a JSON object"
        elif kind == "list_type":
            msg = "must be a JSON array"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append((loc, msg))
    message = "; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems[:5])
    return Invalid(message, loc=problems[0][0] if problems else list(prefix))


def _dotted(loc: list[str | int] | tuple[str | int, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts)


def _bad(field: str, problem: str, index: int | None = None) -> Invalid:
    loc: list[str | int] = ["body", "job", field, *([] if index is None else [index])]
    return Invalid(f"{_dotted(loc)}: {problem}", loc=loc)


def _argv(job: RunAiJob) -> tuple[list[str], list[str]]:
    arguments = list(job.arguments or [])
    if job.command is True:
        if not arguments:
            raise _bad("arguments", "empty, but command: true takes the command line from here")
        return arguments, []
    if isinstance(job.command, str):
        return shlex.split(job.command), arguments
    if isinstance(job.command, list):
        return list(job.command), arguments
    return [], arguments


def _volume(host: str, container: str) -> VolumeMount:
    read_only = container.endswith(READ_ONLY)
    target = container.removesuffix(READ_ONLY) if read_only else container
    if not host or not target:
        raise _bad("volume", f"'{host}': '{container}' does not map a host path to a path")
    return VolumeMount(host_path=host, mount_path=target, read_only=read_only)


def _port(i: int, port: RunAiPort) -> Port:
    if port.auto_generate and port.external is not None:
        raise _bad("ports", "autoGenerate picks the external port: give no external too", i)
    return Port(container_port=port.container, host_port=port.external)


def _check_together(job: RunAiJob) -> None:
    """Rules across parameters, named in Run:AI's terms before JobSpec would say them in its
    own."""
    if job.interactive and job.backoff_limit is not None:
        raise _bad("backoffLimit", "applies to training jobs only, and this job is interactive")
    if job.cpu is not None and job.cpu_limit is not None and job.cpu_limit < job.cpu:
        raise _bad("cpuLimit", f"{job.cpu_limit:g} is less than cpu ({job.cpu:g})")
    if job.memory is not None and job.memory_limit is not None and job.memory_limit < job.memory:
        raise _bad(
            "memoryLimit", f"{job.memory_limit} bytes is less than memory ({job.memory} bytes)"
        )
    if job.job_name_prefix is not None and len(job.job_name_prefix) > 40:
        raise _bad("jobNamePrefix", "at most 40 characters, leaving room for the index")


def job_to_spec(job: RunAiJob) -> JobSpec:
    """The Run:AI job parameters as pier's canonical spec."""
    _check_together(job)
    command, args = _argv(job)
    policy = job.image_pull_policy
    replicas = job.parallelism or 1
    # Kubernetes' completions: the job is done once that many pods succeeded; fewer than the
    # replicas run together means the rest are stopped then (OpenPAI's minSucceeded).
    enough = job.completions if job.completions is not None and job.completions < replicas else None
    task = TaskRole(
        replicas=replicas,
        min_succeeded=enough,
        image=job.image,
        image_pull_policy=_PULL_POLICIES[policy.lower()] if policy else None,
        command=command,
        args=args,
        env=dict(job.environment or {}),
        working_dir=job.working_dir,
        resources=Resources(
            gpu=job.gpu or 0,
            node_pool=job.node_type,
            cpu=job.cpu,
            cpu_limit=job.cpu_limit,
            memory=job.memory,
            memory_limit=job.memory_limit,
            large_shm=bool(job.large_shm),
        ),
        ports=[_port(i, p) for i, p in enumerate(job.ports or [])],
        volumes=[_volume(host, target) for host, target in (job.volume or {}).items()],
        pvcs=[
            PvcMount(
                storage_class=p.storage_class,
                size=p.size,
                mount_path=p.path,
                read_only=bool(p.read_only),
            )
            for p in job.pvc or []
        ],
        stdin=bool(job.stdin),
        tty=bool(job.tty),
        create_home_dir=bool(job.create_home_dir),
        host_ipc=bool(job.host_ipc),
        host_network=bool(job.host_network),
        prevent_privilege_escalation=job.prevent_privilege_escalation,
    )
    return JobSpec(
        name=job.name,
        name_prefix=job.job_name_prefix,
        project=job.project,
        kind=JobKind.INTERACTIVE if job.interactive else JobKind.TRAIN,
        preemptible=job.preemptible,
        elastic=bool(job.elastic),
        service_type=job.service_type.lower() if job.service_type else None,
        tasks=[task],
        lifecycle=Lifecycle(
            backoff_limit=job.backoff_limit,
            completions=job.completions,
            parallelism=job.parallelism,
            ttl_after_finish=job.ttl_after_finish,
        ),
    )


# ---------------------------------------------------------------------------------------------
# Errors


# Services name fields by their JobSpec path (``tasks.0.command``); a Run:AI client knows them
# by its own parameter names.
_FROM_SPEC = {
    "project": "project",
    "name": "name",
    "command": "command",
    "args": "arguments",
    "image": "image",
    "env": "environment",
    "working_dir": "workingDir",
    "gpu": "gpu",
    "node_pool": "nodeType",
    "backoff_limit": "backoffLimit",
    "completions": "completions",
    "parallelism": "parallelism",
    "ttl_after_finish": "ttlAfterFinish",
}

_SPEC_ROOTS = ("tasks", "lifecycle", "project", "name", "name_prefix")


def error_field(loc: list[str | int]) -> str:
    """The Run:AI name of the field at ``loc`` (``""`` when none): ``job.gpu`` as is,
    ``body.tasks.0.command`` (a service's JobSpec path) as ``job.command``."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    if not parts:
        return ""
    if loc[0] != "body" or parts[0] not in _SPEC_ROOTS:
        return _dotted(loc)
    named = [_FROM_SPEC[p] for p in parts if isinstance(p, str) and p in _FROM_SPEC]
    return f"job.{named[-1]}" if named else "job"


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]]) -> Response:
    """Run:AI's ``error.Error`` shape: ``{"status", "message", "details"}``; ``field`` names
    the parameter at fault when there is one."""
    body: dict[str, Any] = {"status": status, "message": message, "details": code}
    loc = details[0].get("loc") if details else None
    field = error_field(list(loc)) if isinstance(loc, list | tuple) else ""
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)
