"""The ``pier`` CLI against a real ``pier server`` subprocess, end to end."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PierServer, wait_for

from pier.executors import runrecord as rr

TERMINAL = {"Succeeded", "Failed", "Stopped"}
LOG_BYTES = 50 * 2**20


def submit(server: PierServer, name: str, *command: str, options: tuple[str, ...] = ()) -> Any:
    job = server.cli_json("submit", "--name", name, *options, "--", *command)
    assert job["name"] == name
    assert job["project"] == "default"
    return job


def describe(server: PierServer, name: str) -> Any:
    return server.cli_json("describe", name)


def wait_until(server: PierServer, name: str, statuses: set[str], timeout: float = 30.0) -> None:
    """Poll through the SDK: every CLI call costs a Python start-up."""
    with server.client() as client:
        wait_for(
            lambda: client.get_job(name).status.value in statuses,
            timeout,
            f"job {name} to be {' or '.join(sorted(statuses))}",
        )


def wait_status(server: PierServer, name: str, statuses: set[str], timeout: float = 30.0) -> Any:
    """Wait, then show the job as ``pier describe --output json`` does."""
    wait_until(server, name, statuses, timeout)
    return describe(server, name)


def test_succeeded_job_logs_and_history(pier_server: PierServer) -> None:
    job = submit(pier_server, "hello", "sh", "-c", "echo hello from pier; echo second line")
    assert job["status"] == "Pending"

    final = wait_status(pier_server, "hello", TERMINAL)
    assert final["status"] == "Succeeded", final
    assert final["exit_code"] == 0
    assert [h["status"] for h in final["history"]] == ["Pending", "Running", "Succeeded"]

    logs = pier_server.cli("logs", "hello").stdout
    assert logs == b"hello from pier\nsecond line\n"

    text = pier_server.cli("describe", "hello").stdout.decode()
    assert re.search(r"^Status:\s+Succeeded", text, re.M), text
    history = text[text.index("History") :]
    rows = [line.split()[2] for line in history.splitlines()[2:] if line.strip()]
    assert rows == ["Pending", "Running", "Succeeded"], text


def test_failed_job_exit_code(pier_server: PierServer) -> None:
    submit(
        pier_server, "fails", "sh", "-c", "echo failing; exit 3", options=("--backoff-limit", "0")
    )
    final = wait_status(pier_server, "fails", TERMINAL)
    assert final["status"] == "Failed", final
    assert final["exit_code"] == 3
    assert final["retries"] == 0
    assert [h["status"] for h in final["history"]] == ["Pending", "Running", "Failed"]
    assert final["history"][-1]["exit_code"] == 3
    assert pier_server.cli("logs", "fails").stdout == b"failing\n"

    # The human view shows it too.
    text = pier_server.cli("describe", "fails").stdout.decode()
    assert re.search(r"^Exit code:\s+3\s*$", text, re.M), text


def test_stop_running_job(pier_server: PierServer, tmp_path: Path) -> None:
    marker = tmp_path / "sleeper-started"
    submit(pier_server, "sleeper", "sh", "-c", f"touch {marker}; exec sleep 60")
    wait_until(pier_server, "sleeper", {"Running"})
    wait_for(marker.exists, 15, "the job's process to start")

    began = time.monotonic()
    stopped = pier_server.cli_json("stop", "sleeper")
    assert stopped["name"] == "sleeper"
    final = wait_status(pier_server, "sleeper", TERMINAL)
    assert time.monotonic() - began < 15, "stop took longer than the grace period"
    assert final["status"] == "Stopped", final
    assert final["exit_code"] == 143  # 128 + SIGTERM
    assert [h["status"] for h in final["history"]] == ["Pending", "Running", "Stopped"]
    # Its process group is gone.
    (run_dir,) = pier_server.run_dirs(final["id"])
    started = _started(run_dir)
    assert started is not None, f"no started record in {run_dir}"
    assert not rr.is_alive(*started)
    record = rr.read_exit(run_dir)
    assert record is not None and record.code == 143


def _started(run_dir: Path) -> tuple[int, int] | None:
    """(pgid, ticks) of a replica's job, from its run record."""
    started = rr.read_started(run_dir)
    return None if started is None else (started.pgid, started.ticks)


