"""Prepare a Ray-style runtime_env inside a job, then exec its entrypoint.

Run by the job itself (its command is ``python -I runtime_env_setup.py [options] -- argv``,
written at submit by :mod:`pier.services.runtime_envs`), so what it prints is the first part
of the job's log and a failure fails the job. Standard library only, run as a file by path:
importing the ``pier`` package would cost more than the work.

- ``--archive ZIP`` extracts the job's ``working_dir`` into ``./working_dir`` (the job's own
  copy: jobs never share one) and runs the entrypoint there. ``--strip-top-level``: when the
  archive holds one directory and nothing else, that directory is the working dir (Ray does
  this for archives named by URI, not for uploaded packages).
- ``--pip-env DIR --pip REQ ...`` installs the requirements into a virtual environment at
  ``DIR`` unless it is already complete (the directory is named after the package set, so
  jobs asking for the same packages share it), under a lock so that concurrent jobs build it
  once; the entrypoint then finds that environment first on ``PATH``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

READY = ".pier-ready"
WORKING_DIR = "working_dir"
MAX_UNPACKED_BYTES = 16 * 1024**3  # an archive that unpacks beyond this is a zip bomb


class SetupError(Exception):
    pass


def say(message: str) -> None:
    print(f"pier runtime_env: {message}", flush=True)


def _top_level_dir(names: Sequence[str]) -> str | None:
    tops = {name.split("/", 1)[0] for name in names if name and not name.startswith("__MACOSX")}
    if len(tops) == 1:
        top = tops.pop()
        if any(name.startswith(top + "/") for name in names):
            return top
    return None


def unpack(archive: Path, target: Path, strip_top_level: bool) -> Path:
    """Extract ``archive`` into ``target``; the working directory to use."""
    if not archive.is_file():
        raise SetupError(f"working_dir archive {archive} does not exist on this node")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise SetupError(f"{archive} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
            target.mkdir(parents=True, exist_ok=True)
            zf.extractall(target)  # zipfile drops absolute paths and '..' components
            names = zf.namelist()
    except zipfile.BadZipFile as exc:
        raise SetupError(f"working_dir archive {archive} is not a zip file: {exc}") from None
    top = _top_level_dir(names) if strip_top_level else None
    return target / top if top else target


def ensure_pip_env(env_dir: Path, requirements: Sequence[str]) -> Path:
    """The virtual environment at ``env_dir`` with ``requirements`` installed; built once."""
    ready = env_dir / READY
    if ready.is_file():
        say(f"pip packages {list(requirements)} are ready in {env_dir} (cached)")
        return env_dir
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(env_dir.parent / f"{env_dir.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file():
            say(f"pip packages {list(requirements)} were installed by another job in {env_dir}")
            return env_dir
        if env_dir.exists():
            shutil.rmtree(env_dir)  # a build that died half way
        say(f"creating a virtual environment in {env_dir}")
        venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(env_dir)
        say(f"installing pip packages {list(requirements)}")
        command = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env_dir / "bin" / "python"),
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *requirements,
        ]
        code = subprocess.call(command, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if code != 0:
            shutil.rmtree(env_dir, ignore_errors=True)
            raise SetupError(f"pip install {' '.join(requirements)} failed with exit code {code}")
        ready.write_text(json.dumps(list(requirements)) + "\n")
    say("pip packages installed")
    return env_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runtime_env_setup")
    parser.add_argument("--archive", type=Path)
    parser.add_argument("--strip-top-level", action="store_true")
    parser.add_argument("--pip-env", type=Path)
    parser.add_argument("--pip", nargs="*", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    try:
        if args.archive is not None:
            workdir = unpack(args.archive, Path.cwd() / WORKING_DIR, args.strip_top_level)
            say(f"working_dir {args.archive.name} unpacked into {workdir}")
            os.chdir(workdir)
            os.environ["PWD"] = str(workdir)
        if args.pip:
            if args.pip_env is None:
                parser.error("--pip needs --pip-env")
            env_dir = ensure_pip_env(args.pip_env, args.pip)
            os.environ["VIRTUAL_ENV"] = str(env_dir)
            os.environ["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
            os.environ.pop("PYTHONHOME", None)
    except (SetupError, OSError) as exc:
        say(f"setup failed: {exc}")
        return 1
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
