"""The crash test: ``kill -9`` the server while jobs run and queue, restart it on the same
home and database, and check that no job is lost, none runs twice, and every one ends with
its real exit code and complete logs.

30 jobs ask one GPU each of 10, so 10 run and 20 queue. Each job appends a line to its own
counter file when it starts (a second run would add a second line), prints ``start NAME``,
then blocks until the test opens its gate (a file), so the test decides exactly which jobs
finish while the server is down and which are still running when it comes back. Then it
prints ``end NAME`` and exits with a code that depends on its name (0..5).
"""

from __future__ import annotations

import functools
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import PierServer, ServerFactory, job_statuses, wait_for

from pier.executors import runrecord as rr
from pier.models import JobView
from pier.sdk import Client

GPUS = 10
JOBS = 30
TERMINAL = {"Succeeded", "Failed", "Stopped"}
DOWN_SECONDS = 1.0


@dataclass(frozen=True)
class Crash:
    shared: Path

    def counter(self, name: str) -> Path:
        return self.shared / f"runs-{name}"

    def gate(self, name: str) -> Path:
        return self.shared / f"go-{name}"

    @property
    def all_gate(self) -> Path:
        return self.shared / "go-all"

    def command(self, name: str, code: int) -> list[str]:
        q = shlex.quote
        script = (
            f"echo run >> {q(str(self.counter(name)))}; "
            f"echo start {name}; "
            f"while [ ! -e {q(str(self.gate(name)))} ] && [ ! -e {q(str(self.all_gate))} ]; "
            "do sleep 0.05; done; "
            "sleep 0.1; "
            f"echo end {name}; "
            f"exit {code}"
        )
        return ["sh", "-c", script]


def exit_code_for(index: int) -> int:
    return index % 6


def name_for(index: int) -> str:
    return f"job-{index:02d}"


def submit_all(client: Client, crash: Crash) -> dict[str, int]:
    """Submit the 30 jobs in order; ``{name: expected exit code}``."""
    expected: dict[str, int] = {}
    for i in range(JOBS):
        name = name_for(i)
        code = exit_code_for(i)
        job = client.submit(
            {
                "name": name,
                "tasks": [{"command": crash.command(name, code), "resources": {"gpu": 1}}],
                "lifecycle": {"backoff_limit": 0},
            }
        )
        assert job.status.value == "Pending"
        expected[name] = code
    return expected


def wait_running(server: PierServer, crash: Crash, count: int) -> list[str]:
    """Wait until ``count`` jobs are Running and have really started; their names."""
    with server.client() as client:

        def running() -> list[str] | None:
            statuses = job_statuses(client)
            names = sorted(n for n, s in statuses.items() if s == "Running")
            if len(names) < count:
                return None
            assert len(names) == count, f"more than {count} jobs run on {count} GPUs: {names}"
            if not all(crash.counter(n).exists() for n in names):
                return None
            return names

        names: list[str] = wait_for(running, 30, f"{count} running jobs")
        return names


def run_dir_of(server: PierServer, job: JobView) -> Path:
    dirs = server.run_dirs(job.id)
    assert len(dirs) == 1, f"{job.name}: expected one run dir (one attempt), got {dirs}"
    assert dirs[0].parent.name == "1", dirs
    return dirs[0]


