"""The tenant job API in the Ray Jobs shape (seed 002), translated to and from :class:`JobSpec`.

Pure translation: no I/O. The router (:mod:`pier.api.routers.ray_jobs`) parses, calls
:mod:`pier.services.submissions` and renders with the functions here. What the real Ray 2.60
client sends and accepts is in ``/work/shared/reference/ray-jobs-api.md``; the choices where the
seed is vague or wrong:

- ``runtime_env`` is required (the seed says so; the Ray client always sends it, ``{}`` when
  empty) but ``working_dir`` inside it is not: the seed's runtime_env table is a copy of the
  entrypoint row, and requiring it would break every stock ``ray job submit`` without one.
- ``entrypoint_num_cpus`` must lie in [0.3, 16] and ``entrypoint_memory`` in
  [134217728, 1125899906842624] bytes (the seed's ranges; Ray itself has none). Memory is an
  integer number of bytes, as the Ray client insists.
- ``submission_id``: ``app-`` plus 16 characters of Ray's alphabet when absent; when given it
  must match ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}`` (the client puts it into URL paths unquoted).
  It also names the pier job when it is a valid pier name, else the job is named ``ray-<n>``.
- ``X-Tenant-Id`` is the pier project (absent: the caller's default project);
  ``X-Pool-Label`` is the node pool the job must run in (``Resources.node_pool``).
- ``entrypoint_resources`` become custom resources; ``CPU``, ``GPU`` and ``memory`` there are
  refused, as Ray refuses them (use the ``entrypoint_num_*`` fields).
  ``entrypoint_label_selector`` becomes a node selector (equality only).
- ``runtime_env``: ``working_dir`` (a ``gcs://`` package uploaded through
  ``/api/packages`` or a ``file://`` archive on the node), ``env_vars`` (strings) and ``pip``
  (a list, or Ray's ``{"packages": [...], "pip_check": false}``) are run; ``_ray_commit``,
  ``excludes``, ``config`` and ``eager_install`` are accepted and ignored; anything else
  (``conda``, ``py_modules``, ``container`` ...) is refused naming the key.
- The entrypoint is a shell command, run as ``/bin/sh -c <entrypoint>`` with
  ``PYTHONUNBUFFERED=1`` (as Ray does), never retried (Ray does not retry entrypoints), and
  stopped with SIGTERM then SIGKILL after 3 s (Ray's ``RAY_JOB_STOP_WAIT_TIME_S``).
- Errors are JSON strings (the seed's failure example is one; the Ray client prints the body
  verbatim). A rejected submit reads ``create app failed, submissionId:[<id>], err: <why>``.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response

from pier.errors import Conflict, Invalid, PierError, Unschedulable
from pier.models import JobView
from pier.spec import (
    MAX_GPUS_PER_JOB,
    NAME_MAX,
    NAME_PATTERN,
    JobKind,
    JobSpec,
    Lifecycle,
    Resources,
    RuntimeEnv,
    TaskRole,
)
from pier.status import JobStatus, Reason

__all__ = [
    "RAY_VERSION",
    "RaySubmission",
    "entrypoint_of",
    "job_details",
    "parse_submission",
    "render_error",
    "submit_failed",
    "to_spec",
    "version_body",
]

RAY_VERSION = "2.60.0"
"""The Ray release whose Jobs API this dialect speaks (the client parses it as PEP 440 and
needs >= 2.8 for every field)."""
API_VERSION = "4"
"""Ray's Jobs REST API version (4 added DELETE); the CLI does ``int()`` on it."""

MIN_CPUS, MAX_CPUS = 0.3, 16.0
MIN_MEMORY, MAX_MEMORY = 134_217_728, 1_125_899_906_842_624
SUBMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NAME = re.compile(NAME_PATTERN)
_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz123456789"  # Ray's, no I l o O 0
SHELL = ("/bin/sh", "-c")
STOP_GRACE_SECONDS = 3.0
MAX_PIP_PACKAGES = 256

