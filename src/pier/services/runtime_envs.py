"""A task's Ray-style ``runtime_env`` (working_dir archive, pip packages) made runnable: the
task's command is wrapped in :mod:`pier.executors.runtime_env_setup`, which the job runs
first, so unpacking and ``pip install`` happen in the job and are in its log.

The spec keeps ``runtime_env`` as given (the URIs and the package list) next to the wrapped
command. The wrapper runs with this server's Python, so such jobs run where that Python is:
on the local executor's machine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from pier.errors import Invalid
from pier.executors import runtime_env_setup
from pier.services.context import ServiceContext
from pier.services.packages import require_package
from pier.spec import JobSpec, TaskRole

__all__ = ["SETUP_SCRIPT", "materialise", "pip_env_dir"]

SETUP_SCRIPT = Path(runtime_env_setup.__file__)


def pip_env_dir(
    files_dir: Path, project_id: str, requirements: list[str], env: dict[str, str]
) -> Path:
    """One environment per project, interpreter, package set (order and spacing aside) and
    pip settings from the job's environment (``PIP_INDEX_URL``, ``PIP_FIND_LINKS`` ...): the
    same names from another index are other packages, and one project's environment (built
    from whatever index it chose) is never another project's."""
    pip_settings = sorted((k, v) for k, v in env.items() if k.startswith("PIP_"))
    key = json.dumps([sys.version, sorted(r.strip() for r in requirements), pip_settings])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return files_dir / "pip-envs" / project_id / digest


def _wrap(ctx: ServiceContext, project_id: str, task: TaskRole) -> TaskRole:
    env = task.runtime_env
    if env is None or (env.working_dir is None and not env.pip):
        return task
    if ctx.files_dir is None:
        raise Invalid(
            "runtime_env working_dir and pip are not supported by this server (it has no "
            "files directory)",
            loc=["body", "runtime_env"],
        )
    options: list[str] = []
    if env.working_dir is not None:
        if env.working_dir.startswith("gcs://"):
            options += ["--archive", str(require_package(ctx, project_id, env.working_dir))]
        elif env.working_dir.startswith("file:///"):
            options += ["--archive", env.working_dir.removeprefix("file://"), "--strip-top-level"]
        else:
            raise Invalid(
                f"runtime_env.working_dir: '{env.working_dir}' is neither gcs:// nor file:///",
                loc=["body", "runtime_env", "working_dir"],
            )
    if env.pip:
        env_dir = pip_env_dir(ctx.files_dir, project_id, env.pip, task.env)
        options += ["--pip-env", str(env_dir), "--pip", *env.pip]
    command = [sys.executable, "-I", str(SETUP_SCRIPT), *options, "--", *task.argv]
    return task.model_copy(update={"command": command, "args": []})


def materialise(ctx: ServiceContext, project_id: str, spec: JobSpec) -> JobSpec:
    """``spec`` with every task that has a runtime_env wrapped in its setup step."""
    tasks = [_wrap(ctx, project_id, task) for task in spec.tasks]
    if tasks == list(spec.tasks):
        return spec
    return spec.model_copy(update={"tasks": tasks})
