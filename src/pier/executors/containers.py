"""Container mode of the local executor: a replica whose task names an ``image`` runs as
``<runtime> run --rm --name pier-<job>-<attempt>-<replica> ... IMAGE [ARGS]`` in the
foreground, under the same supervisor as a host process (pid, exit code, output, stop and
re-attach work the same way: the CLI is the job's process group leader).

Which runtime: ``PIER_CONTAINER_RUNTIME`` (``auto``: podman, else docker, whichever CLI is
found and answers ``info``; ``none``: no container mode). Everything here is pure mapping
except :func:`detect_runtime` (it runs the CLI once) and :func:`write_container_file`.

Mapping of a :class:`~pier.spec.TaskRole` (Kubernetes semantics where a dialect has them):

- ``command`` -> ``--entrypoint command[0]``, then ``command[1:] + args`` after the image
  (setting the entrypoint clears the image's CMD, as ``command`` does in Kubernetes);
  ``args`` alone -> after the image (the image's entrypoint stays, its CMD is replaced);
  neither -> the image's own entrypoint and CMD.
- ``image_pull_policy`` Always/IfNotPresent/Never -> ``--pull always|missing|never``;
  unset -> ``missing`` (not Kubernetes' "Always for :latest": a machine without a registry
  must still run what it has).
- ``env`` -> an env file in the run directory (mode 0600, so values are not on the command
  line); a value with a newline, which env files cannot carry, is passed as ``-e NAME`` from
  the CLI's own environment.
- ``working_dir`` (absolute) -> ``-w``; ``resources.cpu_limit`` -> ``--cpus``,
  ``memory_limit`` -> ``--memory``, ``shm`` -> ``--shm-size``; ``host_ipc`` -> ``--ipc host``,
  ``host_network`` -> ``--network host``; ``ports`` with a ``host_port`` -> ``-p``;
  ``volumes`` -> ``-v host:mount[:ro]``; real GPUs -> ``--device nvidia.com/gpu=N`` (podman,
  CDI) or ``--gpus device=N,...`` (docker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pier.spec import TaskRole

__all__ = [
    "CONTAINER_FILE",
    "ENV_FILE",
    "ContainerRun",
    "ContainerRuntime",
    "RuntimeUnavailable",
    "container_name",
    "detect_runtime",
    "plan_container",
    "read_container_file",
    "run_cli",
    "write_container_file",
    "write_env_file",
]

log = logging.getLogger(__name__)

RuntimeKind = Literal["podman", "docker"]
RUNTIMES: tuple[RuntimeKind, ...] = ("podman", "docker")
PROBE_TIMEOUT = 60.0  # `podman info` on a loaded machine may take seconds
CONTAINER_FILE = "container"
"""In a replica's run directory: ``<cli>\\t<container name>``, written before the spawn, so
that a restarted server finds (and can remove) the container by name."""
ENV_FILE = "container.env"

PullMode = Literal["always", "missing", "never"]
_PULL: dict[str, PullMode] = {"Always": "always", "IfNotPresent": "missing", "Never": "never"}
_NAME_OK = re.compile(r"[^a-zA-Z0-9_.-]")


class RuntimeUnavailable(RuntimeError):
    """The configured container runtime cannot be used (not found, or it does not work)."""


@dataclass(frozen=True, slots=True)
class ContainerRun:
    """Everything ``<runtime> run`` needs for one replica (see the module docstring)."""

    name: str
    image: str
    pull: PullMode = "missing"
    entrypoint: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    gpus: tuple[int, ...] = ()
    """Host device indexes of real GPUs to pass through (none for simulated ones)."""
    cpus: float | None = None
    memory: int | None = None
    shm: int | None = None
    host_ipc: bool = False
    host_network: bool = False
    ports: tuple[tuple[int, int, str], ...] = ()
    """(host port, container port, protocol)."""
    volumes: tuple[tuple[str, str, bool], ...] = ()
    """(host path, mount path, read only)."""
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def file_env(self) -> dict[str, str]:
        """What goes into the env file (one ``NAME=value`` line each)."""
        return {k: v for k, v in self.env.items() if "\n" not in v and "\r" not in v}

    @property
    def cli_env(self) -> dict[str, str]:
        """Values an env file cannot carry: passed as ``-e NAME`` from the CLI's environment."""
        return {k: v for k, v in self.env.items() if k not in self.file_env}


