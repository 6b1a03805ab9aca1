"""LocalExecutor against real processes: start, exit codes, stop, env, logs, recover."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pier.executors import local
from pier.executors import runrecord as rr
from pier.executors.base import (
    Device,
    Executor,
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ReplicaExited,
    ReplicaKey,
    ReplicaLost,
    ReplicaPlacement,
    ReplicaStarted,
    StartError,
)
from pier.executors.local import LocalExecutor
from pier.spec import JobSpec, TaskRole

NODE = NodeInfo(
    name="test-node",
    cpus=2,
    memory_bytes=2**30,
    gpus=(Device(0, "sim"), Device(1, "sim"), Device(2, "sim")),
)
WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.01; done; echo going; exit 5"


def make_launch(
    job_id: str,
    command: list[str],
    *,
    replicas: int = 1,
    attempt: int = 1,
    placements: tuple[ReplicaPlacement, ...] | None = None,
    launch_env: dict[str, str] | None = None,
    **task: Any,
) -> LaunchRequest:
    spec = JobSpec(tasks=[TaskRole(name="main", replicas=replicas, command=command, **task)])
    if placements is None:
        placements = tuple(ReplicaPlacement("main", i, NODE.name) for i in range(replicas))
    return LaunchRequest(job_id, attempt, spec, placements, launch_env or {})


def sh(script: str) -> list[str]:
    return ["bash", "-c", script]


def kill_everything(runs_dir: Path) -> None:
    """End whatever a test left running: only processes recorded under its own runs_dir."""
    for run_dir in runs_dir.glob("*/*/*"):
        started = rr.read_started(run_dir)
        if started is not None and rr.is_alive(started.pgid, started.ticks):
            os.killpg(started.pgid, signal.SIGKILL)
        sup = rr.read_supervisor(run_dir)
        if sup is not None and rr.is_alive(sup.pid, sup.ticks):
            os.kill(sup.pid, signal.SIGKILL)
    for pid, proc in list(local._children.items()):
        if str(runs_dir) in " ".join(map(str, proc.args)):  # type: ignore[arg-type]
            proc.wait(timeout=5)
            del local._children[pid]


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "runs"
    yield path
    kill_everything(path.resolve())


@pytest.fixture
async def executor(runs_dir: Path) -> AsyncIterator[LocalExecutor]:
    ex = LocalExecutor(runs_dir, NODE)
    yield ex
    await ex.close()


async def next_event(events: AsyncIterator[ExecutorEvent], timeout: float = 5) -> ExecutorEvent:
    return await asyncio.wait_for(anext(events), timeout)


async def run_to_exit(
    ex: LocalExecutor, launch: LaunchRequest, events: AsyncIterator[ExecutorEvent] | None = None
) -> ReplicaExited:
    events = events or ex.events()
    await ex.start(launch)
    assert isinstance(await next_event(events), ReplicaStarted)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited), exited
    return exited


async def read_log(ex: LocalExecutor, job_id: str, replica: str = "main-0", **kw: Any) -> bytes:
    return b"".join([chunk async for chunk in ex.logs(job_id, 1, replica, follow=False, **kw)])


async def wait_until(predicate: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def run_dir_of(runs_dir: Path, job_id: str, replica: str = "main-0") -> Path:
    return runs_dir / job_id / "1" / replica


async def test_is_an_executor(executor: LocalExecutor) -> None:
    assert isinstance(executor, Executor)
    assert executor.capacity() == [NODE]


async def test_job_prints_and_exits_zero(executor: LocalExecutor, runs_dir: Path) -> None:
    before = time.time()
    exited = await run_to_exit(executor, make_launch("j1", sh("echo hello; echo oops >&2")))
    assert exited.exit_code == 0
    assert exited.key == ReplicaKey("j1", 1, "main", 0)
    assert exited.started_at is not None
    assert before <= exited.started_at <= exited.finished_at <= time.time()
    assert await read_log(executor, "j1") == b"hello\noops\n"
    assert await read_log(executor, "j1", offset=6) == b"oops\n"
    run_dir = run_dir_of(runs_dir, "j1")
    assert {p.name for p in run_dir.iterdir()} == {"output.log", "supervisor.log"}
    records = [line.split()[1] for line in (run_dir / "supervisor.log").read_text().splitlines()]
    assert records == ["supervisor", "started", "exit"]


async def test_exit_code_is_reported(executor: LocalExecutor) -> None:
    assert (await run_to_exit(executor, make_launch("j3", sh("exit 3")))).exit_code == 3


async def test_stop_sends_sigterm_to_the_job(executor: LocalExecutor, runs_dir: Path) -> None:
    events = executor.events()
    await executor.start(make_launch("stop", ["sleep", "30"]))
    assert isinstance(await next_event(events), ReplicaStarted)
    await wait_until(lambda: rr.read_started(run_dir_of(runs_dir, "stop")) is not None)
    await executor.stop("stop", 1, grace_seconds=10)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited)
    assert exited.exit_code == 128 + signal.SIGTERM
    # the supervisor's job notices ("Terminated") stay out of the job's own output
    assert await read_log(executor, "stop") == b""
    await executor.stop("stop", 1, grace_seconds=10)  # already exited: a no-op


async def test_stop_right_after_start(executor: LocalExecutor) -> None:
    events = executor.events()
    await executor.start(make_launch("early", ["sleep", "30"]))
    await executor.stop("early", 1, grace_seconds=5)  # before the job was even launched
    assert isinstance(await next_event(events), ReplicaStarted)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited) and exited.exit_code == 143


async def test_job_ignoring_sigterm_is_killed_after_grace(
    executor: LocalExecutor, runs_dir: Path
) -> None:
    events = executor.events()
    script = "trap '' TERM; echo ready; while :; do sleep 0.02; done"
    await executor.start(make_launch("stubborn", sh(script)))
    assert isinstance(await next_event(events), ReplicaStarted)
    log = run_dir_of(runs_dir, "stubborn") / "output.log"
    await wait_until(lambda: log.exists() and log.read_bytes() == b"ready\n")
    begin = time.monotonic()
    await executor.stop("stubborn", 1, grace_seconds=0.3)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited)
    assert exited.exit_code == 128 + signal.SIGKILL
    assert time.monotonic() - begin >= 0.29


async def test_signal_to_the_supervisor_is_forwarded_and_exit_recorded(
    executor: LocalExecutor, runs_dir: Path
) -> None:
    events = executor.events()
    await executor.start(make_launch("fwd", ["sleep", "30"]))
    started = await next_event(events)
    assert isinstance(started, ReplicaStarted)
    await wait_until(lambda: rr.read_started(run_dir_of(runs_dir, "fwd")) is not None)
    os.kill(started.pid, signal.SIGTERM)
    exited = await next_event(events)
    assert isinstance(exited, ReplicaExited) and exited.exit_code == 143


async def test_stragglers_in_the_job_group_end_with_it(
    executor: LocalExecutor, runs_dir: Path
) -> None:
    exited = await run_to_exit(executor, make_launch("bg", sh("sleep 30 & echo $!")))
    assert exited.exit_code == 0
    straggler = int(await read_log(executor, "bg"))
    await wait_until(lambda: not Path(f"/proc/{straggler}").exists() or _zombie(straggler))


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rpartition(b") ")[2][:1] == b"Z"
    except OSError:
        return True


async def test_environment(monkeypatch: pytest.MonkeyPatch, runs_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("PIER_ADMIN_PASSWORD", "secret")
    monkeypatch.setenv("PIER_DATABASE_URL", "postgresql://secret")
    monkeypatch.setenv("SERVER_THING", "inherited")
    ex = LocalExecutor(runs_dir, NODE)
    try:
        placements = (ReplicaPlacement("main", 0, NODE.name, devices=(2,), gpu_fraction=0.5),)
        launch = make_launch(
            "env",
            ["env"],
            placements=placements,
            launch_env={"FROM_LAUNCH": "l", "BOTH": "launch"},
            env={"BOTH": "task", "CUDA_VISIBLE_DEVICES": "0,1,2"},  # cannot widen its GPUs
            working_dir=str(tmp_path),
        )
        assert (await run_to_exit(ex, launch)).exit_code == 0
        lines = (await read_log(ex, "env")).decode().splitlines()
        env = dict(line.split("=", 1) for line in lines if "=" in line)
        assert env["CUDA_VISIBLE_DEVICES"] == "2"
        assert env["PIER_GPU_FRACTION"] == "0.5"
        assert env["PIER_TASK_ROLE"] == "main"
        assert env["PIER_REPLICA_INDEX"] == "0"
        assert env["PIER_NUM_REPLICAS"] == "1"
        assert env["PIER_JOB_ID"] == "env"
        assert env["PIER_ATTEMPT"] == "1"
        assert env["FROM_LAUNCH"] == "l"
        assert env["BOTH"] == "task"
        assert env["SERVER_THING"] == "inherited"
        assert env["PWD"] == str(tmp_path)
        assert not any(k.startswith(("PIER_ADMIN", "PIER_DATABASE", "PIER_SUP")) for k in env)

        no_gpu = make_launch(
            "nogpu", sh('echo "[$CUDA_VISIBLE_DEVICES]" "${PIER_GPU_FRACTION-unset}"')
        )
        assert (await run_to_exit(ex, no_gpu)).exit_code == 0
        assert await read_log(ex, "nogpu") == b"[] unset\n"
    finally:
        await ex.close()


async def test_gang_replicas_get_their_own_dirs_and_env(
    executor: LocalExecutor, runs_dir: Path
) -> None:
    placements = tuple(ReplicaPlacement("main", i, NODE.name, devices=(i,)) for i in range(3))
    launch = make_launch(
        "gang",
        sh('echo "$PIER_REPLICA_INDEX/$PIER_NUM_REPLICAS/$CUDA_VISIBLE_DEVICES $PWD"'),
        replicas=3,
        placements=placements,
    )
    events = executor.events()
    await executor.start(launch)
    seen = [await next_event(events) for _ in range(6)]
    started = [e for e in seen if isinstance(e, ReplicaStarted)]
    exited = [e for e in seen if isinstance(e, ReplicaExited)]
    assert sorted(e.key.index for e in started) == [0, 1, 2]
    assert len({e.pid for e in started}) == 3
    assert sorted((e.key.index, e.exit_code) for e in exited) == [(0, 0), (1, 0), (2, 0)]
    for i in range(3):
        run_dir = run_dir_of(runs_dir, "gang", f"main-{i}").resolve()
        assert await read_log(executor, "gang", f"main-{i}") == f"{i}/3/{i} {run_dir}\n".encode()


async def test_start_errors(executor: LocalExecutor, runs_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StartError, match="not found"):
        await executor.start(make_launch("e1", ["no-such-binary-pier"]))
    with pytest.raises(StartError, match="not found"):
        await executor.start(make_launch("e1b", ["./missing.sh"], working_dir=str(tmp_path)))
    with pytest.raises(StartError, match="does not exist"):
        await executor.start(make_launch("e2", ["true"], working_dir=str(tmp_path / "nope")))
    with pytest.raises(StartError, match="no command"):
        await executor.start(make_launch("e3", []))
    elsewhere = (ReplicaPlacement("main", 0, "other-node"),)
    with pytest.raises(StartError, match="other-node"):
        await executor.start(make_launch("e4", ["true"], placements=elsewhere))
    with pytest.raises(StartError, match="directory"):
        await executor.start(make_launch("../e5", ["true"]))
    # one bad replica of a gang: nothing at all was started
    gang = make_launch("e6", ["true"], replicas=2)
    bad = LaunchRequest(
        "e6", 1, gang.spec, (*gang.placements, ReplicaPlacement("nope", 0, NODE.name))
    )
    with pytest.raises(StartError, match="no task role"):
        await executor.start(bad)
    assert not (runs_dir / "e6").exists()
    # an attempt cannot be started twice, running or finished
    events = executor.events()
    await executor.start(make_launch("e7", ["true"]))
    with pytest.raises(StartError, match="already running"):
        await executor.start(make_launch("e7", ["true"]))
    assert isinstance(await next_event(events), ReplicaStarted)
    assert isinstance(await next_event(events), ReplicaExited)
    with pytest.raises(StartError, match="started before"):
        await executor.start(make_launch("e7", ["true"]))


async def test_large_output_is_read_back_completely(executor: LocalExecutor) -> None:
    size = 50 * 1024 * 1024
    events = executor.events()
    await executor.start(make_launch("big", ["head", "-c", str(size), "/dev/zero"]))
    followed = 0
    async for chunk in executor.logs("big", 1, "main-0", follow=True):
        followed += len(chunk)
    assert followed == size
    assert isinstance(await next_event(events), ReplicaStarted)
    assert isinstance(await next_event(events), ReplicaExited)
    total = 0
    async for chunk in executor.logs("big", 1, "main-0", follow=False):
        assert len(chunk) <= rr.LOG_CHUNK
        total += len(chunk)
    assert total == size


async def test_follow_streams_while_running(executor: LocalExecutor) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; sleep 0.1; done"
    await executor.start(make_launch("follow", sh(script)))
    received: list[tuple[float, bytes]] = []
    async for chunk in executor.logs("follow", 1, "main-0", follow=True):
        received.append((time.monotonic(), chunk))
    assert b"".join(c for _, c in received) == b"".join(b"line %d\n" % i for i in range(1, 6))
    assert received[-1][0] - received[0][0] > 0.2  # it arrived bit by bit, not at the end


async def test_logs_of_unknown_replica_yield_nothing(executor: LocalExecutor) -> None:
    assert [c async for c in executor.logs("nope", 1, "main-0", follow=True)] == []
    assert [c async for c in executor.logs("nope", 1, "../x", follow=True)] == []


async def test_recover_reattaches_to_a_running_replica(runs_dir: Path) -> None:
    launch = make_launch("live", sh(WAIT_FOR_GO))
    first = LocalExecutor(runs_dir, NODE)
    await first.start(launch)
    started = await next_event(first.events())
    assert isinstance(started, ReplicaStarted)
    await wait_until(lambda: rr.read_started(run_dir_of(runs_dir, "live")) is not None)
    await first.close()  # the "server" goes down; the replica keeps running

    second = LocalExecutor(runs_dir, NODE)
    try:
        recovered = await second.recover([launch])
        assert len(recovered) == 1 and isinstance(recovered[0], ReplicaStarted)
        assert recovered[0].pid == started.pid
        (run_dir_of(runs_dir, "live") / "go").touch()
        exited = await next_event(second.events())
        assert isinstance(exited, ReplicaExited)
        assert exited.exit_code == 5 and exited.started_at is not None
        assert await read_log(second, "live") == b"going\n"
    finally:
        await second.close()


async def test_recover_finds_a_supervisor_that_had_no_time_to_write_its_record(
    runs_dir: Path,
) -> None:
    launch = make_launch("norecord", sh(WAIT_FOR_GO))
    first = LocalExecutor(runs_dir, NODE)
    await first.start(launch)
    started = await next_event(first.events())
    assert isinstance(started, ReplicaStarted)
    run_dir = run_dir_of(runs_dir, "norecord")
    await wait_until(lambda: rr.read_started(run_dir) is not None)
    await first.close()
    # as if the server died before the supervisor could write its first record
    log = run_dir / "supervisor.log"
    log.write_bytes(
        b"".join(x for x in log.read_bytes().splitlines(True) if b" supervisor " not in x)
    )
    assert rr.read_supervisor(run_dir) is None

    second = LocalExecutor(runs_dir, NODE)
    try:
        (event,) = await second.recover([launch])
        assert isinstance(event, ReplicaStarted) and event.pid == started.pid
        (run_dir / "go").touch()
        exited = await next_event(second.events())
        assert isinstance(exited, ReplicaExited) and exited.exit_code == 5
    finally:
        await second.close()


async def test_recover_reports_exit_that_happened_while_down(runs_dir: Path) -> None:
    launch = make_launch("down", sh(WAIT_FOR_GO))
    first = LocalExecutor(runs_dir, NODE)
    await first.start(launch)
    await first.close()
    (run_dir_of(runs_dir, "down") / "go").touch()
    await wait_until(lambda: rr.read_exit(run_dir_of(runs_dir, "down")) is not None)
    await asyncio.sleep(0.05)  # let the supervisor finish exiting

    second = LocalExecutor(runs_dir, NODE)
    try:
        (event,) = await second.recover([launch])
        assert isinstance(event, ReplicaExited)
        assert event.exit_code == 5 and event.started_at is not None
        assert event.started_at <= event.finished_at
    finally:
        await second.close()


async def test_recover_not_started(executor: LocalExecutor, runs_dir: Path) -> None:
    never = make_launch("never", ["true"], replicas=2)
    run_dir_of(runs_dir, "never", "main-1").mkdir(parents=True)  # dir but no records
    events = await executor.recover([never])
    assert [e.reason for e in events if isinstance(e, ReplicaLost)] == ["NotStarted"] * 2


async def test_supervisor_killed_while_watched(executor: LocalExecutor, runs_dir: Path) -> None:
    events = executor.events()
    await executor.start(make_launch("sigkill", ["sleep", "30"]))
    started = await next_event(events)
    assert isinstance(started, ReplicaStarted)
    run_dir = run_dir_of(runs_dir, "sigkill")
    await wait_until(lambda: rr.read_started(run_dir) is not None)
    job = rr.read_started(run_dir)
    assert job is not None
    os.kill(started.pid, signal.SIGKILL)
    lost = await next_event(events)
    assert isinstance(lost, ReplicaLost) and lost.reason == "SupervisorLost"
    assert "orphaned job" in lost.message and "killed" in lost.message
    await wait_until(lambda: not rr.is_alive(job.pid, job.ticks))


async def test_recover_supervisor_lost(runs_dir: Path) -> None:
    launch = make_launch("lost", ["sleep", "30"])
    first = LocalExecutor(runs_dir, NODE)
    await first.start(launch)
    started = await next_event(first.events())
    assert isinstance(started, ReplicaStarted)
    run_dir = run_dir_of(runs_dir, "lost")
    await wait_until(lambda: rr.read_started(run_dir) is not None)
    await first.close()
    os.kill(started.pid, signal.SIGKILL)
    await wait_until(lambda: _zombie(started.pid))
    job = rr.read_started(run_dir)
    assert job is not None and rr.is_alive(job.pid, job.ticks)

    second = LocalExecutor(runs_dir, NODE)
    try:
        (event,) = await second.recover([launch])
        assert isinstance(event, ReplicaLost) and event.reason == "SupervisorLost"
        assert "orphaned job" in event.message
        await wait_until(lambda: not rr.is_alive(job.pid, job.ticks))
    finally:
        await second.close()


async def test_stop_of_an_attempt_started_by_an_earlier_instance(runs_dir: Path) -> None:
    launch = make_launch("restop", ["sleep", "30"])
    first = LocalExecutor(runs_dir, NODE)
    await first.start(launch)
    await first.close()
    await wait_until(lambda: rr.read_started(run_dir_of(runs_dir, "restop")) is not None)
    second = LocalExecutor(runs_dir, NODE)
    try:
        await second.stop("restop", 1, grace_seconds=5)
        exited = await next_event(second.events())
        assert isinstance(exited, ReplicaExited) and exited.exit_code == 143
        await second.stop("restop", 1, grace_seconds=5)
        await second.stop("unknown", 1, grace_seconds=5)
    finally:
        await second.close()


async def test_memory_limit_and_cgroup(runs_dir: Path, tmp_path: Path) -> None:
    cgroups = tmp_path / "cgroup"
    cgroups.mkdir()
    ex = LocalExecutor(runs_dir, NODE, cgroup_root=cgroups)
    try:
        launch = make_launch(
            "limits",
            sh('ulimit -d; echo "${PIER_SUP_DATA_KIB-unset}"'),
            resources={"memory_limit": "64Mi", "cpu_limit": 1.5},
        )
        exited = await run_to_exit(ex, launch)
        assert exited.exit_code == 0
        assert await read_log(ex, "limits") == b"65536\nunset\n"
        # a plain directory stands in for cgroupfs: the limits and the join are written
        group = cgroups / "pier-limits-1-main-0"
        assert (group / "memory.max").read_text() == f"{64 * 2**20}\n"
        assert (group / "cpu.max").read_text() == "150000 100000\n"
        sup = rr.read_supervisor(run_dir_of(runs_dir, "limits"))
        assert sup is not None
        assert (group / "cgroup.procs").read_text() == f"{sup.pid}\n"
    finally:
        await ex.close()


async def test_unusable_cgroup_root_does_not_block_start(
    runs_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ex = LocalExecutor(runs_dir, NODE, cgroup_root=tmp_path / "no-cgroupfs")
    try:
        with caplog.at_level(logging.WARNING, logger="pier.executors.local"):
            exited = await run_to_exit(ex, make_launch("nocg", ["true"]))
        assert exited.exit_code == 0
        assert "runs without it" in caplog.text
    finally:
        await ex.close()


async def test_poll_fallback_without_pidfd(monkeypatch: pytest.MonkeyPatch, runs_dir: Path) -> None:
    monkeypatch.setattr(local, "USE_PIDFD", False)
    monkeypatch.setattr(local, "POLL_INTERVAL", 0.05)
    ex = LocalExecutor(runs_dir, NODE)
    try:
        assert (await run_to_exit(ex, make_launch("poll", sh("exit 7")))).exit_code == 7
    finally:
        await ex.close()


async def test_events_end_on_close(runs_dir: Path) -> None:
    ex = LocalExecutor(runs_dir, NODE)
    seen: list[ExecutorEvent] = []

    async def consume() -> None:
        seen.extend([event async for event in ex.events()])

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await ex.close()
    await asyncio.wait_for(consumer, 2)
    assert seen == []
    with pytest.raises(StartError):
        await ex.start(make_launch("closed", ["true"]))
