"""Supervisor records: complete lines only; process identity by pid + start ticks."""

from __future__ import annotations

import os
from pathlib import Path

from pier.executors import runrecord as rr


def write(run_dir: Path, text: str) -> None:
    (run_dir / rr.SUPERVISOR_LOG).write_text(text)


def test_complete_records_among_messages(tmp_path: Path) -> None:
    write(
        tmp_path,
        "@pier supervisor 10 200 1700000000.123456 end\n"
        "pier-supervisor: could not join cgroup /x; running without it\n"
        "@pier started 10 11 11 201 1700000000.2 end\n"
        '[1]+  Terminated              launch "$@" > "$dir/output.log" 2>&1 < /dev/null\n'
        "@pier exit 143 1700000001,5 end\n",  # a locale with a decimal comma
    )
    assert rr.read_supervisor(tmp_path) == rr.SupervisorRecord(10, 200, 1700000000.123456)
    assert rr.read_started(tmp_path) == rr.StartedRecord(10, 11, 11, 201, 1700000000.2)
    assert rr.read_exit(tmp_path) == rr.ExitRecord(143, 1700000001.5)


def test_missing_partial_or_malformed_records_are_absent(tmp_path: Path) -> None:
    assert rr.read_exit(tmp_path) is None
    write(tmp_path, "")
    assert rr.read_exit(tmp_path) is None
    write(tmp_path, "@pier exit 3 1700000001.5 end")  # no newline yet: still being written
    assert rr.read_exit(tmp_path) is None
    write(tmp_path, "@pier exit 3 1700000001.5 en")
    assert rr.read_exit(tmp_path) is None
    write(tmp_path, "@pier exit 3 end\n")
    assert rr.read_exit(tmp_path) is None
    write(tmp_path, "exit 3 1.0 end\n")
    assert rr.read_exit(tmp_path) is None
    write(tmp_path, "@pier exit x 1.0 end\n")
    assert rr.read_exit(tmp_path) is None
    assert rr.read_supervisor(tmp_path / "nope") is None


def test_started_record_never_names_pid_zero(tmp_path: Path) -> None:
    # killpg(0) would signal pier's own process group
    write(tmp_path, "@pier started 10 0 0 0 1.0 end\n")
    assert rr.read_started(tmp_path) is None


def test_is_alive_checks_start_ticks() -> None:
    fields = Path("/proc/self/stat").read_bytes().rpartition(b") ")[2].split()
    ticks = int(fields[19])
    me = os.getpid()
    assert rr.is_alive(me, ticks)
    assert not rr.is_alive(me, ticks + 1)  # same pid, another process: a reused pid
    assert not rr.is_alive(me, 0)
    assert not rr.is_alive(0, ticks)
    assert not rr.is_alive(2**22 + 1, ticks)  # beyond pid_max: no such process
