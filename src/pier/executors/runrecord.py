"""A replica's run directory as ``supervisor.sh`` leaves it: records, output, processes.

Records are lines of ``supervisor.log`` (between the supervisor's own messages), each
appended with a single ``printf`` and ending in the token ``end`` and a newline; a line
without them (not yet, or half written) is ignored. Times are ``$EPOCHREALTIME`` (seconds
since the epoch, microseconds; a locale may print a comma). Ticks are a process' start time
in clock ticks since boot (field 22 of ``/proc/PID/stat``): with its pid it names one
process exactly, so a reused pid is never mistaken for ours.

``@pier supervisor SUP_PID SUP_TICKS TIME end``   first thing the supervisor does
``@pier started SUP_PID PID PGID TICKS TIME end``  once the job is running
``@pier exit CODE TIME end``                        once the job was reaped; CODE is its exit
                                                    status, ``128 + N`` if signal N killed it

``TICKS`` of the job is 0 when it was gone before the supervisor could look (it is then
never signalled).

Also here, everything else about the supervisor's side that needs no event loop: verified
signalling, orphan clean-up, log chunks, the bash check and cgroup creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TypeVar

__all__ = [
    "OUTPUT_LOG",
    "SUPERVISOR_LOG",
    "ExitRecord",
    "Records",
    "StartedRecord",
    "SupervisorRecord",
    "check_bash",
    "finished",
    "follow_output",
    "is_alive",
    "kill_orphan",
    "live_supervisors",
    "make_cgroup",
    "read_chunks",
    "read_exit",
    "read_records",
    "read_started",
    "read_supervisor",
    "running_jobs",
    "signal_job",
]

log = logging.getLogger(__name__)

OUTPUT_LOG = "output.log"
SUPERVISOR_LOG = "supervisor.log"

LOG_CHUNK = 64 * 1024
LOG_BATCH = 16  # chunks per read_chunks call (one hop to a worker thread)
_MAX_SUPERVISOR_LOG = 1 << 20  # a few lines in practice
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class SupervisorRecord:
    pid: int
    ticks: int
    time: float


@dataclass(frozen=True, slots=True)
class StartedRecord:
    supervisor_pid: int
    pid: int
    pgid: int
    ticks: int
    time: float


@dataclass(frozen=True, slots=True)
class ExitRecord:
    code: int
    time: float


@dataclass(frozen=True, slots=True)
class Records:
    supervisor: SupervisorRecord | None
    started: StartedRecord | None
    exit: ExitRecord | None


def read_records(run_dir: Path) -> Records:
    """Every complete record in the replica's supervisor.log (one read)."""
    lines: dict[bytes, list[bytes]] = {}
    try:
        fd = os.open(run_dir / SUPERVISOR_LOG, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, _MAX_SUPERVISOR_LOG)
        finally:
            os.close(fd)
    except OSError:
        data = b""
    for line in data.split(b"\n")[:-1]:  # what follows the last newline is incomplete
        if line.startswith(b"@pier ") and line.endswith(b" end"):
            parts = line.split()
            lines.setdefault(parts[1], parts[2:-1])
    return Records(
        _parse(_supervisor, lines.get(b"supervisor")),
        _parse(_started, lines.get(b"started")),
        _parse(_exit, lines.get(b"exit")),
    )


def read_supervisor(run_dir: Path) -> SupervisorRecord | None:
    return read_records(run_dir).supervisor


def read_started(run_dir: Path) -> StartedRecord | None:
    return read_records(run_dir).started


def read_exit(run_dir: Path) -> ExitRecord | None:
    return read_records(run_dir).exit


def _parse(parse: Callable[[list[bytes]], _R | None], fields: list[bytes] | None) -> _R | None:
    if fields is None:
        return None
    try:
        return parse(fields)
    except (ValueError, IndexError):
        return None


def _time(value: bytes) -> float:
    return float(value.replace(b",", b"."))


def _supervisor(f: list[bytes]) -> SupervisorRecord | None:
    return SupervisorRecord(int(f[0]), int(f[1]), _time(f[2])) if len(f) == 3 else None


def _started(f: list[bytes]) -> StartedRecord | None:
    if len(f) != 5:
        return None
    record = StartedRecord(int(f[0]), int(f[1]), int(f[2]), int(f[3]), _time(f[4]))
    # pid/pgid 0 or negative would make kill()/killpg() hit our own group or everything
    return record if record.pid > 1 and record.pgid > 1 else None


def _exit(f: list[bytes]) -> ExitRecord | None:
    return ExitRecord(int(f[0]), _time(f[1])) if len(f) == 2 else None


