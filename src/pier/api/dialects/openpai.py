"""OpenPAI REST server v1 (seed 004): pure translation between OpenPAI's bodies and pier's
``JobSpec``, job and project views. No I/O.

Where the seed is vague, pier does what OpenPAI's rest-server does (its Joi schemas in
``src/rest-server/src/config``), except where written here:

- Errors are ``{"error": <code>, "message": <text>}`` (the seed's shape); bad input is 400
  ``InvalidParametersError`` naming the field, as Joi's validation answers. Integer fields
  take numeric strings (``"2"``), as Joi's conversion does; unknown fields are rejected.
- Job names (``[A-Za-z0-9\\-._]+``, at most 83 characters) are unique per virtual cluster
  (= pier project). The OpenPAI name is kept as the job's ``submission_id``
  (``openpai/<project id>/<jobName>``); the pier name is the OpenPAI name lowercased with
  every other character replaced by ``-`` (``-2``... appended when taken). The submitted
  config is kept verbatim in ``metadata["openpai/job-config"]`` (as kubectl keeps its
  last-applied configuration), so ``GET .../config`` answers what was sent.
- ``memoryMB`` and ``shmMB`` are MiB (YARN's megabytes); ``memoryMB`` is the memory request the
  scheduler places by, not a hard limit. ``cpuNumber`` is cores, ``gpuNumber`` whole GPUs,
  ``gpuType`` the GPU model a node must have. ``image`` is where the commands run when the local
  executor has a container runtime, else recorded; ``command`` runs under ``/bin/bash -c``.
- ``retryCount`` n >= 0 is pier's backoff limit; -1 (retry failures without end) is 1000
  retries, pier's maximum; -2 (re-run even after success) is refused.
- ``minFailedTaskCount`` null means failures of that role never fail the job (pier's -1);
  ``minSucceededTaskCount`` null means the job succeeds when every task has ended.
- ``portList`` entries with ``beginAt`` > 0 are fixed ports (``beginAt`` ..
  ``beginAt + portNumber - 1``); a port labelled ``ssh`` is what ``GET .../ssh`` reports.
  ``beginAt`` 0 (let the platform choose) is recorded only: pier assigns no ports.
- Each task gets OpenPAI's ``PAI_*`` variables that are known before it starts:
  ``PAI_JOB_NAME``, ``PAI_USER_NAME``, ``PAI_TASK_ROLE_COUNT``, ``PAI_TASK_ROLE_LIST``,
  ``PAI_TASK_ROLE_TASK_COUNT_<role>``, ``PAI_CURRENT_TASK_ROLE_NAME``, ``PAI_RESOURCE``,
  ``PAI_MIN_FAILED_TASK_COUNT_<role>``, ``PAI_MIN_SUCCEEDED_TASK_COUNT_<role>``,
  ``PAI_DATA_DIR``, ``PAI_OUTPUT_DIR``, ``PAI_CODE_DIR``, the fixed ports as
  ``PAI_CONTAINER_HOST_<label>_PORT_LIST`` and ``PAI_PORT_LIST_<role>_<index>_<label>``, and
  ``PAI_TASK_INDEX`` = ``PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX`` (the replica index);
  ``jobEnvs`` come last and win. ``PAI_HOST_IP_*`` is not set.
- Times are epoch milliseconds. Virtual-cluster percentages are of the cluster's GPUs (its
  CPU cores when it has none): capacity = deserved quota, maxCapacity = hard limit (the
  whole cluster when none), usedCapacity = what running jobs hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from starlette.responses import JSONResponse, Response

from pier.errors import PierError
from pier.services.openpai_support import SUBMISSION_PREFIX
from pier.spec import JobKind, JobSpec, Lifecycle, Port, Resources, TaskRole

__all__ = [
    "BASH",
    "CONFIG_ANNOTATION",
    "MIB",
    "PREFIX",
    "TASK_WRAPPER",
    "ExecutionType",
    "JobConfig",
    "OpenPaiError",
    "TokenRequest",
    "UserDelete",
    "UserUpdate",
    "UserVirtualClusters",
    "form_body",
    "invalid",
    "job_spec",
    "parse",
    "render_error",
]

PREFIX = "/api/v1"
CONFIG_ANNOTATION = "openpai/job-config"
MAX_JOB_NAME = 128 - len(SUBMISSION_PREFIX) - 37  # the submission id holds 128 characters
MIB = 1024**2
RETRY_FOREVER = 1000
BASH = "/bin/bash"
TASK_WRAPPER = (
    'export PAI_TASK_INDEX="$PIER_REPLICA_INDEX" '
    'PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX="$PIER_REPLICA_INDEX"; exec /bin/bash -c "$1"'
)
"""Runs the task's command with the per-replica ``PAI_*`` variables ($1 is the command)."""


