"""A task role as ``podman run`` / ``docker run`` argv: Kubernetes command/args semantics,
pull policies, GPUs, limits, network, ports, volumes, and the run directory's files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pier.executors.containers import (
    ContainerRuntime,
    container_name,
    plan_container,
    read_container_file,
    write_container_file,
    write_env_file,
)
from pier.spec import TaskRole

PODMAN = ContainerRuntime("podman", "/usr/bin/podman")
DOCKER = ContainerRuntime("docker", "/usr/bin/docker")
ENV_FILE = Path("/runs/j/1/main-0/container.env")


def argv(runtime: ContainerRuntime = PODMAN, gpus: tuple[int, ...] = (), **task: Any) -> list[str]:
    role = TaskRole(image="img:1", **task)
    run = plan_container(role, name="pier-j-1-main-0", env={"A": "1"}, gpus=gpus)
    return runtime.run_argv(run, ENV_FILE)


def after_image(args: list[str]) -> list[str]:
    return args[args.index("img:1") + 1 :]


def option(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_an_image_alone_keeps_its_entrypoint_and_cmd() -> None:
    args = argv()
    assert args[:8] == [
        "/usr/bin/podman",
        "run",
        "--rm",
        "--name",
        "pier-j-1-main-0",
        "--pull",
        "missing",
        "--env-file",
    ]
    assert "--entrypoint" not in args
    assert after_image(args) == []
    assert args[-1] == "img:1"


def test_command_replaces_the_entrypoint_and_clears_the_cmd() -> None:
    args = argv(command=["python", "-u", "train.py"], args=["--lr", "0.1"])
    assert option(args, "--entrypoint") == ["python"]
    assert args.index("--entrypoint") < args.index("img:1")
    assert after_image(args) == ["-u", "train.py", "--lr", "0.1"]


def test_args_alone_replace_the_cmd() -> None:
    args = argv(args=["echo", "hi"])
    assert "--entrypoint" not in args
    assert after_image(args) == ["echo", "hi"]


@pytest.mark.parametrize(
    ("policy", "pull"),
    [(None, "missing"), ("Always", "always"), ("IfNotPresent", "missing"), ("Never", "never")],
)
def test_pull_policy(policy: str | None, pull: str) -> None:
    assert option(argv(image_pull_policy=policy), "--pull") == [pull]


def test_gpus_podman_uses_cdi_and_docker_gpus() -> None:
    assert option(argv(PODMAN, gpus=(1, 3)), "--device") == ["nvidia.com/gpu=1", "nvidia.com/gpu=3"]
    assert option(argv(DOCKER, gpus=(1, 3)), "--gpus") == ["device=1,3"]
    assert "--device" not in argv(PODMAN) and "--gpus" not in argv(DOCKER)


def test_limits_shm_ipc_network_and_workdir() -> None:
    args = argv(
        resources={"cpu_limit": 1.5, "memory_limit": "2Gi", "shm": "1Gi"},
        host_ipc=True,
        working_dir="/workspace",
    )
    assert option(args, "--cpus") == ["1.5"]
    assert option(args, "--memory") == [f"{2 * 2**30}b"]
    assert option(args, "--shm-size") == [f"{2**30}b"]
    assert option(args, "--ipc") == ["host"]
    assert option(args, "-w") == ["/workspace"]
    assert "--network" not in args
    assert option(argv(host_network=True), "--network") == ["host"]


def test_ports_with_a_host_port_are_published() -> None:
    ports = [
        {"container_port": 8888, "host_port": 18888},
        {"container_port": 53, "host_port": 5353, "protocol": "udp"},
        {"container_port": 22},  # no host port: recorded only
    ]
    assert option(argv(ports=ports), "-p") == ["18888:8888/tcp", "5353:53/udp"]
    assert option(argv(ports=ports, host_network=True), "-p") == []  # the host's ports already


def test_volumes_are_bind_mounts() -> None:
    volumes = [
        {"host_path": "/data", "mount_path": "/mnt/data", "read_only": True},
        {"host_path": "/scratch", "mount_path": "/scratch"},
    ]
    assert option(argv(volumes=volumes), "-v") == ["/data:/mnt/data:ro", "/scratch:/scratch"]


@pytest.mark.parametrize(
    ("task", "problem"),
    [
        ({"working_dir": "src"}, "working_dir 'src' must be an absolute path"),
        ({"volumes": [{"host_path": "data", "mount_path": "/d"}]}, "both paths must be absolute"),
        ({"volumes": [{"host_path": "/a:b", "mount_path": "/d"}]}, "':' in a path"),
    ],
)
def test_what_cannot_be_mapped_is_named(task: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        plan_container(TaskRole(image="img:1", **task), name="n", env={})


def test_an_image_is_needed() -> None:
    with pytest.raises(ValueError, match="no image"):
        plan_container(TaskRole(command=["true"]), name="n", env={})


def test_env_values_stay_off_the_command_line() -> None:
    role = TaskRole(image="img:1")
    env = {"TOKEN": "secret value", "PEM": "-----BEGIN\nxyz\n-----END"}
    run = plan_container(role, name="n", env=env)
    assert run.file_env == {"TOKEN": "secret value"}
    assert run.cli_env == {"PEM": env["PEM"]}
    args = PODMAN.run_argv(run, ENV_FILE)
    assert option(args, "--env-file") == [str(ENV_FILE)]
    assert option(args, "-e") == ["PEM"]  # its value comes from the CLI's environment
    assert not any("secret" in a or "BEGIN" in a for a in args)


def test_env_file_is_private(tmp_path: Path) -> None:
    run = plan_container(TaskRole(image="i"), name="n", env={"A": " spaced ", "B": "x=y"})
    write_env_file(tmp_path / "env", run)
    assert (tmp_path / "env").read_text() == "A= spaced \nB=x=y\n"
    assert (tmp_path / "env").stat().st_mode & 0o777 == 0o600


def test_labels_name_the_job() -> None:
    run = plan_container(TaskRole(image="i"), name="n", env={}, labels={"pier.job": "j1"})
    assert option(PODMAN.run_argv(run, None), "--label") == ["pier.job=j1"]


def test_names_are_container_names() -> None:
    assert container_name("j1", 2, "worker-0") == "pier-j1-2-worker-0"
    assert container_name("j/1", 0, "a b") == "pier-j_1-0-a_b"


def test_removal_kills_at_once() -> None:
    assert PODMAN.remove_argv("n") == [
        "/usr/bin/podman",
        "rm",
        "--force",
        "--ignore",
        "--time",
        "0",
        "n",
    ]
    assert DOCKER.remove_argv("n") == ["/usr/bin/docker", "rm", "--force", "n"]


def test_container_file_round_trip(tmp_path: Path) -> None:
    assert read_container_file(tmp_path) is None
    write_container_file(tmp_path, DOCKER, "pier-j-1-main-0")
    assert read_container_file(tmp_path) == (DOCKER, "pier-j-1-main-0")
    (tmp_path / "container").write_text("podman\t/usr/bin/podman")  # half written
    assert read_container_file(tmp_path) is None