def check_outcome(server: PierServer, crash: Crash, expected: dict[str, int]) -> list[JobView]:
    """All jobs terminal with the right status, real exit code, whole logs, run once."""
    with server.client() as client:
        wait_for(
            lambda: (
                all(s in TERMINAL for s in job_statuses(client).values())
                and len(job_statuses(client)) == JOBS
            ),
            45,
            "all jobs to end",
            0.1,
        )
        listed = {j.name: j for j in client.list_jobs("default")}
        assert sorted(listed) == sorted(expected), "jobs were lost or invented"
        jobs = [client.get_job(name) for name in sorted(expected)]
        problems: list[str] = []
        for job in jobs:
            code = expected[job.name]
            status = "Succeeded" if code == 0 else "Failed"
            if (job.status.value, job.exit_code) != (status, code):
                problems.append(
                    f"{job.name}: {job.status.value} exit {job.exit_code} "
                    f"({job.reason}: {job.message}), expected {status} exit {code}"
                )
            runs = crash.counter(job.name).read_text().splitlines()
            if len(runs) != 1:
                problems.append(f"{job.name}: ran {len(runs)} times")
            if (job.attempt, job.retries) != (1, 0):
                problems.append(f"{job.name}: attempt {job.attempt}, retries {job.retries}")
            logs = b"".join(client.logs(job.name))
            want = f"start {job.name}\nend {job.name}\n".encode()
            if logs != want:
                problems.append(f"{job.name}: logs {logs!r}, expected {want!r}")
            history = [h.status.value for h in job.history or []]
            if history[:1] != ["Pending"] or history[-1:] != [status]:
                problems.append(f"{job.name}: history {history}")
            if history.count(status) != 1 or "Pending" in history[1:]:
                problems.append(f"{job.name}: history {history}")
            record = rr.read_exit(run_dir_of(server, job))
            if record is None or record.code != code:
                problems.append(f"{job.name}: exit record {record}")
        assert not problems, "\n".join(problems)
        return jobs


def crash_server(server: PierServer) -> float:
    """``kill -9`` the server; the jobs keep running. Returns the monotonic time."""
    server.kill()
    return time.monotonic()


def test_kill_9_while_jobs_run_and_queue(
    pier_server_factory: ServerFactory, tmp_path: Path
) -> None:
    crash = Crash(tmp_path / "shared")
    crash.shared.mkdir()
    server = pier_server_factory(gpus=GPUS)
    with server.client() as client:
        expected = submit_all(client, crash)
    first_wave = wait_running(server, crash, GPUS)
    with server.client() as client:
        before = job_statuses(client)
    assert sorted(before.values()).count("Pending") == JOBS - GPUS

    crash_server(server)
    time.sleep(DOWN_SECONDS)
    # Nothing ran on without the server: the first wave is still blocked, the rest queued.
    assert sum(1 for i in range(JOBS) if crash.counter(name_for(i)).exists()) == GPUS
    server.restart()

    # The first wave was re-attached, not restarted: still Running, on attempt 1.
    with server.client() as client:
        for name in first_wave:
            job = client.get_job(name)
            assert (job.status.value, job.attempt) == ("Running", 1), job
    # Their GPUs are still taken: a few scheduler passes start nothing else.
    time.sleep(1.0)
    with server.client() as client:
        statuses = job_statuses(client)
    assert sorted(n for n, s in statuses.items() if s == "Running") == first_wave
    assert sum(1 for i in range(JOBS) if crash.counter(name_for(i)).exists()) == GPUS
    crash.all_gate.touch()

    check_outcome(server, crash, expected)


def test_jobs_finish_while_server_is_down(
    pier_server_factory: ServerFactory, tmp_path: Path
) -> None:
    crash = Crash(tmp_path / "shared")
    crash.shared.mkdir()
    server = pier_server_factory(gpus=GPUS)
    with server.client() as client:
        expected = submit_all(client, crash)
        first_wave = wait_running(server, crash, GPUS)
        ids = {j.name: j.id for j in client.list_jobs("default")}

    crashed_at = crash_server(server)
    # Half of the running jobs end while there is no server to see it.
    ended_while_down = first_wave[::2]
    for name in ended_while_down:
        crash.gate(name).touch()
    for name in ended_while_down:
        (run_dir,) = server.run_dirs(ids[name])
        wait_for(functools.partial(rr.read_exit, run_dir), 15, f"{name} to end")
    time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - crashed_at)))
    server.restart()

    # Their exits were read from the run records: each ends with its real code at once,
    # while the other half is re-attached and still Running.
    with server.client() as client:
        wait_for(
            lambda: all(client.get_job(n).status.value in TERMINAL for n in ended_while_down),
            15,
            "the jobs that ended while the server was down to be recorded",
        )
        for name in first_wave:
            job = client.get_job(name)
            if name in ended_while_down:
                code = expected[name]
                assert job.exit_code == code, job
                assert job.status.value == ("Succeeded" if code == 0 else "Failed"), job
            else:
                assert (job.status.value, job.attempt) == ("Running", 1), job
    # The freed GPUs went to queued jobs, and no more than that: 5 re-attached + 5 new.
    running = wait_running(server, crash, GPUS)
    assert set(first_wave) - set(ended_while_down) <= set(running)
    crash.all_gate.touch()

    check_outcome(server, crash, expected)


