"""Collects the submits that one process's event loop receives together and hands them to
``services.submit_batch`` as one batch (group commit).

A submit request validates its spec, queues it and waits. The writer task is started by the
first submit that finds none running; it first yields, so that every request the loop
already has in hand (all that arrived in the same loop iteration) can queue too, then writes
the queue as one transaction and answers each request from its own outcome; what queued
meanwhile is the next batch. Nothing is answered before its transaction committed. A lone
submit takes the same path as before batching (``submit_job``'s own transaction).
"""

from __future__ import annotations

import asyncio

from pier.api.render import call
from pier.models import JobView
from pier.services.context import Principal, ServiceContext
from pier.services.submit_batch import Outcome, submit_batch
from pier.services.submits import validate_for_executor
from pier.spec import JobSpec

__all__ = ["MAX_BATCH", "SubmitBatcher"]

MAX_BATCH = 64
"""At most this many submits per transaction (a bound on the time one holds the lock)."""

_Waiting = tuple[Principal, JobSpec, "asyncio.Future[JobView]"]


class SubmitBatcher:
    """One per app (process)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, caller: Principal, spec: JobSpec) -> JobView:
        validate_for_executor(self._ctx, spec)  # invalid specs fail here, never queued
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JobView] = loop.create_future()
        self._queue.append((caller, spec, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="pier-submit-writer")
        return await future

    async def _write(self) -> None:
        batch: list[_Waiting] = []
        try:
            await asyncio.sleep(0)  # let the requests already in hand queue too
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    outcomes = await call(
                        self._ctx, submit_batch, self._ctx, [(c, s) for c, s, _ in batch]
                    )
                except Exception as exc:  # the database failed: every submit of it fails
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                    _answer(future, outcome)
        finally:
            self._writer = None
            for _, _, future in [*batch, *self._queue]:  # unanswered only when cancelled
                if not future.done():
                    future.cancel()
            self._queue = []


def _answer(future: asyncio.Future[JobView], outcome: Outcome) -> None:
    if future.done():  # its request was cancelled meanwhile
        return
    if isinstance(outcome, JobView):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)
