"""The background runtime: one control loop that admits, starts, stops and finishes jobs.

Each pass (woken by a submit, a stop, an executor event other than the start of its own
launch, or a timer):
1. apply executor events: replica exits decide attempt outcomes (``pier.attempts``);
2. read a snapshot and run the policy (pure: snapshot in, decisions out);
3. record the policy's preemptions and send their stops (SIGTERM, SIGKILL after the grace
   period, as for a user's stop); a victim returns to Pending once all its replicas exited;
4. claim admissions in the store, start them on the executor, mark them Running;
5. send stops for jobs whose stop was requested.
A beneficiary of a preemption never starts on a victim's capacity while the victim holds it:
the victim stays in the snapshot (as terminating) until it has exited, so the policy admits
the beneficiary in a later pass.
Store work runs in a worker thread, one short transaction at a time, never across an
executor call. A single control task orders all writes, so an exit can never overtake the
``Running`` transition of the same attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection

from pier.attempts import AttemptState, Outcome
from pier.executors.base import (
    Executor,
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ProcessGroup,
    ProcessReporter,
    ReplicaExited,
    ReplicaLost,
    ReplicaStarted,
    ReplicaUnreachable,
    StartError,
)
from pier.scheduler.types import PendingInfo, Policy
from pier.services import execution
from pier.services.snapshot import CycleInputs, SpecCache, load_snapshot, service_histories
from pier.services.unreachable import mark_unreachable
from pier.store.db import Database

__all__ = ["Runtime"]

log = logging.getLogger("pier.runtime")
R = TypeVar("R")

MAX_STARTS_PER_PASS = 128
REST_CAP = 0.25
HOUSEKEEPING_SECONDS = 5.0
HISTORY_SECONDS = 30.0
"""How often finished jobs' service is read again for a policy that learns from it."""
HISTORY_JOBS = 1_000
"""Finished jobs per project whose service such a policy sees."""


def _blocks(info: PendingInfo) -> bool:
    """A pending job others must not overtake: it waits for preempted capacity, or holds
    nodes (``QuotaPolicy``'s bounded backfill)."""
    return info.reason == "Reclaiming" or "holds capacity" in info.message