def test_kill_9_right_after_submit(pier_server_factory: ServerFactory, tmp_path: Path) -> None:
    """A crash in the middle of admission (jobs being claimed and started) loses nothing
    and runs nothing twice."""
    crash = Crash(tmp_path / "shared")
    crash.shared.mkdir()
    crash.all_gate.touch()  # every job runs straight through
    server = pier_server_factory(gpus=GPUS)
    with server.client() as client:
        expected = submit_all(client, crash)
    crash_server(server)
    time.sleep(DOWN_SECONDS)
    server.restart()
    check_outcome(server, crash, expected)


def _one_gated_job(server: PierServer, crash: Crash, code: int) -> JobView:
    with server.client() as client:
        client.submit(
            {
                "name": "solo",
                "tasks": [{"command": crash.command("solo", code)}],
                "lifecycle": {"backoff_limit": 0},
            }
        )
        wait_for(lambda: client.get_job("solo").status.value == "Running", 30, "solo to run")
        wait_for(crash.counter("solo").exists, 15, "solo's process to start")
        return client.get_job("solo")


def test_graceful_restart_reattaches(pier_server_factory: ServerFactory, tmp_path: Path) -> None:
    """``pier server`` ended by SIGTERM (Ctrl-C) leaves its jobs running; the next one
    re-attaches to them."""
    crash = Crash(tmp_path / "shared")
    crash.shared.mkdir()
    server = pier_server_factory(gpus=1)
    job = _one_gated_job(server, crash, 5)
    server.stop()
    run_dir = run_dir_of(server, job)
    started = rr.read_started(run_dir)
    assert started is not None and rr.is_alive(started.pgid, started.ticks)
    server.restart()
    with server.client() as client:
        assert client.get_job("solo").status.value == "Running"
        crash.all_gate.touch()
        wait_for(lambda: client.get_job("solo").status.value in TERMINAL, 30, "solo to end")
        final = client.get_job("solo")
        assert (final.status.value, final.exit_code, final.attempt) == ("Failed", 5, 1)
        assert b"".join(client.logs("solo")) == b"start solo\nend solo\n"
    assert crash.counter("solo").read_text() == "run\n"


def test_finished_at_is_the_real_end(pier_server_factory: ServerFactory, tmp_path: Path) -> None:
    crash = Crash(tmp_path / "shared")
    crash.shared.mkdir()
    server = pier_server_factory(gpus=1)
    job = _one_gated_job(server, crash, 0)
    server.kill()
    crash.all_gate.touch()
    run_dir = run_dir_of(server, job)
    record = wait_for(lambda: rr.read_exit(run_dir), 15, "solo to end")
    time.sleep(DOWN_SECONDS)
    server.restart()
    with server.client() as client:
        wait_for(lambda: client.get_job("solo").status.value in TERMINAL, 30, "solo to end")
        final = client.get_job("solo")
    assert final.status.value == "Succeeded"
    assert final.finished_at is not None
    assert abs(final.finished_at - record.time) < 0.5, (final.finished_at, record.time)