class OpenPaiError(PierError):
    """An error with OpenPAI's own code (``JobNotFound``, ``InvalidParametersError``...)."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


def invalid(message: str) -> OpenPaiError:
    return OpenPaiError(400, "InvalidParametersError", message)


# pier's generic error codes -> OpenPAI's status and code, for errors no route translated.
_GENERIC: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "InvalidParametersError"),
    "invalid": (400, "InvalidParametersError"),
    "unauthenticated": (401, "UnauthorizedUserError"),
    "forbidden": (403, "ForbiddenUserError"),
    "not_found": (404, "NotFoundError"),
    "method_not_allowed": (405, "MethodNotAllowedError"),
    "conflict": (409, "ConflictError"),
    "too_large": (413, "RequestEntityTooLargeError"),
    "internal": (500, "InternalServerError"),
}


def render_error(status: int, code: str, message: str, _details: list[dict[str, Any]]) -> Response:
    if not code[:1].isupper():  # a pier code: OpenPAI's own codes are CamelCase
        status, code = _GENERIC.get(code, (status, "UnknownError"))
        if code == "InternalServerError":
            message = "internal server error"
    return JSONResponse({"error": code, "message": message}, status_code=status)


# -- request bodies -------------------------------------------------------------------------


def _integer(value: object) -> object:
    """Joi's integer: a whole number, or a string of one (Joi converts); never a boolean."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer (got {json.dumps(value)})")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]{1,18}\s*", value):
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError(f"must be an integer (got {json.dumps(value, default=str)})")


Integer = Annotated[StrictInt, BeforeValidator(_integer)]
_ROLE_LABEL = r"^[A-Za-z0-9._~]+$"
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenRequest(_Body):
    username: StrictStr = Field(pattern=USER_NAME)
    password: StrictStr = Field(min_length=6, max_length=1024)
    expiration: Integer = Field(86400, ge=60, le=7 * 86400, description="seconds")


class UserUpdate(_Body):
    username: StrictStr = Field(pattern=USER_NAME)
    password: StrictStr = Field("", max_length=1024)
    admin: StrictBool | None = None
    modify: StrictBool

    @model_validator(mode="after")
    def _password_rule(self) -> UserUpdate:
        if (not self.modify or self.password) and len(self.password) < 6:
            what = "is required to create a user" if not self.modify else "is too short"
            raise ValueError(f'"password" {what}: at least 6 characters')
        return self


class UserDelete(_Body):
    username: StrictStr = Field(pattern=USER_NAME)


class UserVirtualClusters(_Body):
    virtualClusters: StrictStr = Field(pattern=r"^[A-Za-z0-9_,-]*$", max_length=10_000)

    @property
    def names(self) -> list[str]:
        return sorted({name for name in self.virtualClusters.split(",") if name})


class ExecutionType(_Body):
    value: Literal["START", "STOP"]


class PortConfig(_Body):
    label: StrictStr = Field(pattern=_ROLE_LABEL, max_length=63)
    beginAt: Integer = Field(0, ge=0, le=65535)
    portNumber: Integer = Field(1, ge=1, le=65535)

    @model_validator(mode="after")
    def _in_range(self) -> PortConfig:
        last = self.beginAt + self.portNumber - 1
        if self.beginAt and last > 65535:
            raise ValueError(f"ports {self.beginAt}..{last} end past 65535")
        return self


