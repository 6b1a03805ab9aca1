"""The canonical job model: every field any supported interface can express.

Every dialect (native REST, Run:AI, Kubernetes YAML, Ray Jobs, OpenPAI, the Neuro-style SDK)
translates into and out of :class:`JobSpec`. This module does no I/O.

Units, chosen to match Kubernetes (which Run:AI and OpenPAI sit on):
- memory and shm are bytes; strings take Kubernetes quantity suffixes: ``K M G T P E`` are
  powers of 1000 and ``Ki Mi Gi Ti Pi Ei`` powers of 1024 (``"1G"`` = 10**9, ``"1Gi"`` = 2**30).
  ``KB MB GB TB`` are accepted as the decimal forms. Anything else (``"12XB"``) is rejected.
- cpu is cores (``0.5``, ``2``) or millicores as a string (``"500m"``).
- gpu is a whole number of devices or a fraction of one device strictly between 0 and 1.
- durations are seconds or strings such as ``"5s"``, ``"2m"``, ``"3h"``, ``"1d"``, ``"1h30m"``.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_GPUS_PER_JOB",
    "JobKind",
    "JobSpec",
    "Lifecycle",
    "Port",
    "PvcMount",
    "Resources",
    "RuntimeEnv",
    "TaskRole",
    "VolumeMount",
    "parse_cpu",
    "parse_duration",
    "parse_memory",
]

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 63
MAX_GPUS_PER_JOB = 4096
MAX_REPLICAS = 1024

_MEMORY_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_MEMORY = 1000**6  # one exabyte: anything larger is a typo, not a request


def parse_memory(value: object) -> int:
    """Bytes from an int or a Kubernetes quantity string; ValueError names the problem."""
    if isinstance(value, bool):
        raise ValueError("must be a number of bytes or a quantity such as '1G' or '512Mi'")
    if isinstance(value, int | float):
        number, suffix = float(value), ""
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if match is None:
            raise ValueError(f"'{value}' is not a quantity such as '1G', '512Mi' or 1048576")
        number, suffix = float(match.group(1)), match.group(2)
        if suffix not in _MEMORY_SUFFIXES:
            allowed = ", ".join(s for s in _MEMORY_SUFFIXES if s)
            raise ValueError(f"unknown unit '{suffix}' in '{value}' (use one of {allowed})")
    else:
        raise ValueError("must be a number of bytes or a quantity string")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number of bytes")
    result = int(number * _MEMORY_SUFFIXES[suffix])
    if result < 0:
        raise ValueError("must not be negative")
    if result > MAX_MEMORY:
        raise ValueError(f"{value!r} is larger than any machine")
    return result


def parse_cpu(value: object) -> float:
    """Cores from a number or a string ('2', '0.5', '500m')."""
    if isinstance(value, bool):
        raise ValueError("must be a number of cores")
    if isinstance(value, int | float):
        cores = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(
                f"'{value}' is not a number of cores such as 2, 0.5 or '500m'"
            ) from None
    else:
        raise ValueError("must be a number of cores")
    if not math.isfinite(cores):
        raise ValueError(f"{value!r} is not a finite number of cores")
    if cores < 0:
        raise ValueError("must not be negative")
    if cores > 100_000:
        raise ValueError(f"{value!r} cores is larger than any machine")
    return cores


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as '5s', '2m', '3h', '1h30m'."""
    if isinstance(value, bool):
        raise ValueError("must be seconds or a duration such as '5s', '2m', '3h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(
                    f"'{value}' is not a duration such as '30s', '5m', '3h' or '1d'"
                ) from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    else:
        raise ValueError("must be seconds or a duration string")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