_FIELDS = {
    "entrypoint",
    "submission_id",
    "job_id",
    "runtime_env",
    "metadata",
    "entrypoint_num_cpus",
    "entrypoint_num_gpus",
    "entrypoint_memory",
    "entrypoint_resources",
    "entrypoint_label_selector",
}
_RUNTIME_ENV_RUN = {"working_dir", "env_vars", "pip"}
_RUNTIME_ENV_IGNORED = {"_ray_commit", "excludes", "config", "eager_install"}
_RESERVED_RESOURCES = {"CPU": "entrypoint_num_cpus", "GPU": "entrypoint_num_gpus"}
WORKING_DIR_SCHEMES = ("gcs://", "file://")
_RAY_STATUS = {
    JobStatus.PENDING: "PENDING",
    JobStatus.RUNNING: "RUNNING",
    JobStatus.UNKNOWN: "RUNNING",  # the executor lost sight of it for now; not terminal
    JobStatus.SUCCEEDED: "SUCCEEDED",
    JobStatus.FAILED: "FAILED",
    JobStatus.STOPPED: "STOPPED",
}


@dataclass(frozen=True, slots=True)
class RaySubmission:
    """A validated ``POST /api/jobs/`` body plus its two headers."""

    submission_id: str
    entrypoint: str
    tenant: str | None = None
    pool: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    env_vars: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    pip: tuple[str, ...] = ()
    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    label_selector: dict[str, str] = field(default_factory=dict)