class TaskRoleConfig(_Body):
    name: StrictStr = Field(pattern=_ROLE_LABEL, max_length=63)
    taskNumber: Integer = Field(1, ge=1, le=1024)
    cpuNumber: Integer = Field(1, ge=0, le=100_000)
    memoryMB: Integer = Field(100, ge=0, le=10**9)
    shmMB: Integer = Field(64, ge=0, le=10**9)
    gpuNumber: Integer = Field(0, ge=0, le=4096)
    portList: list[PortConfig] = Field(default_factory=list, max_length=64)
    command: StrictStr = Field(min_length=1, max_length=100_000)
    minFailedTaskCount: Integer | None = Field(1, ge=1)
    minSucceededTaskCount: Integer | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _counts(self) -> TaskRoleConfig:
        if self.shmMB > self.memoryMB:
            raise ValueError(f'"shmMB" ({self.shmMB}) must not exceed "memoryMB" ({self.memoryMB})')
        for field in ("minFailedTaskCount", "minSucceededTaskCount"):
            count = getattr(self, field)
            if count is not None and count > self.taskNumber:
                raise ValueError(
                    f'"{field}" ({count}) must not be greater than "taskNumber" ({self.taskNumber})'
                )
        return self


def _env_value(value: object) -> str:
    """A ``jobEnvs`` value as the environment holds it (JavaScript's spelling of it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(f"must be a string, number or boolean (got {json.dumps(value)})")


EnvValue = Annotated[str, BeforeValidator(_env_value)]


class JobConfig(_Body):
    """OpenPAI's v1 job config, field for field."""

    jobName: StrictStr = Field(pattern=r"^[A-Za-z0-9\-._]+$", max_length=MAX_JOB_NAME)
    image: StrictStr = Field(min_length=1, max_length=1024)
    authFile: StrictStr = Field("", max_length=4096)
    dataDir: StrictStr = Field("", max_length=4096)
    outputDir: StrictStr = Field("", max_length=4096)
    codeDir: StrictStr = Field("", max_length=4096)
    virtualCluster: StrictStr = Field("default", max_length=63)
    gpuType: StrictStr = Field("", max_length=128)
    retryCount: Integer = Field(0, ge=-2, le=RETRY_FOREVER)
    killAllOnCompletedTaskNumber: Integer | None = None
    jobEnvs: dict[str, EnvValue] = Field(default_factory=dict)
    taskRoles: list[TaskRoleConfig] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _roles(self) -> JobConfig:
        names = [role.name for role in self.taskRoles]
        if len(names) != len(set(names)):
            raise ValueError('"taskRoles" names must be unique')
        if self.retryCount == -2:
            raise ValueError(
                '"retryCount" -2 (run again even after success) is not supported: '
                "pier never re-runs a job that succeeded; use -1 to retry every failure"
            )
        return self

    @property
    def vc(self) -> str:
        return self.virtualCluster or "default"


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: object) -> M:
    """``raw`` as ``model``, or a 400 ``InvalidParametersError`` naming each problem."""
    if not isinstance(raw, dict):
        raise invalid("the body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(_problems(exc)) from None


def form_body(raw: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (curl's ``-d``), last value winning."""
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise invalid("the form body is not UTF-8") from None


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problems(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False):
        path, kind = _path(err["loc"]), err["type"]
        message = str(err["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            problems.append(f'"{path}" is required')
        elif kind == "extra_forbidden":
            problems.append(f'"{path}" is not allowed')
        elif not path:
            problems.append(message)
        else:
            if not message.startswith('"'):  # pydantic's words, or a validator's own
                got = "" if "(got " in message else _shown(err["loc"], err["input"])
                message = message[:1].lower() + message[1:] + got
            problems.append(f'"{path}": {message}')
    return "; ".join(problems[:6])


def _shown(loc: Sequence[int | str], value: object) -> str:
    """`` (got <value>)`` after a problem, where echoing the value is useful and safe."""
    if isinstance(value, dict | list) or (loc and loc[-1] == "password"):
        return ""
    return f" (got {json.dumps(value, default=str)})"


# -- job config -> JobSpec ------------------------------------------------------------------


def _pier_name(text: str, fallback: str, limit: int = 63) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-")
    return name or fallback


def _role_names(names: Sequence[str]) -> list[str]:
    taken: set[str] = set()
    result = []
    for name in names:
        base = candidate = _pier_name(name, "task", limit=56)
        suffix = 2
        while candidate in taken:
            candidate, suffix = f"{base}-{suffix}", suffix + 1
        taken.add(candidate)
        result.append(candidate)
    return result


def _expand_path(path: str, job_name: str, username: str) -> str:
    """OpenPAI's substitutions in authFile, dataDir, outputDir and codeDir."""
    path = re.sub(r"\$PAI_JOB_NAME(?![\w])", job_name, path)
    return re.sub(r"(\$PAI_USER_NAME|\$PAI_USERNAME)(?![\w])", username, path)


def _ports(role: TaskRoleConfig) -> list[Port]:
    return [
        Port(
            container_port=entry.beginAt + k,
            host_port=entry.beginAt + k,
            name=entry.label,
            expose="ssh" if entry.label == "ssh" else None,
        )
        for entry in role.portList
        if entry.beginAt > 0
        for k in range(entry.portNumber)
    ]


def _role_env(config: JobConfig, role: TaskRoleConfig, common: dict[str, str]) -> dict[str, str]:
    env = dict(common)
    env["PAI_CURRENT_TASK_ROLE_NAME"] = role.name
    env["PAI_RESOURCE"] = f"{role.gpuNumber},{role.cpuNumber},{role.memoryMB},{role.shmMB}"
    env[f"PAI_MIN_FAILED_TASK_COUNT_{role.name}"] = _count_text(role.minFailedTaskCount)
    env[f"PAI_MIN_SUCCEEDED_TASK_COUNT_{role.name}"] = _count_text(role.minSucceededTaskCount)
    for entry in role.portList:
        if entry.beginAt > 0:
            ports = ",".join(str(entry.beginAt + k) for k in range(entry.portNumber))
            env[f"PAI_CONTAINER_HOST_{entry.label}_PORT_LIST"] = ports
            if entry.label == "ssh":
                env["PAI_CONTAINER_SSH_PORT"] = str(entry.beginAt)
    env.update(config.jobEnvs)
    return env


def _count_text(count: int | None) -> str:
    return "" if count is None else str(count)


def job_spec(config: JobConfig, raw: dict[str, Any], username: str) -> JobSpec:
    """The JobSpec for an OpenPAI job config (``raw``: the body as sent, kept verbatim)."""
    common = {
        "PAI_JOB_NAME": config.jobName,
        "PAI_USER_NAME": username,
        "PAI_JOB_VC_NAME": config.vc,
        "PAI_TASK_ROLE_COUNT": str(len(config.taskRoles)),
        "PAI_TASK_ROLE_LIST": ",".join(role.name for role in config.taskRoles),
        "PAI_DATA_DIR": _expand_path(config.dataDir, config.jobName, username),
        "PAI_OUTPUT_DIR": _expand_path(config.outputDir, config.jobName, username),
        "PAI_CODE_DIR": _expand_path(config.codeDir, config.jobName, username),
    }
    for role in config.taskRoles:
        common[f"PAI_TASK_ROLE_TASK_COUNT_{role.name}"] = str(role.taskNumber)
        for entry in role.portList:
            if entry.beginAt > 0:
                ports = ",".join(str(entry.beginAt + k) for k in range(entry.portNumber))
                for index in range(role.taskNumber):
                    common[f"PAI_PORT_LIST_{role.name}_{index}_{entry.label}"] = ports
    tasks = [
        TaskRole(
            name=pier_name,
            replicas=role.taskNumber,
            image=config.image,
            command=[BASH, "-c", TASK_WRAPPER, "openpai-task"],
            args=[role.command],
            env=_role_env(config, role, common),
            resources=Resources(
                gpu=role.gpuNumber,
                gpu_model=config.gpuType or None,
                cpu=role.cpuNumber,
                memory=role.memoryMB * MIB,
                shm=role.shmMB * MIB,
            ),
            ports=_ports(role),
            min_failed=-1 if role.minFailedTaskCount is None else role.minFailedTaskCount,
            min_succeeded=role.minSucceededTaskCount,
        )
        for pier_name, role in zip(
            _role_names([r.name for r in config.taskRoles]), config.taskRoles, strict=True
        )
    ]
    retries = RETRY_FOREVER if config.retryCount < 0 else config.retryCount
    try:
        return JobSpec(
            name=_pier_name(config.jobName, "job"),
            project=config.vc,
            metadata={CONFIG_ANNOTATION: json.dumps(raw, separators=(",", ":"))},
            kind=JobKind.TRAIN,
            tasks=tasks,
            lifecycle=Lifecycle(backoff_limit=retries),
        )
    except ValidationError as exc:
        raise invalid(_problems(exc)) from None
