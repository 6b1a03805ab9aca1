"""Job telemetry: a stream of measured usage samples of a running job.

The job is looked up (and access-checked) once; then, every ``interval`` seconds while it
runs, its current attempt's processes (from the executor) are measured by a
:class:`~pier.executors.telemetry.UsageMeter` in a worker thread. A requeued job gets a new
meter for its new attempt. The stream waits while the job is pending and ends when the job
has ended (or after one sample without ``follow``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from pier.executors.telemetry import UsageMeter
from pier.models import JobTelemetryView
from pier.services import jobs as job_service
from pier.services.context import Principal, ServiceContext
from pier.status import TERMINAL, JobStatus
from pier.store.tables import jobs

__all__ = ["MAX_INTERVAL", "MIN_INTERVAL", "find_job", "telemetry_stream"]

MIN_INTERVAL = 0.2
MAX_INTERVAL = 60.0
PENDING_POLL = 0.2


@dataclass(frozen=True, slots=True)
class _State:
    status: JobStatus
    attempt: int
    devices: tuple[int, ...]
    shared: bool


def find_job(ctx: ServiceContext, caller: Principal, ref: str, project: str | None) -> str:
    """The id of a job the caller may see (NotFound otherwise)."""
    return job_service.get_job(ctx, caller, ref, project).id


def _state(ctx: ServiceContext, job_id: str) -> _State | None:
    with ctx.db.read() as conn:
        row = conn.execute(
            select(jobs.c.status, jobs.c.attempt, jobs.c.allocation).where(jobs.c.id == job_id)
        ).first()
    if row is None:
        return None
    placements: list[dict[str, Any]] = list(row.allocation or [])
    devices = sorted({int(d) for p in placements for d in p.get("devices", [])})
    shared = any(0 < float(p.get("gpu_fraction") or 0) < 1 for p in placements)
    return _State(JobStatus(row.status), int(row.attempt), tuple(devices), shared)


async def telemetry_stream(
    ctx: ServiceContext, job_id: str, *, interval: float, follow: bool
) -> AsyncIterator[JobTelemetryView]:
    interval = min(max(interval, MIN_INTERVAL), MAX_INTERVAL)
    meter: UsageMeter | None = None
    meter_attempt = 0
    while True:
        state = await asyncio.to_thread(_state, ctx, job_id)
        if state is None or state.status in TERMINAL:
            return
        if state.status is not JobStatus.RUNNING or state.attempt == 0:
            if not follow:
                return
            await asyncio.sleep(PENDING_POLL)  # not started yet, or requeued
            continue
        processes = ctx.scheduler.job_processes(job_id, state.attempt)
        if processes is None:
            return  # an executor that does not run jobs as processes here
        if not processes and follow:
            # launched a moment ago (no started record yet) or exited a moment ago (the
            # status follows): a sample of nothing would read as an idle job
            await asyncio.sleep(PENDING_POLL)
            continue
        if meter is None or meter_attempt != state.attempt:
            meter = UsageMeter(state.devices, shared=state.shared, clock=ctx.clock)
            meter_attempt = state.attempt
        sample = await asyncio.to_thread(meter.sample, processes)
        yield JobTelemetryView(
            timestamp=sample.timestamp,
            cpu=sample.cpu,
            memory=sample.memory,
            gpu_duty_cycle=sample.gpu_duty_cycle,
            gpu_memory=sample.gpu_memory,
            attempt=state.attempt,
            processes=sample.processes,
        )
        if not follow:
            return
        await asyncio.sleep(interval)
