"""``pier submit`` arguments -> :class:`JobSpec` (pure; no I/O besides nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pier.sdk import InvalidRequest
from pier.spec import JobSpec

__all__ = ["SubmitArgs", "build_spec", "parse_key_values"]


@dataclass(frozen=True, slots=True)
class SubmitArgs:
    """What ``pier submit`` was given; None means "not given" (the server's default)."""

    command: Sequence[str] = ()
    name: str | None = None
    name_prefix: str | None = None
    project: str | None = None
    description: str | None = None
    gpu: float | None = None
    gpu_model: str | None = None
    node_pool: str | None = None
    cpu: str | None = None
    cpu_limit: str | None = None
    memory: str | None = None
    memory_limit: str | None = None
    large_shm: bool = False
    interactive: bool = False
    image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    backoff_limit: int | None = None
    preemptible: bool | None = None
    ttl_after_finish: str | None = None
    schedule_timeout: str | None = None
    replicas: int | None = None


_TASK = ("tasks", 0)
_FLAGS: dict[tuple[str | int, ...], str] = {
    ("name",): "--name",
    ("name_prefix",): "--job-name-prefix",
    ("project",): "--project",
    (*_TASK, "replicas"): "--replicas",
    (*_TASK, "image"): "--image",
    (*_TASK, "env"): "--env",
    (*_TASK, "working_dir"): "--working-dir",
    **{
        (*_TASK, "resources", key): f"--{key.replace('_', '-')}"
        for key in ("gpu", "gpu_model", "cpu", "cpu_limit", "memory", "memory_limit")
    },
    (*_TASK, "resources"): "resources",
    (*_TASK, "resources", "node_pool"): "--node-type",
    ("lifecycle", "backoff_limit"): "--backoff-limit",
    ("lifecycle", "ttl_after_finish"): "--ttl-after-finish",
    ("lifecycle", "schedule_timeout"): "--schedule-timeout",
}


def parse_key_values(items: Sequence[str], what: str = "KEY=VALUE") -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; ValueError names a bad item."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"'{item}' is not {what}")
        result[key] = value
    return result


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def build_spec(args: SubmitArgs, cwd: str | None = None) -> JobSpec:
    """One task role ``main``; ``working_dir`` defaults to ``cwd`` when there is no image
    (as sbatch runs where it is called). :class:`InvalidRequest` names bad values."""
    working_dir = args.working_dir
    if working_dir is None and args.image is None:
        working_dir = cwd
    resources = _drop_none(
        {
            "gpu": args.gpu,
            "gpu_model": args.gpu_model,
            "node_pool": args.node_pool,
            "cpu": args.cpu,
            "cpu_limit": args.cpu_limit,
            "memory": args.memory,
            "memory_limit": args.memory_limit,
        }
    )
    if args.large_shm:
        resources["large_shm"] = True
    interactive = args.interactive
    task = _drop_none(
        {
            "name": "main",
            "replicas": args.replicas,
            "image": args.image,
            "command": list(args.command),
            "env": dict(args.env),
            "working_dir": working_dir,
            "resources": resources,
        }
    )
    lifecycle = _drop_none(
        {
            "backoff_limit": args.backoff_limit,
            "ttl_after_finish": args.ttl_after_finish,
            "schedule_timeout": args.schedule_timeout,
        }
    )
    spec = _drop_none(
        {
            "name": args.name,
            "name_prefix": args.name_prefix,
            "project": args.project,
            "description": args.description,
            "labels": dict(args.labels),
            "kind": "interactive" if interactive else "train",
            "preemptible": args.preemptible,
            "tasks": [task],
            "lifecycle": lifecycle,
        }
    )
    try:
        return JobSpec.model_validate(spec)
    except ValidationError as exc:
        error = InvalidRequest.from_validation("job", exc)
        for detail in error.details:
            flag = _FLAGS.get(tuple(detail.loc))
            if flag is not None:
                detail.loc = [flag]
        raise error from exc