def _stat(pid: int) -> tuple[bytes, int, int] | None:
    """(state, session id, start ticks) of a process, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    fields = data.rpartition(b") ")[2].split()
    try:
        return fields[0], int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def live_supervisors(script: Path) -> dict[str, tuple[int, int]]:
    """``{run_dir: (pid, ticks)}`` of every live process running ``script``, from /proc.

    Only for the rare replica whose run dir exists without a supervisor record: its
    supervisor may be starting up right now (it writes its record within a millisecond).
    """
    found: dict[str, tuple[int, int]] = {}
    marker = os.fsencode(script)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                args = cmdline.read().split(b"\0")
        except OSError:
            continue
        # bash -p SCRIPT RUN_DIR -- ARGV...
        if len(args) > 4 and args[2] == marker and args[4] == b"--":
            pid = int(name)
            stat = _stat(pid)
            # a session leader: not the job's process, which is a fork of the supervisor
            # and carries the same command line until it execs
            if stat is not None and stat[0] != b"Z" and stat[1] == pid:
                found[os.fsdecode(args[3])] = (pid, stat[2])
    return found


def is_alive(pid: int, ticks: int) -> bool:
    """Whether ``pid`` still is the process that started at ``ticks`` and has not exited."""
    if pid <= 1 or ticks <= 0:
        return False
    stat = _stat(pid)
    return stat is not None and stat[2] == ticks and stat[0] != b"Z"


def signal_job(started: StartedRecord, sig: int) -> bool:
    """Signal the job's process group, only if its leader is provably still the job."""
    if not is_alive(started.pgid, started.ticks):
        return False
    try:
        os.killpg(started.pgid, sig)
    except ProcessLookupError:
        # the leader left its group (setsid/setpgid): it alone can still be reached
        try:
            os.kill(started.pid, sig)
        except ProcessLookupError:
            return False
    return True


def kill_orphan(run_dir: Path, started: StartedRecord | None) -> str:
    """Kill the job of a supervisor that vanished without an exit record; say what happened.

    The job runs in its own process group, so a ``kill -9`` of the supervisor leaves it
    running unwatched (and holding its GPUs); it is killed when it is provably the job.
    """
    lost = "the supervisor ended without recording an exit"
    if started is None:
        return "the supervisor ended before it recorded starting the job"
    if not signal_job(started, signal.SIGKILL):
        return f"{lost}; job pid {started.pid} is gone"
    log.warning("killed orphaned job process group %d of %s", started.pgid, run_dir)
    return f"{lost}; its orphaned job (process group {started.pgid}) was killed"


def running_jobs(attempt_dir: Path) -> list[StartedRecord]:
    """The started, unfinished jobs of an attempt's run directories (judged from disk)."""
    if not attempt_dir.is_dir():
        return []
    found = []
    for run_dir in sorted(attempt_dir.iterdir()):
        started = read_started(run_dir)
        if started is not None and not finished(run_dir):
            found.append(started)
    return found


def finished(run_dir: Path) -> bool:
    """Whether nothing more will be written to the replica's output (judged from disk)."""
    records = read_records(run_dir)
    if records.exit is not None:
        return True
    sup = records.supervisor
    return sup is None or not is_alive(sup.pid, sup.ticks)


def read_chunks(fd: int, position: int) -> list[bytes]:
    """Up to ``LOG_BATCH`` chunks of ``LOG_CHUNK`` bytes from ``position`` (blocking)."""
    chunks: list[bytes] = []
    for _ in range(LOG_BATCH):
        chunk = os.pread(fd, LOG_CHUNK, position)
        if not chunk:
            break
        chunks.append(chunk)
        position += len(chunk)
    return chunks


@cache
async def follow_output(
    run_dir: Path, position: int, finished: Callable[[], bool], interval: float
) -> AsyncIterator[bytes]:
    """``output.log`` from ``position``: what is there, then (until ``finished()``, asked
    before each read so that nothing written before the end is missed) what comes, every
    ``interval`` seconds. Reads run in a thread: a 50 MB log must not stall the loop."""
    fd: int | None = None
    try:
        while True:
            done = finished()
            if fd is None:
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(run_dir / OUTPUT_LOG, os.O_RDONLY | os.O_CLOEXEC)
            while fd is not None:
                chunks = await asyncio.to_thread(read_chunks, fd, position)
                for chunk in chunks:
                    position += len(chunk)
                    yield chunk
                if sum(map(len, chunks)) < LOG_BATCH * LOG_CHUNK:
                    break
            if done:
                return
            await asyncio.sleep(interval)
    finally:
        if fd is not None:
            os.close(fd)


def check_bash(bash: str) -> None:
    """Raise ValueError unless ``bash`` can run the supervisor (5.1+: ``wait -p``)."""
    probe = 'echo "${BASH_VERSINFO[0]} ${BASH_VERSINFO[1]}"'
    try:
        out = subprocess.run(
            [bash, "-c", probe], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
        version = (int(out[0]), int(out[1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise ValueError(f"{bash} is not a usable bash: {exc}") from exc
    if version < (5, 1):
        raise ValueError(f"{bash} is bash {version[0]}.{version[1]}; the supervisor needs 5.1+")


def make_cgroup(path: Path, memory_limit: int | None, cpu_limit: float | None) -> None:
    """Create a cgroup v2 group with its limits (OSError where cgroupfs is not writable)."""
    try:
        path.mkdir(exist_ok=True)
        if memory_limit:
            (path / "memory.max").write_text(f"{memory_limit}\n")
        if cpu_limit:
            (path / "cpu.max").write_text(f"{max(1000, int(cpu_limit * 100_000))} 100000\n")
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        raise