def new_submission_id() -> str:
    return "app-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def _bad(loc: str, message: str) -> Invalid:
    return Invalid(f"{loc}: {message}", loc=["body", *loc.split(".")])


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _string_map(value: object, loc: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad(loc, "must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _bad(f"{loc}.{key}", f"must be a string, not {json.dumps(item)}")
    return dict(value)


def _header(headers: Mapping[str, str], name: str, longest: int) -> str | None:
    value = headers.get(name)
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > longest:
        raise Invalid(f"{name}: longer than {longest} characters", loc=["header", name])
    return value


def raw_submission_id(body: object) -> str:
    """The id a (possibly invalid) body asks for, for the failure message; '' if none."""
    if isinstance(body, dict):
        for key in ("submission_id", "job_id"):
            value = body.get(key)
            if isinstance(value, str):
                return value[:128]
    return ""


def parse_submission(body: object, headers: Mapping[str, str]) -> RaySubmission:
    """Validate a submit body; :class:`Invalid` names the first field that is wrong."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object", loc=["body"])
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown field (known: {', '.join(sorted(_FIELDS))})")
    present = {k: v for k, v in body.items() if v is not None}  # the client drops Nones too
    return RaySubmission(
        submission_id=_submission_id(present),
        entrypoint=_entrypoint(present),
        tenant=_header(headers, "X-Tenant-Id", NAME_MAX),
        pool=_header(headers, "X-Pool-Label", 128),
        metadata=_string_map(present.get("metadata", {}), "metadata"),
        **_runtime_env(present),
        **_resources(present),
    )


def _submission_id(body: dict[str, Any]) -> str:
    given = body.get("submission_id", body.get("job_id"))
    if given is None:
        return new_submission_id()
    loc = "submission_id" if "submission_id" in body else "job_id"
    if not isinstance(given, str) or not SUBMISSION_ID.match(given):
        raise _bad(
            loc,
            "must be 1-128 characters of letters, digits, '.', '_' and '-', starting with a "
            "letter or digit",
        )
    if "submission_id" in body and "job_id" in body and body["job_id"] != given:
        raise _bad("job_id", "differs from submission_id (job_id is its deprecated alias)")
    return given


def _entrypoint(body: dict[str, Any]) -> str:
    entrypoint = body.get("entrypoint")
    if entrypoint is None:
        raise _bad("entrypoint", "is required (the shell command that starts the job)")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise _bad("entrypoint", "must be a non-empty string")
    if "\0" in entrypoint or len(entrypoint) > 64 * 1024:
        raise _bad("entrypoint", "must be at most 64 KiB of text without NUL characters")
    return entrypoint


def _runtime_env(body: dict[str, Any]) -> dict[str, Any]:
    env = body.get("runtime_env")
    if env is None:
        raise _bad("runtime_env", "is required (an object; {} when there is nothing to set)")
    if not isinstance(env, dict):
        raise _bad("runtime_env", "must be an object")
    for key in sorted(env):
        if key not in _RUNTIME_ENV_RUN | _RUNTIME_ENV_IGNORED:
            raise _bad(
                f"runtime_env.{key}",
                "is not supported by pier (supported: working_dir, env_vars, pip)",
            )
    env_vars = _string_map(env.get("env_vars") or {}, "runtime_env.env_vars")
    for key in env_vars:
        if not key or "=" in key or "\0" in key:
            raise _bad("runtime_env.env_vars", f"'{key}' is not a valid variable name")
    return {
        "env_vars": env_vars,
        "working_dir": _working_dir(env.get("working_dir")),
        "pip": _pip(env.get("pip")),
    }


def _working_dir(value: object) -> str | None:
    if value is None:
        return None
    loc = "runtime_env.working_dir"
    if not isinstance(value, str) or not value:
        raise _bad(loc, "must be a URI string")
    if not value.startswith(WORKING_DIR_SCHEMES):
        raise _bad(
            loc,
            f"'{value}' is not supported: give a local directory to the Ray client (it uploads "
            "it as gcs://...) or a file:// URI of a .zip on the node",
        )
    if value.startswith("file://") and not value.removeprefix("file://").startswith("/"):
        raise _bad(loc, f"'{value}' must be an absolute file:///path")
    if len(value) > 4096:
        raise _bad(loc, "is longer than 4096 characters")
    return value


def _pip(value: object) -> tuple[str, ...]:
    loc = "runtime_env.pip"
    if value is None:
        return ()
    if isinstance(value, dict):  # the client's normal form: {"packages": [...], ...}
        for key in sorted(value):
            if key == "pip_check" and value[key]:
                raise _bad(f"{loc}.pip_check", "true is not supported")
            if key not in ("packages", "pip_check") and value[key] is not None:
                raise _bad(f"{loc}.{key}", "is not supported (only packages)")
        value = value.get("packages", [])
        loc = f"{loc}.packages"
    if not isinstance(value, list):
        raise _bad(loc, "must be a list of requirement strings such as 'numpy==1.24'")
    if len(value) > MAX_PIP_PACKAGES:
        raise _bad(loc, f"at most {MAX_PIP_PACKAGES} packages")
    packages = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _bad(f"{loc}.{i}", "must be a non-empty requirement string")
        requirement = item.strip()
        if requirement.startswith("-") or any(c in requirement for c in "\n\r\0"):
            raise _bad(f"{loc}.{i}", f"'{item}' is not a requirement (options are not accepted)")
        packages.append(requirement)
    return tuple(packages)


def _resources(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "entrypoint_num_cpus" in body:
        cpus = _number(body["entrypoint_num_cpus"])
        if cpus is None or not MIN_CPUS <= cpus <= MAX_CPUS:
            raise _bad(
                "entrypoint_num_cpus",
                f"{json.dumps(body['entrypoint_num_cpus'])} is out of range: must be a number "
                f"of CPUs in [{MIN_CPUS:g}, {MAX_CPUS:g}]",
            )
        out["num_cpus"] = cpus
    if "entrypoint_memory" in body:
        memory = body["entrypoint_memory"]
        if isinstance(memory, bool) or not isinstance(memory, int):
            raise _bad("entrypoint_memory", "must be an integer number of bytes")
        if not MIN_MEMORY <= memory <= MAX_MEMORY:
            raise _bad(
                "entrypoint_memory",
                f"{memory} is out of range: must be in [{MIN_MEMORY}, {MAX_MEMORY}] bytes",
            )
        out["memory"] = memory
    if "entrypoint_num_gpus" in body:
        gpus = _number(body["entrypoint_num_gpus"])
        if gpus is None or not 0 <= gpus <= MAX_GPUS_PER_JOB:
            raise _bad(
                "entrypoint_num_gpus", f"must be a number of GPUs in [0, {MAX_GPUS_PER_JOB}]"
            )
        if gpus > 1 and gpus != int(gpus):
            raise _bad("entrypoint_num_gpus", f"{gpus:g}: use whole GPUs or a fraction below 1")
        out["num_gpus"] = gpus
    if "entrypoint_resources" in body:
        out["resources"] = _custom_resources(body["entrypoint_resources"])
    if "entrypoint_label_selector" in body:
        loc = "entrypoint_label_selector"
        selector = _string_map(body[loc], loc)
        for key, value in selector.items():
            if value.startswith("!") or value.startswith("in(") or "," in value:
                raise _bad(f"{loc}.{key}", f"'{value}': only equality (key: value) is supported")
        out["label_selector"] = selector
    return out


def _custom_resources(value: object) -> dict[str, float]:
    loc = "entrypoint_resources"
    if not isinstance(value, dict):
        raise _bad(loc, "must be an object of resource name to amount")
    custom = {}
    for key, amount in value.items():
        if key in _RESERVED_RESOURCES or key == "memory":
            instead = _RESERVED_RESOURCES.get(key, "entrypoint_memory")
            raise _bad(f"{loc}.{key}", f"use {instead} instead")
        if not key or len(key) > 128:
            raise _bad(loc, f"'{key}' is not a resource name (1-128 characters)")
        number = _number(amount)
        if number is None or number < 0:
            raise _bad(f"{loc}.{key}", "must be a non-negative number")
        custom[key] = number
    return custom


def job_name(submission_id: str) -> str | None:
    """The submission id as the pier job name when it is a valid one (else ``ray-<n>``)."""
    if len(submission_id) <= NAME_MAX and _NAME.match(submission_id):
        return submission_id
    return None


def to_spec(sub: RaySubmission) -> JobSpec:
    try:
        return _to_spec(sub)
    except ValidationError as exc:  # parse_submission checked each field; this is a backstop
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Invalid(f"{where}: {first['msg']}", loc=["body"]) from None


def _to_spec(sub: RaySubmission) -> JobSpec:
    runtime_env = None
    if sub.working_dir is not None or sub.pip:
        runtime_env = RuntimeEnv(working_dir=sub.working_dir, pip=list(sub.pip))
    name = job_name(sub.submission_id)
    task = TaskRole(
        name="main",
        command=[*SHELL, sub.entrypoint],
        env={"PYTHONUNBUFFERED": "1", **sub.env_vars},
        runtime_env=runtime_env,
        resources=Resources(
            gpu=sub.num_gpus or 0,
            cpu=sub.num_cpus,
            memory=sub.memory,
            node_pool=sub.pool,
            node_selector=sub.label_selector,
            custom=sub.resources,
        ),
    )
    return JobSpec(
        name=name,
        name_prefix=None if name else "ray",
        submission_id=sub.submission_id,
        project=sub.tenant,
        metadata=sub.metadata,
        kind=JobKind.TRAIN,
        tasks=[task],
        lifecycle=Lifecycle(backoff_limit=0, stop_grace_period=STOP_GRACE_SECONDS),
    )


# -- answers ------------------------------------------------------------------------------


def version_body() -> dict[str, str]:
    return {
        "version": API_VERSION,
        "ray_version": RAY_VERSION,
        "ray_commit": "",
        "session_name": "pier",
    }


def entrypoint_of(argv: list[str]) -> str:
    """The shell command a job runs: what came after ``/bin/sh -c`` (also behind the runtime
    env wrapper), else the argv quoted for a shell."""
    if len(argv) >= 3 and tuple(argv[-3:-1]) == SHELL:
        return argv[-1]
    return shlex.join(argv)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _message(view: JobView, status: str) -> str:
    if status == "PENDING":
        detail = view.pending_reason or view.message
        return "Job has not started yet." + (f" {detail}" if detail else "")
    if view.status is JobStatus.UNKNOWN:
        return f"Job is currently running; {view.message or 'pier is reconciling its state'}."
    if status == "RUNNING":
        return "Job is currently running."
    if status == "STOPPED":
        return "Job was intentionally stopped."
    if status == "SUCCEEDED":
        return "Job finished successfully."
    if view.exit_code is not None and view.reason in (
        Reason.ERROR.value,
        Reason.BACKOFF_LIMIT_EXCEEDED.value,
    ):
        return f"Job entrypoint command failed with exit code {view.exit_code}."
    return f"Job failed: {view.message}" if view.message else "Job failed."


def _error_type(view: JobView) -> str | None:
    if view.status is not JobStatus.FAILED:
        return None
    return {
        Reason.START_FAILED.value: "JOB_ENTRYPOINT_COMMAND_START_ERROR",
        Reason.UNSCHEDULABLE.value: "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE",
        Reason.SUPERVISOR_LOST.value: "JOB_SUPERVISOR_ACTOR_DIED",
    }.get(view.reason or "", "JOB_ENTRYPOINT_COMMAND_ERROR" if view.exit_code is not None else None)


def _runtime_env_view(task: TaskRole) -> dict[str, Any]:
    env: dict[str, Any] = {}
    if task.runtime_env is not None and task.runtime_env.working_dir is not None:
        env["working_dir"] = task.runtime_env.working_dir
    if task.env:
        env["env_vars"] = dict(task.env)
    if task.runtime_env is not None and task.runtime_env.pip:
        env["pip"] = {"packages": list(task.runtime_env.pip), "pip_check": False}
    return env


def job_details(view: JobView) -> dict[str, Any]:
    """Ray's ``JobDetails`` (every key the client parses, with the types it insists on), plus
    the entrypoint's resources and pier's own names, which the client ignores."""
    status = _RAY_STATUS[view.status]
    task = view.spec.tasks[0]
    res = task.resources
    return {
        "type": "SUBMISSION",
        "job_id": view.id,
        "submission_id": view.submission_id,
        "driver_info": None,
        "status": status,
        "entrypoint": entrypoint_of(task.argv),
        "message": _message(view, status),
        "error_type": _error_type(view),
        "start_time": _ms(view.created_at),
        "end_time": _ms(view.finished_at) if view.status.is_terminal else None,
        "metadata": dict(view.spec.metadata),
        "runtime_env": _runtime_env_view(task),
        "driver_agent_http_address": None,
        "driver_node_id": view.replicas[0].node if view.replicas else None,
        "driver_exit_code": None if status == "STOPPED" else view.exit_code,
        "entrypoint_num_cpus": res.cpu,
        "entrypoint_num_gpus": res.gpu or None,
        "entrypoint_memory": res.memory,
        "entrypoint_resources": dict(res.custom) or None,
        "tenant": view.project,
        "pier_job": view.name,
        "pier_status": view.status.value,
    }


# -- errors -------------------------------------------------------------------------------


def submit_failed(submission_id: str, exc: PierError) -> PierError:
    """A rejected submit, in the seed's words: ``create app failed, submissionId:[..], err:``
    then why (an unschedulable job as the seed's scheduler explains it)."""
    if isinstance(exc, Unschedulable):
        why = (
            "\nthe instance cannot be scheduled. The latest failure: no available resource "
            "that meets the request requirements, The reasons are as follows:\n\t1 unit with "
            f"[Affinity can't be Satisfied] requirements: [{exc.problem}].\n"
        )
        status = 400
    elif isinstance(exc, Conflict) and exc.loc[-1:] == ["submission_id"]:
        why = (
            f"Job with submission_id {submission_id} already exists. Please use a different "
            "submission_id."
        )
        status = exc.status_code
    else:
        why, status = exc.message, exc.status_code
    error = PierError(f"create app failed, submissionId:[{submission_id}], err: {why}", loc=exc.loc)
    error.status_code = 400 if status == 422 else status
    error.code = exc.code
    return error


def render_error(status: int, _code: str, message: str, _details: list[dict[str, Any]]) -> Response:
    """Every error under the dialect's paths: a JSON string, which the Ray client shows as it
    is; 422 becomes Ray's 400."""
    return Response(
        json.dumps(message),
        status_code=400 if status == 422 else status,
        media_type="application/json",
    )