class Runtime:
    def __init__(
        self,
        db: Database,
        executor: Executor,
        policy: Policy,
        *,
        clock: Callable[[], float],
        interval: float = 1.0,
    ) -> None:
        self._db = db
        self._executor = executor
        self._policy = policy
        self._clock = clock
        self._interval = interval
        self._specs = SpecCache()
        self._attempts: dict[tuple[str, int], AttemptState] = {}
        self._stops_sent: set[tuple[str, int]] = set()
        self._pending_info: dict[str, PendingInfo] = {}
        self._blocking: set[str] = set()
        """Pending jobs that reclaim capacity or hold nodes (see ``run_pass``)."""
        self._events: asyncio.Queue[ExecutorEvent] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_housekeeping = 0.0
        self._full_pass_due = True
        self._last_full_pass = 0.0
        self._submitted: set[str] = set()
        self._scheduling_seconds = 0.0
        """Time the last pass spent reading its snapshot and running the policy."""
        self.passes = 0
        self._histories: dict[str, tuple[float, ...]] | None = (
            {} if getattr(policy, "learns_from_history", False) else None
        )
        """Finished jobs' service per project, for a policy that learns from it; read again
        at most every ``HISTORY_SECONDS``."""
        self._histories_at = -math.inf

    # -- the handle request handlers use (services.context.SchedulerHandle) --

    def wake(self, submitted: str | None = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._on_wake(submitted)
        else:
            loop.call_soon_threadsafe(self._on_wake, submitted)

    def _on_wake(self, submitted: str | None) -> None:
        if submitted is None:
            self._full_pass_due = True
        else:
            self._submitted.add(submitted)
        self._wake.set()

    def pending_info(self, job_id: str) -> PendingInfo | None:
        return self._pending_info.get(job_id)

    def pending_all(self) -> dict[str, PendingInfo]:
        """A copy of every pending job's explanation (call on the loop's thread)."""
        return dict(self._pending_info)

    def nodes(self) -> Sequence[NodeInfo]:
        return self._executor.capacity()

    def logs(
        self, job_id: str, attempt: int, replica: str, *, follow: bool
    ) -> AsyncIterator[bytes]:
        return self._executor.logs(job_id, attempt, replica, follow=follow)

    def job_processes(self, job_id: str, attempt: int) -> Sequence[ProcessGroup] | None:
        if not isinstance(self._executor, ProcessReporter):
            return None
        return self._executor.job_processes(job_id, attempt)

    # -- lifecycle --

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._recover()
        self._tasks = [
            asyncio.create_task(self._pump(), name="pier-executor-events"),
            asyncio.create_task(self._control(), name="pier-control-loop"),
        ]
        self._wake.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # A task that swallows one cancel (a library's race) is cancelled again.
            while not task.done():
                await asyncio.wait({task}, timeout=1.0)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                task.result()
        self._tasks = []
        await self._executor.close()

    async def _recover(self) -> None:
        """Re-attach to what ran while the server was down; record what ended meanwhile."""
        launches = await asyncio.to_thread(self._read, execution.active_launches, self._specs)
        for launch in launches:
            state = AttemptState(launch.job_id, launch.attempt, launch.spec, recovered=True)
            self._attempts[(launch.job_id, launch.attempt)] = state
        for event in await self._executor.recover(launches):
            self._events.put_nowait(event)
        log.info("recovered %d placed job attempt(s)", len(launches))

    # -- the loop --

    async def _pump(self) -> None:
        async for event in self._executor.events():
            self._events.put_nowait(event)
            if isinstance(event, ReplicaStarted):
                state = self._attempts.get((event.key.job_id, event.key.attempt))
                if state is not None and not state.recovered:
                    continue  # the start of our own launch: no news until it ends
            self._wake.set()

    async def _control(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that lands
            # as the event is set, and close() then waits on this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            self._scheduling_seconds = 0.0
            try:
                await self.run_pass()
            except Exception:
                log.exception("control loop pass failed; retrying")
                await asyncio.sleep(0.5)
            # Rest twice as long as the pass spent scheduling (snapshot + policy; at most
            # REST_CAP): submits that arrive meanwhile are handled together, and scheduling
            # stays a bounded share of the CPU however long the queue grows, while a quiet
            # server still reacts in ms. Starting and recording jobs is not counted: it is
            # the work itself (a rest after a pass that started 100 jobs held the loop idle
            # for 2/3 of the time while a backlog waited).
            await asyncio.sleep(min(2 * self._scheduling_seconds, REST_CAP))

    async def run_pass(self) -> None:
        """One pass. A full pass considers every pending job; when the only news since the
        last one is new submits, an incremental pass considers just those: capacity has
        only shrunk since, so the jobs that waited then still cannot start (a full pass
        runs on every exit, stop, change, and at least every ``interval``)."""
        self.passes += 1
        if await self._apply_events():
            self._full_pass_due = True
        now = self._clock()
        full = self._full_pass_due or now - self._last_full_pass >= self._interval
        submitted, self._submitted = self._submitted, set()
        self._full_pass_due = False
        if full:
            self._last_full_pass = now
        if not full:
            # Jobs that reclaim or hold nodes come first: a new job must not take the
            # capacity they wait for, so an incremental pass sees them too.
            submitted |= self._blocking
        scheduling = time.perf_counter()
        inputs = await asyncio.to_thread(self._read, self._load, None if full else submitted)
        # Off the event loop: a full pass over a long queue takes tens of ms of CPU, and
        # requests would wait behind it (the GIL still switches every few ms).
        decisions = await asyncio.to_thread(self._policy.decide, inputs.snapshot)
        self._scheduling_seconds = time.perf_counter() - scheduling
        if full:
            self._pending_info = decisions.pending
            self._blocking = {j for j, info in decisions.pending.items() if _blocks(info)}
        else:
            self._pending_info.update(decisions.pending)
            for job_id, info in decisions.pending.items():
                if _blocks(info):
                    self._blocking.add(job_id)
                else:
                    self._blocking.discard(job_id)
        if decisions.fail:
            await asyncio.to_thread(self._write, execution.fail_unschedulable, decisions.fail, now)
        if decisions.preempt:
            stops = await asyncio.to_thread(
                self._write, execution.request_preemption, decisions.preempt, inputs, now
            )
            await self._send(stops)
        admit = decisions.admit[:MAX_STARTS_PER_PASS]
        if len(decisions.admit) > len(admit):
            self._wake.set()
        if admit:
            launches = await asyncio.to_thread(self._write, execution.claim, admit, inputs, now)
            await self._start(launches)
        await self._send_stops(inputs)
        if now - self._last_housekeeping >= HOUSEKEEPING_SECONDS:
            self._last_housekeeping = now
            expired = await asyncio.to_thread(self._read, execution.find_expired, now)
            if expired:
                await asyncio.to_thread(self._write, execution.expire, expired, now)

    def _load(self, conn: Connection, only_pending: set[str] | None) -> CycleInputs:
        now = self._clock()
        if self._histories is not None and now - self._histories_at >= HISTORY_SECONDS:
            self._histories = service_histories(conn, HISTORY_JOBS)
            self._histories_at = now
        return load_snapshot(
            conn, self._executor.capacity(), self._specs, now, only_pending, self._histories
        )

    async def _start(self, launches: Sequence[LaunchRequest]) -> None:
        started: list[LaunchRequest] = []
        failed: list[tuple[LaunchRequest, str]] = []
        for launch in launches:
            try:
                await self._executor.start(launch)
            except StartError as exc:
                failed.append((launch, str(exc)))
                continue
            self._attempts[(launch.job_id, launch.attempt)] = AttemptState(
                launch.job_id, launch.attempt, launch.spec
            )
            started.append(launch)
        await asyncio.to_thread(self._write, execution.mark_started, started, failed, self._clock())

    async def _send_stops(self, inputs: CycleInputs) -> None:
        await self._send(inputs.to_stop)

    async def _send(self, stops: Sequence[tuple[str, int, float]]) -> None:
        for job_id, attempt, grace in stops:
            if (job_id, attempt) in self._stops_sent:
                continue
            self._stops_sent.add((job_id, attempt))
            await self._executor.stop(job_id, attempt, grace)

    async def _apply_events(self) -> bool:
        """Apply queued executor events; True when any attempt ended (capacity changed)."""
        decided: list[tuple[AttemptState, Outcome]] = []
        reattached: list[AttemptState] = []
        unreachable: dict[tuple[str, int], tuple[str, int, str]] = {}
        while not self._events.empty():
            event = self._events.get_nowait()
            key = (event.key.job_id, event.key.attempt)
            state = self._attempts.get(key)
            if state is None or state.outcome is not None:
                continue  # an attempt already decided (or unknown): late news changes nothing
            replica = event.key.replica
            if isinstance(event, ReplicaUnreachable):
                # A remote executor lost sight of it: Unknown until a ReplicaStarted
                # re-attaches it (as after a restart) or its end arrives.
                state.recovered = True
                unreachable[key] = (state.job_id, state.attempt, event.message)
                continue
            if isinstance(event, ReplicaStarted):
                if state.recovered and state not in reattached:
                    state.started_at = event.started_at
                    reattached.append(state)
                continue
            if isinstance(event, ReplicaExited):
                state.record_exit(replica, event.exit_code, at=event.finished_at)
            elif isinstance(event, ReplicaLost):
                if event.reason in ("NotStarted", "PlatformLost"):
                    state.not_started.add(replica)
                    if event.reason == "PlatformLost":
                        state.platform_failure = event.message
                else:
                    state.record_exit(replica, None, lost=event.message)
            if key in self._stops_sent and state.live:
                # Stopping (by its user or a preemption): its capacity is free only once
                # every replica has exited, so the outcome waits for the last one.
                continue
            outcome = state.decide()
            if outcome is not None:
                decided.append((state, outcome))
        if unreachable:
            lost = list(unreachable.values())
            await asyncio.to_thread(self._write, mark_unreachable, lost, self._clock())
        if not decided and not reattached:
            return False
        now = self._clock()
        if reattached:
            await asyncio.to_thread(self._write, execution.mark_reattached, reattached, now)
        await asyncio.to_thread(self._write, execution.apply_outcomes, decided, now)
        for state, _ in decided:
            key = (state.job_id, state.attempt)
            if state.live:
                # The attempt is decided; its other replicas must not keep the GPUs.
                await self._executor.stop(state.job_id, state.attempt, 0.0)
            del self._attempts[key]
            self._stops_sent.discard(key)
        self._wake.set()
        return bool(decided)

    # -- store helpers (run in a worker thread) --

    def _read(self, fn: Callable[..., R], *args: object) -> R:
        with self._db.read() as conn:
            return fn(conn, *args)

    def _write(self, fn: Callable[..., R], *args: object) -> R:
        with self._db.write() as conn:
            return fn(conn, *args)