def test_large_logs(pier_server: PierServer, tmp_path: Path) -> None:
    command = f"head -c {LOG_BYTES} /dev/zero | tr '\\0' 'x'; printf END"
    submit(pier_server, "bigout", "sh", "-c", command)
    final = wait_status(pier_server, "bigout", TERMINAL, timeout=60)
    assert final["status"] == "Succeeded", final

    out_path = tmp_path / "bigout.log"
    with open(out_path, "wb") as out:
        pier_server.cli("logs", "bigout", stdout=out, timeout=120)
    size = out_path.stat().st_size
    assert size == LOG_BYTES + 3, f"pier logs returned {size} bytes"
    with open(out_path, "rb") as f:
        assert f.read(4096) == b"x" * 4096
        f.seek(LOG_BYTES - 5)
        assert f.read() == b"xxxxxEND"


def test_logs_follow_streams_while_running(pier_server: PierServer, tmp_path: Path) -> None:
    """``pier logs -f`` shows output while the job runs and ends when the job does.

    The job prints ``ready`` and then blocks until the test releases it, so the first line
    provably arrives while the job is running, however slowly the CLI starts."""
    gate = tmp_path / "ticker-go"
    lines = 10
    script = (
        f"echo ready; while [ ! -e {gate} ]; do sleep 0.05; done; "
        f"for i in $(seq 1 {lines}); do echo line $i; sleep 0.2; done"
    )
    submit(pier_server, "ticker", "sh", "-c", script)

    received: list[tuple[float, bytes]] = []
    arrived = threading.Event()
    with pier_server.cli_popen("logs", "-f", "ticker") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout

        def read() -> None:
            for line in iter(out.readline, b""):
                received.append((time.monotonic(), line))
                arrived.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert arrived.wait(timeout=30), "no output from pier logs -f"
            assert received[0][1] == b"ready\n"
            assert proc.poll() is None, "pier logs -f ended while the job still runs"
            with pier_server.client() as client:
                assert client.get_job("ticker").status.value == "Running"
            released = time.monotonic()
            gate.touch()
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        exited = time.monotonic()
        reader.join(timeout=10)
        stderr = proc.stderr.read().decode(errors="replace")
    assert code == 0, stderr

    job = describe(pier_server, "ticker")
    assert job["status"] == "Succeeded", job
    expected = [b"ready\n", *(f"line {i}\n".encode() for i in range(1, lines + 1))]
    assert [line for _, line in received] == expected
    # The ~2 s of ticks came one by one as they were written, not in one lump at the end.
    ticks = [at for at, _ in received[1:]]
    assert ticks[-1] - ticks[0] > 1.0, [round(t - released, 2) for t in ticks]
    # The command ended when the job did (it cannot end before the job's last line).
    assert exited - ticks[-1] < 5.0


def test_list_and_delete(pier_server: PierServer) -> None:
    submit(pier_server, "keep", "true")
    submit(pier_server, "drop", "true")
    wait_until(pier_server, "keep", TERMINAL)
    wait_until(pier_server, "drop", TERMINAL)

    listed = pier_server.cli_json("list")
    assert {j["name"] for j in listed} == {"keep", "drop"}
    assert all(j["status"] == "Succeeded" for j in listed)

    result = pier_server.cli("delete", "drop")
    assert b"deleted" in result.stdout

    assert [j["name"] for j in pier_server.cli_json("list")] == ["keep"]
    gone = pier_server.cli("describe", "drop", check=False)
    assert gone.returncode == 1
    assert b"not found" in gone.stderr

    # The table view lists what is left.
    table = pier_server.cli("list").stdout.decode()
    assert "keep" in table and "drop" not in table


def test_delete_running_job_stops_it(pier_server: PierServer) -> None:
    job = submit(pier_server, "doomed", "sleep", "60")
    wait_until(pier_server, "doomed", {"Running"})
    wait_for(lambda: pier_server.run_dirs(job["id"]), 10, "the run dir")
    (run_dir,) = pier_server.run_dirs(job["id"])
    started = wait_for(lambda: _started(run_dir), 10, "the job's started record")

    pier_server.cli("delete", "doomed")
    assert "doomed" not in {j["name"] for j in pier_server.cli_json("list")}
    wait_for(lambda: not rr.is_alive(*started), 15, "the deleted job's processes to end")
