"""The Ray executor: every admitted replica a Ray job submission on a remote Ray cluster.

pier keeps deciding (quotas, order, placement); Ray runs. The executor talks to the
cluster's dashboard over HTTP only (no ``ray.init()`` in the server): Ray's own
``JobSubmissionClient`` for submit, status, stop and logs, and the dashboard's state API
(``/api/v0/nodes``) for the inventory. Translation rules: :mod:`pier.executors.ray_mapping`.

- Inventory: refreshed every ``nodes_interval`` seconds, so nodes that join or leave change
  what the scheduler places on. While the cluster is unreachable the inventory is empty
  (nothing new is admitted) and running jobs keep their capacity.
- Start: all replicas of an attempt are submitted back to back (a gang goes together); if
  one is refused, those already submitted are stopped and the start fails. A replica placed
  on a node that has just left is reported ``PlatformLost`` (requeued).
- Watch: one task polls the attempts' Ray jobs (``get_job_info`` each, or one ``list_jobs``
  when many run): every ``poll_interval`` while few run, less often as more do; a replica
  just started or stopped sooner, every ~3 % of its age (:mod:`pier.executors.ray_schedule`).
  SUCCEEDED -> exit 0, FAILED -> Ray's driver exit code, STOPPED -> 143; a job Ray lost with
  its supervisor actor (node died) -> requeued.
- Faults: when the dashboard cannot be reached, every watched replica is reported
  ``ReplicaUnreachable`` (the job shows ``Unknown`` with the reason) and re-checked every
  second. Found again: re-attached. Gone (Ray loses its jobs with its head): ``PlatformLost``,
  so pier requeues it without counting against the backoff limit.
- Restart: ``recover`` finds every placed attempt's Ray jobs by submission id.
- Stop: Ray's stop (SIGTERM, then SIGKILL after the cluster's ``RAY_JOB_STOP_WAIT_TIME_S``;
  pier's per-job grace cannot be passed to Ray). Ray keeps a stopped job that never got
  resources PENDING for many minutes: pier reports it stopped after the grace period.
- Logs: Ray's combined driver log, polled for ``follow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from ray.job_submission import JobDetails

from pier.executors.base import (
    ExecutorEvent,
    LaunchRequest,
    NodeInfo,
    ReplicaExited,
    ReplicaKey,
    ReplicaLost,
    ReplicaStarted,
    ReplicaUnreachable,
    StartError,
)
from pier.executors.ray_client import Missing, RayJobs, unreachable
from pier.executors.ray_mapping import (
    Pin,
    RayNodes,
    ReplicaSubmission,
    nodes_from_ray,
    outcome_of,
    replica_submission,
    submission_id,
)
from pier.executors.ray_schedule import FEW, LIST_THRESHOLD, poll_intervals

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)
R = TypeVar("R")

UNREACHABLE_INTERVAL = 1.0
FOLLOW_INTERVAL = 0.5
MISSING_PATIENCE = 30.0  # a followed replica may be claimed a moment before it is submitted
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


@dataclass(slots=True, eq=False)
class _Replica:
    key: ReplicaKey
    sid: str
    started_at: float
    watch_from: float = 0.0
    """Loop time its watch (re)started: submitted, recovered or stopped (see ``_due``)."""
    polled_at: float = 0.0
    unreachable: bool = False
    stop_at: float | None = None
    stop_grace: float = 0.0
    stop_sent: bool = False
    done: bool = False


class RayExecutor:
    """Runs replicas as Ray jobs on the cluster whose dashboard is ``address``."""

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        poll_interval: float = 0.1,
        nodes_interval: float = 5.0,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._address = address.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._poll_interval = poll_interval
        self._nodes_interval = nodes_interval
        self._timeout = request_timeout
        self._clock = clock
        # Ray's client is synchronous: its calls run here, never in the loop's default pool
        # (which the store's work uses), so a slow head cannot starve the server.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pier-ray")
        self._jobs = RayJobs(self._address, self._headers, request_timeout)
        self._http = httpx.AsyncClient(
            base_url=self._address, headers=self._headers, timeout=request_timeout
        )
        self._inventory = RayNodes((), {})
        self._reachable = True
        self._replicas: dict[ReplicaKey, _Replica] = {}
        self._queue: asyncio.Queue[ExecutorEvent | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._last_poll = 0.0
        self._list_due = 0.0
        self._closed = False

    # -- protocol -----------------------------------------------------------------------

    def capacity(self) -> Sequence[NodeInfo]:
        return self._inventory.nodes if self._reachable else ()

    async def recover(self, active: Sequence[LaunchRequest]) -> Sequence[ExecutorEvent]:
        await self._refresh_nodes()
        replicas = [
            self._register(ReplicaKey(launch.job_id, launch.attempt, p.task, p.index))
            for launch in active
            for p in launch.placements
        ]
        events: list[ExecutorEvent] = []
        if replicas:
            try:
                found = await self._fetch(replicas)
            except Exception as exc:  # whatever it is, the watcher keeps looking
                log.warning("recovering from the Ray cluster at %s: %s", self._address, exc)
                self._reachable = False
                for rep in replicas:
                    rep.unreachable = True
                    events.append(ReplicaUnreachable(rep.key, self._unreachable_message(exc)))
            else:
                for rep in replicas:
                    rep.unreachable = True  # found running: reported as started (re-attached)
                    event = self._reconcile(rep, found.get(rep.sid), recovering=True)
                    if event is not None:
                        events.append(event)
        self._ensure_watcher()
        return events

    async def start(self, launch: LaunchRequest) -> None:
        if self._closed:
            raise StartError("the executor is closed")
        if not launch.placements:
            raise StartError(f"job {launch.job_id}: no replicas placed")
        roles = {task.name: task for task in launch.spec.tasks}
        inventory = self._inventory
        submissions: list[ReplicaSubmission] = []
        gone: list[str] = []
        for p in launch.placements:
            what = f"job {launch.job_id} replica {p.task}-{p.index}"
            task = roles.get(p.task)
            if task is None:
                raise StartError(f"{what}: the job has no task role '{p.task}'")
            if not task.argv:
                raise StartError(f"{what}: no command to run")
            pin = inventory.pins.get(p.node)
            if pin is None:
                gone.append(p.node)
                pin = Pin("")
            submissions.append(replica_submission(launch, p, task, pin))
        self._ensure_watcher()
        if gone:
            # The node left between the scheduler's snapshot and now: nothing ran; requeue.
            message = f"node {', '.join(sorted(set(gone)))} left the Ray cluster before the start"
            for sub in submissions:
                self._queue.put_nowait(ReplicaLost(sub.key, "PlatformLost", message))
            return
        try:
            await self._call(self._jobs.submit_all, submissions)
        except StartError:
            raise
        except Exception as exc:
            if not unreachable(exc):
                raise StartError(f"job {launch.job_id}: Ray refused the job: {exc}") from exc
            # Whether Ray got them is unknown: watch them as unreachable; the next look at
            # the cluster decides (running: re-attached; unknown to Ray: requeued).
            now = self._clock()
            for sub in submissions:
                rep = self._register(sub.key, now)
                self._queue.put_nowait(ReplicaStarted(sub.key, 0, now))
                rep.unreachable = True
                self._queue.put_nowait(ReplicaUnreachable(sub.key, self._unreachable_message(exc)))
            self._mark_unreachable(exc)
            return
        now = self._clock()
        for sub in submissions:
            self._register(sub.key, now)
            self._queue.put_nowait(ReplicaStarted(sub.key, 0, now))
        self._wake.set()

    async def stop(self, job_id: str, attempt: int, grace_seconds: float) -> None:
        now = self._clock()
        reps = [
            r
            for r in self._replicas.values()
            if r.key.job_id == job_id and r.key.attempt == attempt and not r.done
        ]
        watch_from = asyncio.get_running_loop().time()
        for rep in reps:
            rep.watch_from = rep.polled_at = watch_from  # its end comes soon: look often
            if rep.stop_at is None:
                rep.stop_at, rep.stop_grace = now, grace_seconds
        if reps:
            await self._send_stops(reps)
        self._wake.set()

    async def _send_stops(self, reps: Sequence[_Replica]) -> None:
        try:
            await self._call(self._jobs.stop_all, [r.sid for r in reps])
        except Exception as exc:  # the watcher tries again while they run
            log.warning("stopping Ray jobs %s: %s", ", ".join(r.sid for r in reps), exc)
            return
        for rep in reps:
            rep.stop_sent = True

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
        task, _, index = replica.rpartition("-")
        if not task or not index.isdigit():
            return
        sid = submission_id(ReplicaKey(job_id, attempt, task, int(index)))
        position = max(0, offset)
        waited = 0.0
        while True:
            # Decided before reading: whatever was written before the end is then read.
            state = await self._log_state(sid) if follow else "finished"
            if state == "missing":  # claimed but not submitted yet, or lost with the head
                if waited >= MISSING_PATIENCE:
                    return
                waited += FOLLOW_INTERVAL
                await asyncio.sleep(FOLLOW_INTERVAL)
                continue
            text = await self._read_logs(sid)
            if text is not None:
                data = text.encode()
                if len(data) > position:
                    yield data[position:]
                    position = len(data)
            if state == "finished":
                return
            await asyncio.sleep(FOLLOW_INTERVAL)

    async def close(self) -> None:
        """Stop watching; the Ray jobs keep running (recover re-attaches to them)."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._http.aclose()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._jobs.close()
        self._queue.put_nowait(None)

    # -- watching -----------------------------------------------------------------------

    def _register(self, key: ReplicaKey, started_at: float = 0.0) -> _Replica:
        rep = self._replicas.get(key)
        if rep is None or rep.done:
            now = asyncio.get_running_loop().time()
            rep = _Replica(key, submission_id(key), started_at, watch_from=now, polled_at=now)
            self._replicas[key] = rep
        return rep

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="pier-ray-watch"
            )

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        next_nodes = loop.time() + self._nodes_interval
        while True:
            failed = False
            try:
                if loop.time() >= next_nodes or not self._reachable:
                    next_nodes = loop.time() + self._nodes_interval
                    await self._refresh_nodes()
                if self._reachable:
                    await self._poll()
            except Exception:
                log.exception("watching the Ray cluster at %s failed; retrying", self._address)
                failed = True
            if not self._reachable:
                interval = UNREACHABLE_INTERVAL
            elif failed:  # what was due is due again: not at once
                interval = self._poll_interval
            else:
                now = loop.time()
                interval = max(min(self._next_due(now), next_nodes) - now, 0.001)
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    def _base_interval(self, watched: int) -> float:
        """How often a replica is polled once it is no longer young: every
        ``poll_interval`` while few run, less often as each poll costs one request."""
        return self._poll_interval if watched <= FEW else 2.5 * self._poll_interval

    def _due(self, watched: Sequence[_Replica], now: float) -> list[tuple[_Replica, float]]:
        """Each watched replica with the loop time its next poll is due."""
        base = self._base_interval(len(watched))
        intervals = poll_intervals([now - r.watch_from for r in watched], base)
        return [
            (rep, now if rep.unreachable else rep.polled_at + interval)  # outage over: look
            for rep, interval in zip(watched, intervals, strict=True)
        ]

    def _next_due(self, now: float) -> float:
        watched = [r for r in self._replicas.values() if not r.done]
        if not watched:
            return math.inf
        if len(watched) > LIST_THRESHOLD:
            return self._list_due
        return min(at for _, at in self._due(watched, now))

    async def _refresh_nodes(self) -> None:
        try:
            response = await self._http.get("/api/v0/nodes", params={"limit": 10000})
            response.raise_for_status()
            nodes = response.json()["data"]["result"]["result"]
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, httpx.TransportError | httpx.HTTPStatusError):
                self._mark_unreachable(exc)
            else:
                log.warning("unexpected node list from Ray at %s: %s", self._address, exc)
            return
        self._inventory = nodes_from_ray(nodes)
        if not self._reachable:
            log.info("the Ray cluster at %s is reachable again", self._address)
            self._reachable = True

    async def _poll(self) -> None:
        watched = [r for r in self._replicas.values() if not r.done]
        if not watched:
            return
        now = asyncio.get_running_loop().time()
        if len(watched) > LIST_THRESHOLD:  # one list for all, every 0.5 s or more
            if now < self._list_due and not any(r.unreachable for r in watched):
                return
            polled = watched
        else:
            polled = [rep for rep, at in self._due(watched, now) if at <= now]
        if not polled:
            return
        await self._poll_these(polled, now)
        unsent = [r for r in polled if not r.done and r.stop_at is not None and not r.stop_sent]
        if unsent:  # a stop asked for while the cluster could not be reached
            await self._send_stops(unsent)

    async def _poll_these(self, polled: Sequence[_Replica], now: float) -> None:
        began = time.perf_counter()
        try:
            found = await self._fetch(polled)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._mark_unreachable(exc)
            return
        self._last_poll = time.perf_counter() - began
        self._list_due = now + max(5 * self._poll_interval, 2 * self._last_poll)
        for rep in polled:
            rep.polled_at = now
            if rep.done:  # decided meanwhile (a concurrent stop of a PENDING job)
                continue
            event = self._reconcile(rep, found.get(rep.sid))
            if event is not None:
                self._queue.put_nowait(event)

    async def _fetch(self, watched: Sequence[_Replica]) -> dict[str, JobDetails]:
        """The Ray jobs of ``watched`` that Ray knows, by submission id."""
        sids = [r.sid for r in watched]
        if len(sids) > LIST_THRESHOLD:
            wanted = set(sids)
            jobs = await self._call(self._jobs.list_jobs)
            return {j.submission_id: j for j in jobs if j.submission_id in wanted}
        return await self._call(self._jobs.infos, sids)

    def _reconcile(
        self, rep: _Replica, job: JobDetails | None, *, recovering: bool = False
    ) -> ExecutorEvent | None:
        """What Ray's view of one replica means now; None when nothing changed."""
        if job is None and recovering:  # claimed, but the server stopped before submitting
            return self._finish(
                ReplicaLost(rep.key, "NotStarted", f"Ray has no job {rep.sid}"), rep
            )
        if job is None:
            return self._finish(
                ReplicaLost(
                    rep.key,
                    "PlatformLost",
                    f"Ray no longer knows job {rep.sid} (its head restarted and lost its "
                    "jobs); requeued as a platform failure",
                ),
                rep,
            )
        status = str(job.status.value if hasattr(job.status, "value") else job.status)
        started = (job.start_time or 0) / 1000 or rep.started_at or self._clock()
        outcome = outcome_of(status, job.driver_exit_code, job.error_type, job.message or "")
        if outcome is not None:
            if outcome.lost is not None:
                return self._finish(ReplicaLost(rep.key, "PlatformLost", outcome.lost), rep)
            assert outcome.exit_code is not None
            ended = (job.end_time or 0) / 1000 or self._clock()
            return self._finish(ReplicaExited(rep.key, outcome.exit_code, ended, started), rep)
        if (
            status == "PENDING"
            and rep.stop_at is not None
            and self._clock() - rep.stop_at >= rep.stop_grace
        ):
            # Ray keeps a stopped job that never got resources PENDING until its start
            # timeout; nothing of it runs, so it is stopped as far as pier is concerned.
            return self._finish(ReplicaExited(rep.key, 143, self._clock(), started), rep)
        if rep.unreachable:
            rep.unreachable = False
            return ReplicaStarted(rep.key, 0, started)
        return None

    def _finish(self, event: ExecutorEvent, rep: _Replica) -> ExecutorEvent:
        rep.done = True
        if self._replicas.get(rep.key) is rep:
            del self._replicas[rep.key]
        return event

    def _mark_unreachable(self, exc: BaseException) -> None:
        if not self._reachable:
            return
        self._reachable = False
        message = self._unreachable_message(exc)
        log.warning("%s", message)
        for rep in self._replicas.values():
            if not rep.done and not rep.unreachable:
                rep.unreachable = True
                self._queue.put_nowait(ReplicaUnreachable(rep.key, message))

    def _unreachable_message(self, exc: BaseException) -> str:
        return (
            f"the Ray cluster at {self._address} is unreachable "
            f"({type(exc).__name__}); re-checking every {UNREACHABLE_INTERVAL:g}s"
        )

    async def _log_state(self, sid: str) -> str:
        """``running`` (more output may come), ``finished`` or ``missing`` (Ray has no such
        job)."""
        if self._closed:
            return "finished"
        if any(rep.sid == sid and not rep.done for rep in self._replicas.values()):
            return "running"
        try:
            status = await self._call(self._jobs.status_of, sid)
        except Missing:
            return "missing"
        except Exception as exc:  # unreachable or answering errors: look again later
            log.debug("status of Ray job %s: %s", sid, exc)
            return "running"
        return "finished" if status in TERMINAL else "running"

    async def _read_logs(self, sid: str) -> str | None:
        try:
            return await self._call(self._jobs.logs_of, sid)
        except Exception as exc:  # Ray answers 500 while a job's driver has no log yet
            log.debug("logs of Ray job %s: %s", sid, exc)
            return None

    # -- Ray's synchronous client, in the executor's own threads ------------------------

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        # The request timeout bounds each HTTP call; this bounds a batch of them.
        async with asyncio.timeout(4 * self._timeout):
            return await loop.run_in_executor(self._pool, fn, *args)
