"""Jobs: submit, read, list, stop, delete, history, logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from pier.api.batching import SubmitBatcher
from pier.api.deps import Caller, Context
from pier.api.render import render
from pier.models import HistoryEntry, JobView, Page
from pier.services import jobs
from pier.services.context import ServiceContext
from pier.spec import JobSpec
from pier.status import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ProjectQuery = Annotated[str | None, Query(max_length=63)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobView)
async def submit_job(spec: JobSpec, request: Request, caller: Caller) -> Response:
    batcher: SubmitBatcher = request.app.state.submits  # group commit (pier.api.batching)
    return render(await batcher.submit(caller, spec), status.HTTP_201_CREATED)


@router.get("", response_model=Page[JobView])
def list_jobs(
    ctx: Context,
    caller: Caller,
    project: ProjectQuery = None,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    name: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=jobs.MAX_PAGE)] = jobs.DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    return render(
        jobs.list_jobs(
            ctx,
            caller,
            project=project,
            statuses=status or (),
            owner=owner,
            name=name,
            limit=limit,
            cursor=cursor,
        )
    )


@router.get("/{ref}", response_model=JobView)
def get_job(ref: str, ctx: Context, caller: Caller, project: ProjectQuery = None) -> Response:
    return render(jobs.get_job(ctx, caller, ref, project))


@router.get("/{ref}/history", response_model=list[HistoryEntry])
def job_history(
    ref: str, ctx: Context, caller: Caller, project: ProjectQuery = None
) -> list[HistoryEntry]:
    return jobs.job_history(ctx, caller, ref, project)


@router.post("/{ref}/stop", response_model=JobView)
def stop_job(ref: str, ctx: Context, caller: Caller, project: ProjectQuery = None) -> JobView:
    return jobs.stop_job(ctx, caller, ref, project)


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete_job(ref: str, ctx: Context, caller: Caller, project: ProjectQuery = None) -> Response:
    jobs.delete_job(ctx, caller, ref, project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{ref}/logs", response_class=StreamingResponse)
async def job_logs(
    ref: str,
    ctx: Context,
    caller: Caller,
    project: ProjectQuery = None,
    follow: bool = False,
    replica: Annotated[str | None, Query(max_length=128)] = None,
    attempt: Annotated[int | None, Query(ge=1)] = None,
) -> StreamingResponse:
    view, chosen_attempt, chosen_replica = await run_in_threadpool(
        jobs.resolve_log_target, ctx, caller, ref, project, replica, attempt
    )
    return StreamingResponse(
        _log_chunks(ctx, view, chosen_attempt, chosen_replica, follow and attempt is None),
        media_type="text/plain; charset=utf-8",
    )


async def _log_chunks(
    ctx: ServiceContext, view: JobView, attempt: int, replica: str, follow: bool
) -> AsyncIterator[bytes]:
    """A replica's output; with ``follow``, waits for the job to start, then streams until
    the attempt ends."""
    job_id = view.id
    while attempt == 0 and follow:
        await _sleep()
        refreshed = await run_in_threadpool(jobs.current_attempt, ctx, job_id)
        if refreshed is None:
            return
        attempt = refreshed
    if attempt == 0:
        return
    async for chunk in jobs.log_stream(ctx, job_id, attempt, replica, follow):
        yield chunk


async def _sleep() -> None:
    await asyncio.sleep(0.2)
