"""The in-job runtime_env step: unpacking a working_dir, and the command that runs it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pier.executors import runtime_env_setup as setup
from pier.services.context import ServiceContext
from pier.services.runtime_envs import SETUP_SCRIPT, materialise, pip_env_dir
from pier.spec import JobSpec, RuntimeEnv, TaskRole

SETUP = [sys.executable, "-I", str(SETUP_SCRIPT)]


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_unpack_keeps_the_layout_of_an_uploaded_package(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "p.zip", {"top/a.py": "", "top/b.py": ""})
    workdir = setup.unpack(archive, tmp_path / "out", strip_top_level=False)
    assert workdir == tmp_path / "out"
    assert (workdir / "top" / "a.py").is_file()


def test_unpack_strips_a_single_top_level_directory_when_asked(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "p.zip", {"top/a.py": "", "top/sub/b.py": ""})
    assert setup.unpack(archive, tmp_path / "o1", strip_top_level=True) == tmp_path / "o1/top"
    flat = _zip(tmp_path / "f.zip", {"a.py": "", "b.py": ""})
    assert setup.unpack(flat, tmp_path / "o2", strip_top_level=True) == tmp_path / "o2"


def test_unpack_never_writes_outside_its_target(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "evil.zip", {"../../escaped.txt": "x", "/abs.txt": "y"})
    setup.unpack(archive, tmp_path / "out", strip_top_level=False)
    assert not (tmp_path.parent / "escaped.txt").exists()
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "abs.txt",
        "escaped.txt",
    ]


@pytest.mark.parametrize("content", [None, b"not a zip"])
def test_unpack_failures_say_why(tmp_path: Path, content: bytes | None) -> None:
    archive = tmp_path / "x.zip"
    if content is not None:
        archive.write_bytes(content)
    with pytest.raises(setup.SetupError, match=r"does not exist|not a zip"):
        setup.unpack(archive, tmp_path / "out", strip_top_level=False)


def test_the_script_unpacks_then_execs_the_command_in_the_working_dir(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "p.zip", {"data.txt": "payload\n"})
    run = tmp_path / "run"
    run.mkdir()
    out = subprocess.run(
        [*SETUP, "--archive", str(archive), "--", "/bin/sh", "-c", "cat data.txt; pwd"],
        cwd=run,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("pier runtime_env: working_dir p.zip unpacked into")
    assert lines[1:] == ["payload", str(run / "working_dir")]


def test_the_script_fails_before_the_command_when_setup_fails(tmp_path: Path) -> None:
    out = subprocess.run(
        [*SETUP, "--archive", str(tmp_path / "nope.zip"), "--", "/bin/sh", "-c", "echo ran"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "setup failed" in out.stdout and "ran" not in out.stdout


def _spec(runtime_env: RuntimeEnv | None) -> JobSpec:
    task = TaskRole(command=["/bin/sh", "-c", "python x.py"], runtime_env=runtime_env)
    return JobSpec(tasks=[task])


def test_materialise_wraps_only_tasks_with_something_to_set_up(tmp_path: Path) -> None:
    ctx = ServiceContext(db=None, files_dir=tmp_path)  # type: ignore[arg-type]
    plain = _spec(None)
    assert materialise(ctx, "p1", plain) is plain
    spec = materialise(ctx, "p1", _spec(RuntimeEnv(working_dir="file:///a/b.zip", pip=["x"])))
    command = spec.tasks[0].command
    assert command[:3] == [sys.executable, "-I", str(SETUP_SCRIPT)]
    assert command[3:6] == ["--archive", "/a/b.zip", "--strip-top-level"]
    assert command[6:10] == ["--pip-env", str(pip_env_dir(tmp_path, "p1", ["x"], {})), "--pip", "x"]
    assert command[10:] == ["--", "/bin/sh", "-c", "python x.py"]
    assert spec.tasks[0].runtime_env == RuntimeEnv(working_dir="file:///a/b.zip", pip=["x"])


def test_pip_envs_are_keyed_by_project_package_set_and_pip_settings() -> None:
    root = Path("/f")
    base = pip_env_dir(root, "p1", ["a", "b"], {"HOME": "/x"})
    assert base == pip_env_dir(root, "p1", [" b", "a "], {})
    assert base != pip_env_dir(root, "p1", ["a"], {})
    assert base != pip_env_dir(root, "p2", ["a", "b"], {})
    assert base != pip_env_dir(root, "p1", ["a", "b"], {"PIP_INDEX_URL": "http://elsewhere"})
    assert base.parent == root / "pip-envs" / "p1"


def test_without_a_files_dir_runtime_envs_are_refused() -> None:
    ctx = ServiceContext(db=None)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="no files directory"):
        materialise(ctx, "p1", _spec(RuntimeEnv(pip=["x"])))
