"""What the local executor launches for one placed replica: argv, environment, cwd — as a
host process, or (a task with an ``image`` while a container runtime is configured) as a
container whose CLI runs under the supervisor (:mod:`pier.executors.containers`).

Everything is checked here, before the first spawn of a job, so that a bad request leaves
no process behind: a problem raises :class:`~pier.executors.base.StartError`.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pier.executors.base import LaunchRequest, NodeInfo, ReplicaKey, ReplicaPlacement, StartError
from pier.executors.containers import (
    ENV_FILE,
    ContainerRun,
    ContainerRuntime,
    container_name,
    plan_container,
)
from pier.executors.gpus import SIMULATED_UUID_PREFIX, framework_memory_defaults
from pier.executors.gpus import visible_devices_env as _visible
from pier.spec import TaskRole

__all__ = ["Plan", "plan_replica"]


@dataclass(frozen=True, slots=True)
class Plan:
    key: ReplicaKey
    run_dir: Path
    argv: list[str]
    env: dict[str, str]
    """The supervisor's environment (for a container: the CLI's, not the container's)."""
    cwd: Path
    task: TaskRole
    container: ContainerRun | None = None
    runtime: ContainerRuntime | None = None


def plan_replica(
    launch: LaunchRequest,
    placement: ReplicaPlacement,
    task: TaskRole,
    run_dir: Path,
    *,
    node: NodeInfo,
    base_env: Mapping[str, str],
    runtime: ContainerRuntime | None,
) -> Plan:
    what = f"job {launch.job_id} replica {placement.task}-{placement.index}"
    key = ReplicaKey(launch.job_id, launch.attempt, task.name, placement.index)
    if task.image and runtime is not None:
        return _container_plan(launch, placement, task, run_dir, node, base_env, runtime, key)
    argv = task.argv
    if not argv:
        raise StartError(f"{what}: no command to run")
    cwd = run_dir
    if task.working_dir:
        cwd = run_dir / task.working_dir  # an absolute working_dir replaces run_dir
        if not cwd.is_dir():
            raise StartError(f"{what}: working directory {task.working_dir} does not exist")
    env = {
        **base_env,
        **_job_env(launch, placement, task, placement.devices),
    }
    if "/" in argv[0]:
        exe = cwd / argv[0]
        found = exe.is_file() and os.access(exe, os.X_OK)
    else:
        found = _on_path(argv[0], env.get("PATH", os.defpath))
    if not found:
        raise StartError(f"{what}: executable '{argv[0]}' not found (PATH and cwd {cwd})")
    return Plan(key, run_dir, argv, env, cwd, task)


def _job_env(
    launch: LaunchRequest, placement: ReplicaPlacement, task: TaskRole, devices: tuple[int, ...]
) -> dict[str, str]:
    """The job's own environment over whatever it inherits: ``devices`` as it sees them."""
    return {
        **framework_memory_defaults(placement.gpu_fraction),
        **launch.env,
        **task.env,
        **_visible(devices, placement.gpu_fraction),
        "PIER_TASK_ROLE": task.name,
        "PIER_REPLICA_INDEX": str(placement.index),
        "PIER_NUM_REPLICAS": str(task.replicas),
        "PIER_JOB_ID": launch.job_id,
        "PIER_ATTEMPT": str(launch.attempt),
    }


def _container_plan(
    launch: LaunchRequest,
    placement: ReplicaPlacement,
    task: TaskRole,
    run_dir: Path,
    node: NodeInfo,
    base_env: Mapping[str, str],
    runtime: ContainerRuntime,
    key: ReplicaKey,
) -> Plan:
    """Real GPUs are passed through and renumbered 0..n-1 inside (what CDI and ``--gpus``
    show the container); simulated ones are only named in ``CUDA_VISIBLE_DEVICES``."""
    real = {d.index for d in node.gpus if d.uuid and not d.uuid.startswith(SIMULATED_UUID_PREFIX)}
    passthrough = tuple(d for d in placement.devices if d in real)
    inside = tuple(range(len(passthrough))) if passthrough else placement.devices
    env = _job_env(launch, placement, task, inside)
    name = container_name(launch.job_id, launch.attempt, key.replica)
    labels = {
        "pier.job": launch.job_id,
        "pier.attempt": str(launch.attempt),
        "pier.replica": key.replica,
    }
    try:
        run = plan_container(task, name=name, env=env, gpus=passthrough, labels=labels)
    except ValueError as exc:
        raise StartError(f"job {launch.job_id} replica {key.replica}: {exc}") from None
    for host_path, _mount, _ro in run.volumes:
        if not os.path.exists(host_path):
            raise StartError(
                f"job {launch.job_id} replica {key.replica}: volume host path "
                f"{host_path} does not exist"
            )
    argv = runtime.run_argv(run, run_dir / ENV_FILE if run.file_env else None)
    return Plan(key, run_dir, argv, {**base_env, **run.cli_env}, run_dir, task, run, runtime)


_found_on_path: dict[tuple[str, str], float] = {}
FOUND_ON_PATH_SECONDS = 5.0
"""How long a command found on a PATH is believed to stay there: ``shutil.which`` over a
long PATH costs ~0.1 ms per replica. A command removed meanwhile fails at ``exec`` (exit
127, recorded like any failure) instead of as a start error."""


def _on_path(command: str, path: str) -> bool:
    key = (command, path)
    now = time.monotonic()
    if now - _found_on_path.get(key, -math.inf) < FOUND_ON_PATH_SECONDS:
        return True
    if shutil.which(command, path=path) is None:
        return False
    if len(_found_on_path) > 1024:
        _found_on_path.clear()
    _found_on_path[key] = now
    return True