@dataclass(frozen=True, slots=True)
class ContainerRuntime:
    """A container CLI (``kind`` decides the flags that differ) at the path ``cli``."""

    kind: RuntimeKind
    cli: str

    def run_argv(self, run: ContainerRun, env_file: Path | None) -> list[str]:
        argv = [self.cli, "run", "--rm", "--name", run.name, "--pull", run.pull]
        for key, value in sorted(run.labels.items()):
            argv += ["--label", f"{key}={value}"]
        if env_file is not None:
            argv += ["--env-file", str(env_file)]
        for name in sorted(run.cli_env):
            argv += ["-e", name]
        if run.workdir:
            argv += ["-w", run.workdir]
        if run.gpus:
            if self.kind == "podman":
                for index in run.gpus:
                    argv += ["--device", f"nvidia.com/gpu={index}"]
            else:
                argv += ["--gpus", "device=" + ",".join(str(i) for i in run.gpus)]
        if run.cpus is not None:
            argv += ["--cpus", f"{run.cpus:g}"]
        if run.memory is not None:
            argv += ["--memory", f"{run.memory}b"]
        if run.shm is not None:
            argv += ["--shm-size", f"{run.shm}b"]
        if run.host_ipc:
            argv += ["--ipc", "host"]
        if run.host_network:
            argv += ["--network", "host"]
        for host_port, port, protocol in run.ports:
            argv += ["-p", f"{host_port}:{port}/{protocol}"]
        for host_path, mount_path, read_only in run.volumes:
            argv += ["-v", f"{host_path}:{mount_path}" + (":ro" if read_only else "")]
        if run.entrypoint is not None:
            argv += ["--entrypoint", run.entrypoint]
        return [*argv, run.image, *run.args]

    def remove_argv(self, name: str) -> list[str]:
        """Kill and remove a container at once (its CLI was, or is about to be, killed)."""
        if self.kind == "podman":
            return [self.cli, "rm", "--force", "--ignore", "--time", "0", name]
        return [self.cli, "rm", "--force", name]


def container_name(job_id: str, attempt: int, replica: str) -> str:
    """``pier-<job>-<attempt>-<replica>``, in the characters container names allow."""
    return _NAME_OK.sub("_", f"pier-{job_id}-{attempt}-{replica}")


def plan_container(
    task: TaskRole,
    *,
    name: str,
    env: Mapping[str, str],
    gpus: Sequence[int] = (),
    labels: Mapping[str, str] | None = None,
) -> ContainerRun:
    """The ``run`` of one replica of ``task``; ``ValueError`` names what cannot be mapped."""
    if not task.image:
        raise ValueError("no image to run")
    entrypoint: str | None = None
    args: list[str] = list(task.args)
    if task.command:
        entrypoint = task.command[0]
        args = [*task.command[1:], *task.args]
    workdir = task.working_dir
    if workdir is not None and not workdir.startswith("/"):
        raise ValueError(f"working_dir '{workdir}' must be an absolute path in the container")
    for key in env:
        if not key or "=" in key or "\0" in key or key != key.strip() or key.startswith("#"):
            raise ValueError(f"environment variable '{key}' cannot be passed to a container")
    volumes = []
    for volume in task.volumes:
        if not volume.host_path.startswith("/") or not volume.mount_path.startswith("/"):
            raise ValueError(
                f"volume {volume.host_path}:{volume.mount_path}: both paths must be absolute"
            )
        if ":" in volume.host_path or ":" in volume.mount_path:
            raise ValueError(f"volume {volume.host_path}:{volume.mount_path}: ':' in a path")
        volumes.append((volume.host_path, volume.mount_path, volume.read_only))
    resources = task.resources
    return ContainerRun(
        name=name,
        image=task.image,
        pull=_PULL[task.image_pull_policy] if task.image_pull_policy else "missing",
        entrypoint=entrypoint,
        args=tuple(args),
        env=dict(env),
        workdir=workdir,
        gpus=tuple(gpus),
        cpus=resources.cpu_limit,
        memory=resources.memory_limit,
        shm=resources.shm,
        host_ipc=task.host_ipc,
        host_network=task.host_network,
        ports=tuple(
            (p.host_port, p.container_port, p.protocol)
            for p in task.ports
            if p.host_port is not None and not task.host_network
        ),
        volumes=tuple(volumes),
        labels=dict(labels or {}),
    )


