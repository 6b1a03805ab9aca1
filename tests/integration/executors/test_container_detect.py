"""Choosing a container runtime: real CLIs on a PATH made for the test (scripts that work or
fail as a broken podman or a docker without its daemon would), and the machine's podman."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.containers import Podman

from pier.executors.containers import ContainerRuntime, RuntimeUnavailable, detect_runtime


def cli(directory: Path, name: str, script: str) -> str:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_none_is_none_without_looking(tmp_path: Path) -> None:
    assert detect_runtime("none", path=str(tmp_path)) is None


def test_auto_with_no_cli_is_none(tmp_path: Path) -> None:
    assert detect_runtime("auto", path=str(tmp_path)) is None


def test_auto_skips_a_runtime_that_does_not_work(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    cli(bin_dir, "podman", 'echo "Error: cannot set up namespace" >&2; exit 125')
    docker = cli(bin_dir, "docker", '[ "$1" = version ] && echo 27.0.1')
    assert detect_runtime("auto", path=str(bin_dir)) == ContainerRuntime("docker", docker)


def test_auto_prefers_podman(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    podman = cli(bin_dir, "podman", '[ "$1" = info ]')
    cli(bin_dir, "docker", "exit 0")
    assert detect_runtime("auto", path=str(bin_dir)) == ContainerRuntime("podman", podman)


def test_a_named_runtime_that_does_not_work_says_why(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    cli(bin_dir, "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    with pytest.raises(RuntimeUnavailable, match=r"docker: 'version --format .*' failed: Cannot"):
        detect_runtime("docker", path=str(bin_dir))
    with pytest.raises(RuntimeUnavailable, match="podman: not found on PATH"):
        detect_runtime("podman", path=str(bin_dir))
    assert detect_runtime("auto", path=str(bin_dir)) is None


def test_the_machines_podman_is_found(podman: Podman) -> None:
    found = detect_runtime("podman")
    assert found is not None and found.kind == "podman"
    assert Path(found.cli).samefile(podman.runtime.cli)
