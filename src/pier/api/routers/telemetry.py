"""Job telemetry: ``GET /v1/jobs/{ref}/telemetry`` streams usage samples as NDJSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from pier.api.deps import Caller, Context
from pier.services import telemetry
from pier.services.context import ServiceContext

router = APIRouter(prefix="/v1/jobs", tags=["telemetry"])

NDJSON = "application/x-ndjson"


@router.get("/{ref}/telemetry", response_class=StreamingResponse)
async def job_telemetry(
    ref: str,
    ctx: Context,
    caller: Caller,
    project: Annotated[str | None, Query(max_length=63)] = None,
    interval: Annotated[float, Query(ge=telemetry.MIN_INTERVAL, le=telemetry.MAX_INTERVAL)] = 1.0,
    follow: bool = True,
) -> StreamingResponse:
    """One JSON object (JobTelemetryView) per line, every ``interval`` seconds while the job
    runs; waits while it is pending; ends when it has ended (or after one sample without
    ``follow``)."""
    job_id = await run_in_threadpool(telemetry.find_job, ctx, caller, ref, project)
    return StreamingResponse(_lines(ctx, job_id, interval, follow), media_type=NDJSON)


async def _lines(
    ctx: ServiceContext, job_id: str, interval: float, follow: bool
) -> AsyncIterator[bytes]:
    async for sample in telemetry.telemetry_stream(ctx, job_id, interval=interval, follow=follow):
        yield sample.model_dump_json().encode() + b"\n"