Memory = Annotated[int, BeforeValidator(parse_memory)]
Cpu = Annotated[float, BeforeValidator(parse_cpu)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobKind(StrEnum):
    TRAIN = "train"
    INTERACTIVE = "interactive"


class Resources(_Strict):
    """Per-replica resource request."""

    gpu: float = Field(0, ge=0, le=MAX_GPUS_PER_JOB, description="whole GPUs, or a fraction < 1")
    gpu_model: str | None = Field(None, max_length=128)
    node_pool: str | None = Field(None, max_length=128)
    node_selector: dict[str, str] = Field(default_factory=dict)
    cpu: Cpu | None = None
    cpu_limit: Cpu | None = None
    memory: Memory | None = None
    memory_limit: Memory | None = None
    shm: Memory | None = None
    large_shm: bool = False
    custom: dict[str, float] = Field(default_factory=dict)

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(
                f"{value} GPUs: use a whole number of GPUs or a fraction between 0 and 1"
            )
        return value

    @field_validator("custom")
    @classmethod
    def _custom_non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        for key, amount in value.items():
            if amount < 0:
                raise ValueError(f"custom resource '{key}' must not be negative")
        return value

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        if self.cpu is not None and self.cpu_limit is not None and self.cpu_limit < self.cpu:
            raise ValueError("cpu_limit must be at least cpu")
        if (
            self.memory is not None
            and self.memory_limit is not None
            and self.memory_limit < self.memory
        ):
            raise ValueError("memory_limit must be at least memory")
        return self

    @property
    def whole_gpus(self) -> int:
        return int(self.gpu) if self.gpu >= 1 else 0


class Port(_Strict):
    container_port: int = Field(ge=1, le=65535)
    host_port: int | None = Field(None, ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"
    name: str | None = Field(None, max_length=63)
    expose: Literal["http", "ssh"] | None = None
    requires_auth: bool = True


class VolumeMount(_Strict):
    host_path: str = Field(min_length=1, max_length=4096)
    mount_path: str = Field(min_length=1, max_length=4096)
    read_only: bool = False


class PvcMount(_Strict):
    claim_name: str | None = Field(None, max_length=253)
    storage_class: str | None = Field(None, max_length=253)
    size: Memory | None = None
    mount_path: str = Field(min_length=1, max_length=4096)
    read_only: bool = False


class RuntimeEnv(_Strict):
    """Ray-style runtime environment (what the Ray Jobs dialect carries)."""

    working_dir: str | None = Field(None, max_length=4096)
    pip: list[str] = Field(default_factory=list)


class TaskRole(_Strict):
    """One role of a job: ``replicas`` identical processes (OpenPAI's taskRole)."""

    name: Name = "main"
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    image: str | None = Field(None, max_length=1024)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = Field(None, max_length=4096)
    runtime_env: RuntimeEnv | None = None
    resources: Resources = Field(default_factory=Resources)
    ports: list[Port] = Field(default_factory=list)
    volumes: list[VolumeMount] = Field(default_factory=list)
    pvcs: list[PvcMount] = Field(default_factory=list)
    stdin: bool = False
    tty: bool = False
    create_home_dir: bool = False
    host_ipc: bool = False
    host_network: bool = False
    prevent_privilege_escalation: bool | None = None
    min_failed: int | None = Field(None, ge=-1, description="failed replicas that fail the job")
    min_succeeded: int | None = Field(None, ge=-1, description="successes that end the job")

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"'{key}' is not a valid environment variable name")
        return value

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]


class Lifecycle(_Strict):
    backoff_limit: int | None = Field(None, ge=0, le=1000, description="retries (train: 6)")
    completions: int | None = Field(None, ge=1, le=100_000)
    parallelism: int | None = Field(None, ge=1, le=MAX_REPLICAS)
    ttl_after_finish: Duration | None = None
    schedule_timeout: Duration | None = None
    stop_grace_period: Duration = Field(10.0, le=3600)


class JobSpec(_Strict):
    """What a user asks for. Server-owned fields (id, owner, status) are not here."""

    name: Name | None = None
    name_prefix: Name | None = Field(None, max_length=40)
    submission_id: str | None = Field(None, min_length=1, max_length=128)
    project: str | None = Field(None, min_length=1, max_length=NAME_MAX)
    description: str | None = Field(None, max_length=4096)
    labels: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    kind: JobKind = JobKind.TRAIN
    preemptible: bool | None = None
    elastic: bool = False
    service_type: Literal["loadbalancer", "nodeport", "ingress", "clusterip"] | None = None
    tasks: list[TaskRole] = Field(min_length=1, max_length=32)
    lifecycle: Lifecycle = Field(default_factory=Lifecycle)

    @field_validator("tasks")
    @classmethod
    def _unique_roles(cls, value: list[TaskRole]) -> list[TaskRole]:
        names = [t.name for t in value]
        if len(names) != len(set(names)):
            raise ValueError("task role names must be unique")
        return value

    @model_validator(mode="after")
    def _gpu_total(self) -> JobSpec:
        if self.total_gpu > MAX_GPUS_PER_JOB:
            raise ValueError(f"asks for {self.total_gpu:g} GPUs in all; at most {MAX_GPUS_PER_JOB}")
        return self

    @property
    def is_preemptible(self) -> bool:
        """Training is preemptible unless said otherwise; interactive is not (Run:AI)."""
        if self.preemptible is not None:
            return self.preemptible
        return self.kind is JobKind.TRAIN

    @property
    def backoff_limit(self) -> int:
        if self.lifecycle.backoff_limit is not None:
            return self.lifecycle.backoff_limit
        return 6 if self.kind is JobKind.TRAIN else 0

    @property
    def replica_count(self) -> int:
        return sum(t.replicas for t in self.tasks)

    @property
    def total_gpu(self) -> float:
        return sum(t.resources.gpu * t.replicas for t in self.tasks)

    @property
    def is_gang(self) -> bool:
        return self.replica_count > 1

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)
