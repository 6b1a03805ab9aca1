"""LocalExecutor's container mode against a real podman (skipped where none works, see
``tests/containers.py``): image entrypoints, commands inside the image, env, limits, exit
codes, stop, re-attach after a restart and clean-up of containers whose CLI was killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.containers import GREETING, IMAGE, Podman

from pier.executors import containers as ct
from pier.executors import local
from pier.executors import runrecord as rr
from pier.executors.base import (
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ReplicaExited,
    ReplicaLost,
    ReplicaPlacement,
    ReplicaStarted,
)
from pier.executors.local import LocalExecutor
from pier.spec import JobSpec, TaskRole

NODE = NodeInfo(name="test-node", cpus=2, memory_bytes=2**30)
TERM_TRAP = "trap 'echo got TERM; exit 7' TERM; echo up; while :; do sleep 0.1; done"


def launch(job_id: str, **task: Any) -> LaunchRequest:
    spec = JobSpec(tasks=[TaskRole(name="main", image=IMAGE, **task)])
    return LaunchRequest(job_id, 1, spec, (ReplicaPlacement("main", 0, NODE.name),))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "runs"
    yield path
    for run_dir in path.glob("*/*/*"):
        started = rr.read_started(run_dir)
        if started is not None and rr.is_alive(started.pgid, started.ticks):
            os.killpg(started.pgid, signal.SIGKILL)
    for pid, proc in list(local._children.items()):
        if str(path) in " ".join(map(str, proc.args)):  # type: ignore[arg-type]
            proc.wait(timeout=30)
            del local._children[pid]


@pytest.fixture
async def executor(runs_dir: Path, podman: Podman) -> AsyncIterator[LocalExecutor]:
    ex = LocalExecutor(runs_dir, NODE, container_runtime=podman.runtime)
    yield ex
    await ex.close()


async def next_event(events: AsyncIterator[ExecutorEvent], timeout: float = 60) -> ExecutorEvent:
    return await asyncio.wait_for(anext(events), timeout)


async def run_to_exit(ex: LocalExecutor, request: LaunchRequest) -> ReplicaExited:
    events = ex.events()
    await ex.start(request)
    assert isinstance(await next_event(events), ReplicaStarted)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited), exited
    return exited


async def output(ex: LocalExecutor, job_id: str) -> str:
    chunks = [chunk async for chunk in ex.logs(job_id, 1, "main-0", follow=False)]
    return b"".join(chunks).decode()


async def wait_until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def says_up(run_dir: Path) -> bool:
    log = run_dir / "1" / "main-0" / "output.log"
    return log.exists() and "up" in log.read_text()


async def gone(podman: Podman, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while name in await asyncio.to_thread(podman.containers):
        assert time.monotonic() < deadline, f"container {name} is still there"
        await asyncio.sleep(0.2)


async def test_an_image_alone_runs_its_own_command(
    executor: LocalExecutor, runs_dir: Path, podman: Podman
) -> None:
    exited = await run_to_exit(executor, launch("img"))
    assert exited.exit_code == 0, await output(executor, "img")
    assert (await output(executor, "img")).strip() == GREETING
    run_dir = runs_dir / "img" / "1" / "main-0"
    found = ct.read_container_file(run_dir)
    assert found == (podman.runtime, "pier-img-1-main-0")
    assert "pier-img-1-main-0" not in podman.containers()  # --rm


async def test_command_args_env_and_working_dir_apply_inside_the_image(
    executor: LocalExecutor, runs_dir: Path
) -> None:
    env = {"GREETING": "a  b", "SECRET": "s3cr3t", "MULTI": "line1\nline2"}
    script = (
        'echo "$GREETING|$SECRET|$PIER_REPLICA_INDEX|$CUDA_VISIBLE_DEVICES"; pwd; echo "$MULTI"'
    )
    exited = await run_to_exit(
        executor, launch("cmd", command=["sh", "-c"], args=[script], env=env, working_dir="/tmp")
    )
    assert exited.exit_code == 0, await output(executor, "cmd")
    assert (await output(executor, "cmd")).splitlines() == [
        "a  b|s3cr3t|0|",
        "/tmp",
        *env["MULTI"].split("\n"),
    ]
    env_file = runs_dir / "cmd" / "1" / "main-0" / ct.ENV_FILE
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert "SECRET=s3cr3t\n" in env_file.read_text()
    assert "line1" not in env_file.read_text()  # passed as -e MULTI from the CLI's env


async def test_args_alone_replace_the_image_cmd(executor: LocalExecutor) -> None:
    exited = await run_to_exit(executor, launch("args", args=["echo", "only", "args"]))
    assert exited.exit_code == 0
    assert (await output(executor, "args")).strip() == "only args"


async def test_exit_codes_come_from_the_container(executor: LocalExecutor) -> None:
    assert (
        await run_to_exit(executor, launch("three", command=["sh", "-c", "exit 3"]))
    ).exit_code == 3
    missing = await run_to_exit(executor, launch("nocmd", command=["no-such-program"]))
    assert missing.exit_code == 127
    assert "no-such-program" in await output(executor, "nocmd")


async def test_a_missing_image_with_pull_never_fails_with_the_runtimes_message(
    executor: LocalExecutor, podman: Podman
) -> None:
    request = LaunchRequest(
        "noimg",
        1,
        JobSpec(tasks=[TaskRole(image="pier.test/missing:1", image_pull_policy="Never")]),
        (ReplicaPlacement("main", 0, NODE.name),),
    )
    exited = await run_to_exit(executor, request)
    assert exited.exit_code == 125
    assert "pier.test/missing" in await output(executor, "noimg")


async def test_limits_and_shm_are_the_containers(executor: LocalExecutor) -> None:
    script = (
        "cat /sys/fs/cgroup/memory.max 2>/dev/null"
        " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes; df -k /dev/shm | tail -n 1"
    )
    resources = {"memory_limit": 64 * 2**20, "cpu_limit": 0.5, "shm": 32 * 2**20}
    exited = await run_to_exit(
        executor, launch("lim", command=["sh", "-c", script], resources=resources)
    )
    text = await output(executor, "lim")
    assert exited.exit_code == 0, text
    memory, shm = text.splitlines()
    assert int(memory) == 64 * 2**20
    assert shm.split()[1] == "32768"


async def test_stop_forwards_sigterm_to_the_container(
    executor: LocalExecutor, runs_dir: Path
) -> None:
    events = executor.events()
    await executor.start(launch("term", command=["sh", "-c", TERM_TRAP]))
    assert isinstance(await next_event(events), ReplicaStarted)
    await wait_until(lambda: says_up(runs_dir / "term"))
    await executor.stop("term", 1, 30)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited) and exited.exit_code == 7
    assert "got TERM" in await output(executor, "term")


async def test_a_container_that_ignores_sigterm_is_killed_and_removed(
    executor: LocalExecutor, podman: Podman
) -> None:
    # PID 1 without a handler ignores SIGTERM (as in any container without an init).
    events = executor.events()
    await executor.start(launch("stubborn", command=["sleep", "600"]))
    assert isinstance(await next_event(events), ReplicaStarted)
    name = "pier-stubborn-1-main-0"
    await wait_until(lambda: name in podman.containers())
    await executor.stop("stubborn", 1, 1.0)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited) and exited.exit_code == 137
    await gone(podman, name)


async def test_a_restarted_executor_reattaches_and_stops_the_container(
    runs_dir: Path, podman: Podman
) -> None:
    request = launch("live", command=["sh", "-c", TERM_TRAP])
    first = LocalExecutor(runs_dir, NODE, container_runtime=podman.runtime)
    await first.start(request)
    started = await next_event(first.events())
    assert isinstance(started, ReplicaStarted)
    await wait_until(lambda: says_up(runs_dir / "live"))
    await first.close()  # the server goes down; the container keeps running

    # A restarted server, even one configured without a runtime, finds it by its records.
    second = LocalExecutor(runs_dir, NODE)
    try:
        (event,) = await second.recover([request])
        assert isinstance(event, ReplicaStarted) and event.pid == started.pid
        await second.stop("live", 1, 30)
        exited = await next_event(second.events())
        assert isinstance(exited, ReplicaExited) and exited.exit_code == 7
    finally:
        await second.close()
    await gone(podman, "pier-live-1-main-0")


async def test_a_lost_supervisor_leaves_no_container_behind(
    executor: LocalExecutor, runs_dir: Path, podman: Podman
) -> None:
    events = executor.events()
    await executor.start(launch("lost", command=["sleep", "600"]))
    started = await next_event(events)
    assert isinstance(started, ReplicaStarted)
    name = "pier-lost-1-main-0"
    await wait_until(lambda: name in podman.containers())
    os.kill(started.pid, signal.SIGKILL)  # the supervisor, not the job
    lost = await next_event(events)
    assert isinstance(lost, ReplicaLost) and lost.reason == "SupervisorLost"
    await gone(podman, name)
