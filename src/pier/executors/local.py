"""The local executor: every replica a process on this machine, under a bash supervisor.

Run directory of one replica::

    runs_dir/<job_id>/<attempt>/<task>-<index>/
        output.log        the job's stdout and stderr, combined
        supervisor.log    the supervisor's messages and its records, one line each:
                          supervisor pid + start (before the job is launched), job
                          pid/pgid + start, exit code (128 + N for signal N) + end time

(formats: :mod:`pier.executors.runrecord`). ``supervisor.sh`` runs in its own session and
the job in its own process group, so both outlive the server; :meth:`LocalExecutor.recover`
reconciles from the records after a restart.

- Exits are seen at once: each supervisor is watched through a pidfd registered with the
  event loop (a 0.5 s poll only where pidfds are unavailable).
- ``ReplicaStarted.pid`` is the supervisor's pid, the replica's stable handle (the job's
  pid/pgid are in its started record); it is emitted right after the spawn.
- ``stop`` signals the job's process group, never the supervisor, which keeps waiting and so
  always records the exit. Nothing is signalled unless its pid and start ticks match what the
  supervisor recorded (no reused pid is ever hit).
- A supervisor that vanished without recording an exit (``kill -9``) leaves its job orphaned
  in its own group; that group is killed (SIGKILL) when its leader is provably the job, and
  the replica is reported ``ReplicaLost(reason="SupervisorLost")``.
- Environment: the server's minus ``PIER_ADMIN*``/``PIER_DATABASE*``, then ``launch.env``,
  then the task's ``env``, then pier's own: ``CUDA_VISIBLE_DEVICES`` (placement's device
  indexes, with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so they are NVML's; empty = no GPU),
  ``PIER_GPU_FRACTION`` (when a share of one device; JAX and TensorFlow memory defaults
  before the task's env keep them within the share, see ``gpus.framework_memory_defaults``),
  ``PIER_TASK_ROLE``, ``PIER_REPLICA_INDEX``, ``PIER_NUM_REPLICAS`` (replicas of that role),
  ``PIER_JOB_ID``, ``PIER_ATTEMPT``. cwd: the task's ``working_dir`` (relative: to the run
  dir), else the run dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pier.executors import runrecord as rr
from pier.executors.base import (
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ProcessGroup,
    ReplicaExited,
    ReplicaKey,
    ReplicaLost,
    ReplicaPlacement,
    ReplicaStarted,
    StartError,
)
from pier.executors.gpus import framework_memory_defaults, visible_devices_env
from pier.spec import TaskRole

__all__ = ["SUPERVISOR_SCRIPT", "LocalExecutor"]

log = logging.getLogger(__name__)

SUPERVISOR_SCRIPT = Path(__file__).with_name("supervisor.sh")
SECRET_PREFIXES = ("PIER_ADMIN", "PIER_DATABASE")
FOLLOW_INTERVAL = 0.05
POLL_INTERVAL = 0.5
RETRY_SIGNAL = 0.01  # the job is launched a few ms after its supervisor

# Supervisors this process spawned and has not reaped, shared by all executor instances: a
# new instance that re-attaches (recover) reaps them too, and no Popen is ever dropped
# unreaped (it would warn).
_children: dict[int, subprocess.Popen[bytes]] = {}
USE_PIDFD = hasattr(os, "pidfd_open")


_found_on_path: dict[tuple[str, str], float] = {}
FOUND_ON_PATH_SECONDS = 5.0
"""How long a command found on a PATH is believed to stay there: ``shutil.which`` over a
long PATH costs ~0.1 ms per replica. A command removed meanwhile fails at ``exec`` (exit
127, recorded like any failure) instead of as a start error."""


def _on_path(command: str, path: str) -> bool:
    key = (command, path)
    now = time.monotonic()
    if now - _found_on_path.get(key, -math.inf) < FOUND_ON_PATH_SECONDS:
        return True
    if shutil.which(command, path=path) is None:
        return False
    if len(_found_on_path) > 1024:
        _found_on_path.clear()
    _found_on_path[key] = now
    return True


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        del _children[pid]


@dataclass(slots=True, eq=False)
class _Replica:
    key: ReplicaKey
    run_dir: Path
    sup_pid: int
    sup_ticks: int  # 0 for our own child: its pid stays ours until we reap it
    started_at: float
    job: rr.StartedRecord | None = None
    pidfd: int | None = None
    cgroup: Path | None = None
    stopping: bool = False
    kill_at: float = math.inf
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    silent: bool = False  # undone by a failed gang start: its exit is nobody's business
    done: bool = False


@dataclass(frozen=True, slots=True)
class _Plan:
    key: ReplicaKey
    run_dir: Path
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    task: TaskRole


class LocalExecutor:
    """Runs replicas as supervised processes on ``node`` (this machine).

    ``cgroup_root``: a writable cgroup v2 directory under which one child group per replica
    gets ``memory.max``/``cpu.max``; best effort. ``clock``: the time of ReplicaStarted at
    spawn (records carry the supervisor's own times).
    """

    def __init__(
        self,
        runs_dir: Path,
        node: NodeInfo,
        *,
        bash: str = "/bin/bash",
        cgroup_root: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        rr.check_bash(bash)
        self._runs_dir = Path(runs_dir).resolve()
        self._runs_dir.mkdir(parents=True, exist_ok=True)
        self._node = node
        self._bash = bash
        self._cgroup_root = cgroup_root
        self._cgroup_warned = False
        self._clock = clock
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
        self._replicas: dict[ReplicaKey, _Replica] = {}
        self._attempts: dict[tuple[str, int], list[_Replica]] = {}
        self._queue: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        self._polled: set[_Replica] = set()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)  # stdin of every spawn

    # -- protocol -----------------------------------------------------------------------

    def capacity(self) -> Sequence[NodeInfo]:
        return [self._node]

    async def start(self, launch: LaunchRequest) -> None:
        if self._closed:
            raise StartError("the executor is closed")
        if not launch.placements:
            raise StartError(f"job {launch.job_id}: no replicas placed")
        roles = {task.name: task for task in launch.spec.tasks}
        # Everything that can be checked is checked before the first spawn, so that a bad
        # request leaves no process behind.
        plans = [self._plan(launch, placement, roles) for placement in launch.placements]
        spawned: list[_Replica] = []
        try:
            for plan in plans:
                spawned.append(self._spawn(plan))
        except StartError:
            self._undo(spawned)
            raise
        except OSError as exc:
            self._undo(spawned)
            raise StartError(f"job {launch.job_id}: cannot start a supervisor: {exc}") from exc
        for rep in spawned:
            self._queue.put_nowait(ReplicaStarted(rep.key, rep.sup_pid, rep.started_at))

    async def stop(self, job_id: str, attempt: int, grace_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        for rep in self._attempt(job_id, attempt):
            self._stop_replica(rep, grace_seconds, loop)

    async def recover(self, active: Sequence[LaunchRequest]) -> Sequence[ExecutorEvent]:
        asyncio.get_running_loop()  # watches need the loop that events() runs on
        scan: dict[str, tuple[int, int]] = {}
        return [
            self._recover_replica(ReplicaKey(launch.job_id, launch.attempt, p.task, p.index), scan)
            for launch in active
            for p in launch.placements
        ]

    async def events(self) -> AsyncIterator[ExecutorEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                self._queue.put_nowait(None)  # every other reader ends too
                return
            yield event

    async def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool, offset: int = 0
    ) -> AsyncIterator[bytes]:
        run_dir = self._run_dir(job_id, attempt, replica)
        if run_dir is None or not run_dir.is_dir():
            return
        position = max(0, offset)
        fd: int | None = None
        try:
            while True:
                # Decided before reading: whatever was written before the exit is then read.
                finished = not follow or self._finished(job_id, attempt, replica, run_dir)
                if fd is None:
                    with contextlib.suppress(FileNotFoundError):
                        fd = os.open(run_dir / rr.OUTPUT_LOG, os.O_RDONLY | os.O_CLOEXEC)
                while fd is not None:  # in a thread: a 50 MB log must not stall the loop
                    chunks = await asyncio.to_thread(rr.read_chunks, fd, position)
                    for chunk in chunks:
                        position += len(chunk)
                        yield chunk
                    if sum(map(len, chunks)) < rr.LOG_BATCH * rr.LOG_CHUNK:
                        break
                if finished:
                    return
                await asyncio.sleep(FOLLOW_INTERVAL)
        finally:
            if fd is not None:
                os.close(fd)

    async def close(self) -> None:
        """Stop watching; replicas keep running and pending SIGKILL escalations are
        dropped (after a restart, recover and stop again)."""
        if self._closed:
            return
        self._closed = True
        for rep in self._replicas.values():
            self._unwatch(rep)
            _cancel(rep)
        self._replicas.clear()
        self._attempts.clear()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        os.close(self._devnull)
        self._queue.put_nowait(None)

    def job_processes(self, job_id: str, attempt: int) -> Sequence[ProcessGroup]:
        """The attempt's job processes (telemetry), as their supervisors recorded them. An
        attempt this executor does not watch (another worker process runs the control loop)
        is read from its run records on disk."""
        if (job_id, attempt) not in self._attempts:
            return self._recorded_processes(job_id, attempt)
        found = []
        for rep in self._attempts.get((job_id, attempt), ()):
            if rep.job is None and not rep.done:
                rep.job = rr.read_started(rep.run_dir)
            if rep.job is not None and not rep.done:
                found.append(ProcessGroup(rep.job.pid, rep.job.pgid, rep.job.ticks))
        return found

    def _recorded_processes(self, job_id: str, attempt: int) -> list[ProcessGroup]:
        attempt_dir = self._run_dir(job_id, attempt, "x")
        if attempt_dir is None or not attempt_dir.parent.is_dir():
            return []
        found = []
        for run_dir in sorted(attempt_dir.parent.iterdir()):
            started = rr.read_started(run_dir)
            if started is not None and not rr.finished(run_dir):
                found.append(ProcessGroup(started.pid, started.pgid, started.ticks))
        return found

    # -- start --------------------------------------------------------------------------

    def _plan(
        self, launch: LaunchRequest, placement: ReplicaPlacement, roles: dict[str, TaskRole]
    ) -> _Plan:
        what = f"job {launch.job_id} replica {placement.task}-{placement.index}"
        task = roles.get(placement.task)
        if task is None:
            raise StartError(f"{what}: the job has no task role '{placement.task}'")
        if placement.node != self._node.name:
            raise StartError(f"{what}: placed on node '{placement.node}', not on this one")
        run_dir = self._run_dir(launch.job_id, launch.attempt, f"{task.name}-{placement.index}")
        if run_dir is None:
            raise StartError(f"{what}: job id or attempt cannot name a directory")
        argv = task.argv
        if not argv:
            raise StartError(f"{what}: no command to run")
        cwd = run_dir
        if task.working_dir:
            cwd = run_dir / task.working_dir  # an absolute working_dir replaces run_dir
            if not cwd.is_dir():
                raise StartError(f"{what}: working directory {task.working_dir} does not exist")
        env = {
            **self._base_env,
            **framework_memory_defaults(placement.gpu_fraction),
            **launch.env,
            **task.env,
            **visible_devices_env(placement.devices, placement.gpu_fraction),
            "PIER_TASK_ROLE": task.name,
            "PIER_REPLICA_INDEX": str(placement.index),
            "PIER_NUM_REPLICAS": str(task.replicas),
            "PIER_JOB_ID": launch.job_id,
            "PIER_ATTEMPT": str(launch.attempt),
        }
        if "/" in argv[0]:
            exe = cwd / argv[0]
            found = exe.is_file() and os.access(exe, os.X_OK)
        else:
            found = _on_path(argv[0], env.get("PATH", os.defpath))
        if not found:
            raise StartError(f"{what}: executable '{argv[0]}' not found (PATH and cwd {cwd})")
        key = ReplicaKey(launch.job_id, launch.attempt, task.name, placement.index)
        if key in self._replicas:  # its supervisor may not have written a record yet
            raise StartError(f"{what}: already running")
        return _Plan(key, run_dir, argv, env, cwd, task)

    def _spawn(self, plan: _Plan) -> _Replica:
        # Top down: job and attempt dirs are usually new too (pathlib's parents=True would
        # first fail on the leaf; each mkdir is ~0.2 ms on an overlay filesystem).
        for parent in (plan.run_dir.parent.parent, plan.run_dir.parent):
            with contextlib.suppress(FileExistsError):
                os.mkdir(parent)
        try:
            os.mkdir(plan.run_dir)
        except FileExistsError:  # left by a start that never ran is fine; a started one not
            if (plan.run_dir / rr.SUPERVISOR_LOG).exists():
                raise StartError(
                    f"replica {plan.key} was started before ({plan.run_dir})"
                ) from None
        env = plan.env
        resources = plan.task.resources
        cgroup = self._make_cgroup(plan.key, plan.task)
        if resources.memory_limit or cgroup is not None:
            env = dict(env)
            if resources.memory_limit:
                env["PIER_SUP_DATA_KIB"] = str(math.ceil(resources.memory_limit / 1024))
            if cgroup is not None:
                env["PIER_SUP_CGROUP"] = str(cgroup)
        # No preexec_fn: CPython then spawns with vfork. The supervisor opens its own
        # supervisor.log (off this event loop); until then its stderr is the server's, where
        # a failure to even run the script is best seen.
        proc = subprocess.Popen(
            [self._bash, "-p", str(SUPERVISOR_SCRIPT), str(plan.run_dir), "--", *plan.argv],
            cwd=plan.cwd,
            env=env,
            stdin=self._devnull,
            stdout=self._devnull,
            close_fds=True,
            start_new_session=True,
        )
        _children[proc.pid] = proc
        rep = _Replica(plan.key, plan.run_dir, proc.pid, 0, self._clock(), cgroup=cgroup)
        self._register(rep)
        if not self._watch(rep):  # cannot happen to an unreaped child; poll it then
            self._polled.add(rep)
            self._ensure_poller()
        return rep

    def _undo(self, spawned: list[_Replica]) -> None:
        loop = asyncio.get_running_loop()
        for rep in spawned:
            rep.silent = True
            self._stop_replica(rep, 0, loop)

    def _make_cgroup(self, key: ReplicaKey, task: TaskRole) -> Path | None:
        if self._cgroup_root is None:
            return None
        path = self._cgroup_root / f"pier-{key.job_id}-{key.attempt}-{key.replica}"
        try:
            rr.make_cgroup(path, task.resources.memory_limit, task.resources.cpu_limit)
        except OSError as exc:
            # Best effort (no cgroup v2 delegation here): a job without limits beats no job.
            level = logging.DEBUG if self._cgroup_warned else logging.WARNING
            self._cgroup_warned = True
            log.log(level, "cgroup %s unusable (%s); %s runs without it", path, exc, key)
            return None
        return path

    # -- watching -----------------------------------------------------------------------

    def _register(self, rep: _Replica) -> None:
        self._replicas[rep.key] = rep
        self._attempts.setdefault((rep.key.job_id, rep.key.attempt), []).append(rep)

    def _watch(self, rep: _Replica) -> bool:
        """Watch the supervisor's exit; False if it is already gone."""
        pidfd: int | None = None
        if USE_PIDFD:
            try:
                pidfd = os.pidfd_open(rep.sup_pid)
            except ProcessLookupError:
                return False
            except OSError:  # ENOSYS: a kernel older than 5.3
                pidfd = None
        # A re-attached supervisor must still be the recorded one (the fd now pins it).
        if rep.sup_ticks and not rr.is_alive(rep.sup_pid, rep.sup_ticks):
            if pidfd is not None:
                os.close(pidfd)
            return False
        if pidfd is None:
            self._polled.add(rep)
            self._ensure_poller()
        else:
            rep.pidfd = pidfd
            asyncio.get_running_loop().add_reader(pidfd, self._supervisor_exited, rep)
        return True

    def _unwatch(self, rep: _Replica) -> None:
        if rep.pidfd is not None:
            asyncio.get_running_loop().remove_reader(rep.pidfd)
            os.close(rep.pidfd)
            rep.pidfd = None
        self._polled.discard(rep)

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        """Fallback exit detection where pidfds are not available."""
        while self._polled:
            await asyncio.sleep(POLL_INTERVAL)
            for rep in list(self._polled):
                if not self._supervisor_alive(rep):
                    self._supervisor_exited(rep)

    def _supervisor_alive(self, rep: _Replica) -> bool:
        proc = _children.get(rep.sup_pid)
        if proc is not None:
            return proc.poll() is None
        return rr.is_alive(rep.sup_pid, rep.sup_ticks)

    def _supervisor_exited(self, rep: _Replica) -> None:
        if rep.done:
            return
        rep.done = True
        self._unwatch(rep)
        _cancel(rep)
        _reap(rep.sup_pid)
        if self._replicas.get(rep.key) is rep:
            del self._replicas[rep.key]
        group = (rep.key.job_id, rep.key.attempt)
        siblings = self._attempts.get(group, [])
        if rep in siblings:
            siblings.remove(rep)
            if not siblings:
                del self._attempts[group]
        if rep.cgroup is not None:
            with contextlib.suppress(OSError):
                rep.cgroup.rmdir()
        event = self._final_event(rep.key, rep.run_dir, rep.started_at)
        if not rep.silent:
            self._queue.put_nowait(event)

    def _final_event(
        self, key: ReplicaKey, run_dir: Path, started_at: float | None
    ) -> ReplicaExited | ReplicaLost:
        """What happened to a replica whose supervisor is gone."""
        records = rr.read_records(run_dir)
        started, done = records.started, records.exit
        if done is not None:
            return ReplicaExited(key, done.code, done.time, started.time if started else started_at)
        return ReplicaLost(key, "SupervisorLost", rr.kill_orphan(run_dir, started))

    # -- stop ---------------------------------------------------------------------------

    def _attempt(self, job_id: str, attempt: int) -> list[_Replica]:
        known = self._attempts.get((job_id, attempt))
        if known is not None:
            return list(known)
        # Not started by this instance and not recovered: whatever still runs on disk.
        attempt_dir = self._run_dir(job_id, attempt, "")
        if attempt_dir is None or not attempt_dir.is_dir():
            return []
        found = []
        with os.scandir(attempt_dir) as entries:
            names = [entry.name for entry in entries if entry.is_dir()]
        for name in names:
            task, _, index = name.rpartition("-")
            if task and index.isdigit():
                key = ReplicaKey(job_id, attempt, task, int(index))
                if isinstance(self._recover_replica(key, {}), ReplicaStarted):
                    found.append(self._replicas[key])
        return found

    def _stop_replica(self, rep: _Replica, grace: float, loop: asyncio.AbstractEventLoop) -> None:
        if rep.done:
            return
        if grace <= 0:
            self._signal(rep, signal.SIGKILL)
            return
        if not rep.stopping:
            rep.stopping = True
            self._signal(rep, signal.SIGTERM)
        deadline = loop.time() + grace
        if deadline < rep.kill_at:  # a later stop may shorten the grace, never lengthen it
            rep.kill_at = deadline
            rep.timers.append(loop.call_at(deadline, self._signal, rep, signal.SIGKILL))

    def _signal(self, rep: _Replica, sig: signal.Signals) -> None:
        if rep.done:
            return
        if rep.job is None:
            rep.job = rr.read_started(rep.run_dir)
        if rep.job is None:  # not launched yet: its supervisor is about to
            loop = asyncio.get_running_loop()
            rep.timers.append(loop.call_later(RETRY_SIGNAL, self._signal, rep, sig))
            return
        rr.signal_job(rep.job, sig)

    # -- recover ------------------------------------------------------------------------

    def _recover_replica(self, key: ReplicaKey, scan: dict[str, tuple[int, int]]) -> ExecutorEvent:
        """``scan``: live supervisors by run dir, filled on first need (once per recover)."""
        rep = self._replicas.get(key)
        if rep is not None and not rep.done:
            return ReplicaStarted(key, rep.sup_pid, rep.started_at)
        run_dir = self._run_dir(key.job_id, key.attempt, key.replica)
        if run_dir is None:
            return ReplicaLost(key, "NotStarted", "the job id cannot name a run directory")
        records = rr.read_records(run_dir)
        sup = records.supervisor
        if sup is None and records.exit is None:
            if not run_dir.is_dir():
                return ReplicaLost(key, "NotStarted", f"no run directory {run_dir}")
            # Spawned just before a crash, the supervisor may not have written its record
            # yet: a live one must not be reported safe to run again.
            if not scan:
                scan.update(rr.live_supervisors(SUPERVISOR_SCRIPT))
                scan.setdefault("", (0, 0))  # scanned, even if nothing was found
            pid, ticks = scan.get(str(run_dir), (0, 0))
            if not pid:
                return ReplicaLost(key, "NotStarted", f"no supervisor record in {run_dir}")
            sup = rr.SupervisorRecord(pid, ticks, self._clock())
        if sup is not None and records.exit is None and rr.is_alive(sup.pid, sup.ticks):
            started = records.started
            rep = _Replica(key, run_dir, sup.pid, sup.ticks, started.time if started else sup.time)
            rep.job = started
            if self._watch(rep):
                self._register(rep)
                return ReplicaStarted(key, sup.pid, rep.started_at)
        if sup is not None:
            _reap(sup.pid)  # our own zombie when an earlier instance in this process spawned it
        return self._final_event(key, run_dir, sup.time if sup else None)

    # -- helpers ------------------------------------------------------------------------

    def _run_dir(self, job_id: str, attempt: int, replica: str) -> Path | None:
        for part in (job_id, replica):
            if "/" in part or "\0" in part or part in (".", ".."):
                return None
        if not job_id or attempt < 0:
            return None
        return self._runs_dir / job_id / str(attempt) / replica

    def _finished(self, job_id: str, attempt: int, replica: str, run_dir: Path) -> bool:
        """Whether a replica will write no more output."""
        if self._closed:
            return True
        task, _, index = replica.rpartition("-")
        if index.isdigit():
            rep = self._replicas.get(ReplicaKey(job_id, attempt, task, int(index)))
            if rep is not None:
                return rep.done
        return rr.finished(run_dir)


def _cancel(rep: _Replica) -> None:
    for timer in rep.timers:
        timer.cancel()
    rep.timers.clear()