# -- the run directory's container files ------------------------------------------------


def write_env_file(path: Path, run: ContainerRun) -> None:
    """``NAME=value`` lines, readable by the owner only (values may be secrets)."""
    text = "".join(f"{k}={v}\n" for k, v in run.file_env.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_container_file(run_dir: Path, runtime: ContainerRuntime, name: str) -> None:
    (run_dir / CONTAINER_FILE).write_text(f"{runtime.kind}\t{runtime.cli}\t{name}\n")


def read_container_file(run_dir: Path) -> tuple[ContainerRuntime, str] | None:
    """The runtime and container name a replica was started with; None for a host process."""
    try:
        text = (run_dir / CONTAINER_FILE).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    parts = text.rstrip("\n").split("\t")
    if len(parts) != 3 or parts[0] not in RUNTIMES or not text.endswith("\n"):
        return None
    kind: RuntimeKind = "podman" if parts[0] == "podman" else "docker"
    return ContainerRuntime(kind, parts[1]), parts[2]


async def run_cli(argv: list[str], log_path: Path) -> None:
    """Run a runtime command (a removal) to its end, its output appended to ``log_path``."""
    try:
        with open(log_path, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
            await proc.wait()
    except OSError as exc:
        log.warning("%s failed: %s", argv, exc)


# -- detection --------------------------------------------------------------------------


def _probe(cli: str, kind: RuntimeKind) -> str | None:
    """None when the runtime works (``podman info``; docker: the daemon answers), else why."""
    argv = (
        [cli, "info"] if kind == "podman" else [cli, "version", "--format", "{{.Server.Version}}"]
    )
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return f"'{' '.join(argv[1:])}' did not answer in {PROBE_TIMEOUT:g} s"
    except OSError as exc:
        return str(exc)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return f"'{' '.join(argv[1:])}' failed: {lines[-1] if lines else done.returncode}"
    return None


def detect_runtime(
    choice: Literal["auto", "podman", "docker", "none"], *, path: str | None = None
) -> ContainerRuntime | None:
    """The runtime ``choice`` names, checked to work; ``auto``: the first of podman and
    docker that works, or None. ``path``: where to look for the CLIs (default: ``PATH``).

    Raises :class:`RuntimeUnavailable` when an explicitly named runtime does not work."""
    if choice == "none":
        return None
    kinds = RUNTIMES if choice == "auto" else (choice,)
    problems = []
    for kind in kinds:
        cli = shutil.which(kind, path=path)
        if cli is None:
            problems.append(f"{kind}: not found on PATH")
            continue
        problem = _probe(cli, kind)
        if problem is None:
            log.info("container runtime: %s (%s)", kind, cli)
            return ContainerRuntime(kind, cli)
        problems.append(f"{kind}: {problem}")
    if choice == "auto":
        log.info("no container runtime (%s): images without a command are refused", problems)
        return None
    raise RuntimeUnavailable(f"container_runtime '{choice}' cannot be used: {problems[0]}")
