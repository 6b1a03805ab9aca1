"""The tenant job API in the Ray Jobs shape (seed 002), which the stock Ray
``JobSubmissionClient`` and ``ray job`` CLI use unchanged. Translation lives in
:mod:`pier.api.dialects.ray_jobs`; jobs in :mod:`pier.services.submissions`."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from pier.api.deps import Caller, Context
from pier.api.dialects import ray_jobs as dialect
from pier.api.errors import register_dialect_errors
from pier.api.render import call
from pier.errors import Invalid, PierError, Unauthenticated
from pier.services import accounts, packages, submissions
from pier.services.context import Principal, ServiceContext

__all__ = ["BODY_LIMITS", "register_errors", "router"]

router = APIRouter(tags=["ray-jobs"])
ERROR_PREFIXES = ("/api/version", "/api/jobs", "/api/packages")
BODY_LIMITS = {"/api/packages/": packages.MAX_PACKAGE_BYTES}
"""Uploads of a working_dir may be as large as Ray allows."""
MAX_LOG_BYTES = 16 * 1024 * 1024
POLL_SECONDS = 0.2


def register_errors(app: FastAPI) -> None:
    """Errors under these paths are JSON strings, which the Ray client prints as they are."""
    for prefix in ERROR_PREFIXES:
        register_dialect_errors(app, prefix, dialect.render_error)


def _tenant(request: Request | WebSocket) -> str | None:
    value = request.headers.get("x-tenant-id", "").strip()
    return value or None


def _ok(body: Any) -> Response:
    return JSONResponse(body, status_code=200)


@router.get("/api/version")
def version(caller: Caller) -> Response:
    return _ok(dialect.version_body())


async def _json_body(request: Request) -> object:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise Invalid("the body is not valid JSON", loc=["body"]) from None


@router.post("/api/jobs/")
@router.post("/api/jobs", include_in_schema=False)
async def submit_job(request: Request, ctx: Context, caller: Caller) -> Response:
    submission_id = ""
    try:
        body = await _json_body(request)
        submission_id = dialect.raw_submission_id(body)
        submission = dialect.parse_submission(body, request.headers)
        submission_id = submission.submission_id
        spec = dialect.to_spec(submission)
        view = await call(ctx, submissions.submit, ctx, caller, spec)
    except PierError as exc:
        raise dialect.submit_failed(submission_id, exc) from None
    return _ok({"job_id": view.submission_id, "submission_id": view.submission_id})


@router.get("/api/jobs/")
@router.get("/api/jobs", include_in_schema=False)
def list_jobs(request: Request, ctx: Context, caller: Caller) -> Response:
    views = submissions.list_all(ctx, caller, _tenant(request))
    return _ok([dialect.job_details(v) for v in views])


@router.get("/api/jobs/{job_id}")
def get_job(job_id: str, request: Request, ctx: Context, caller: Caller) -> Response:
    return _ok(dialect.job_details(submissions.get(ctx, caller, job_id, _tenant(request))))


@router.post("/api/jobs/{job_id}/stop")
def stop_job(job_id: str, request: Request, ctx: Context, caller: Caller) -> Response:
    return _ok({"stopped": submissions.stop(ctx, caller, job_id, _tenant(request))})


@router.delete("/api/jobs/{job_id}")
def delete_job(job_id: str, request: Request, ctx: Context, caller: Caller) -> Response:
    return _ok({"deleted": submissions.delete(ctx, caller, job_id, _tenant(request))})


@router.get("/api/jobs/{job_id}/logs")
async def job_logs(job_id: str, request: Request, ctx: Context, caller: Caller) -> Response:
    view, attempt, replica = await run_in_threadpool(
        submissions.log_target, ctx, caller, job_id, _tenant(request)
    )
    log = bytearray()
    if attempt:
        async for chunk in submissions.log_stream(ctx, view.id, attempt, replica, follow=False):
            log += chunk
            if len(log) > MAX_LOG_BYTES:  # keep the end, which says how it ended
                del log[: len(log) - MAX_LOG_BYTES]
    return _ok({"logs": log.decode("utf-8", errors="replace")})


@router.get("/api/packages/{protocol}/{package_name}")
def package_exists(
    protocol: str, package_name: str, request: Request, ctx: Context, caller: Caller
) -> Response:
    if packages.package_exists(ctx, caller, _tenant(request), protocol, package_name):
        return _ok({"exists": True})
    return Response(json.dumps(f"package {protocol}://{package_name} is not here"), 404)


@router.put("/api/packages/{protocol}/{package_name}")
async def upload_package(
    protocol: str, package_name: str, request: Request, ctx: Context, caller: Caller
) -> Response:
    await packages.store_package(
        ctx, caller, _tenant(request), protocol, package_name, request.stream()
    )
    return _ok({"uploaded": f"{protocol}://{package_name}"})


# -- log tailing (WebSocket) ----------------------------------------------------------------


async def _ws_principal(ctx: ServiceContext, websocket: WebSocket) -> Principal:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    cached = accounts.cached_principal(ctx, token.strip())
    if cached is not None:
        return cached
    return await run_in_threadpool(accounts.authenticate_token, ctx, token.strip())


async def _follow(
    ctx: ServiceContext, job_id: str, attempt: int, replica: str
) -> AsyncIterator[bytes]:
    """The replica's output from the start, across requeues, until the job has ended."""
    sent = 0

    async def read(follow: bool) -> AsyncIterator[bytes]:
        nonlocal sent
        skip = sent  # a stream starts at the beginning: skip what was sent already
        async for chunk in submissions.log_stream(ctx, job_id, attempt, replica, follow=follow):
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
            sent += len(chunk)
            yield chunk

    while True:
        if attempt:
            async for chunk in read(follow=True):
                yield chunk
        ended, current = await run_in_threadpool(submissions.progress, ctx, job_id)
        if current != attempt:  # placed at last, or requeued: a new attempt's log
            attempt, sent = current, 0
            continue
        if ended:
            if attempt:  # what was written after the follow stopped looking
                async for chunk in read(follow=False):
                    yield chunk
            return
        await asyncio.sleep(POLL_SECONDS)


async def _pump(websocket: WebSocket, chunks: AsyncIterator[bytes]) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            await websocket.send_text(text)
    rest = decoder.decode(b"", final=True)
    if rest:
        await websocket.send_text(rest)


@router.websocket("/api/jobs/{job_id}/logs/tail")
async def tail_job_logs(websocket: WebSocket, job_id: str) -> None:
    """TEXT frames of log from the beginning, then a 1000 close once the job has ended; a
    refused handshake answers with an HTTP status (401, 404), as Ray's does."""
    ctx: ServiceContext = websocket.app.state.ctx
    try:
        caller = await _ws_principal(ctx, websocket)
        view, attempt, replica = await run_in_threadpool(
            submissions.log_target, ctx, caller, job_id, _tenant(websocket)
        )
    except PierError as exc:
        await websocket.send_denial_response(
            dialect.render_error(exc.status_code, exc.code, exc.message, [])
        )
        return
    await websocket.accept()
    pump = asyncio.create_task(_pump(websocket, _follow(ctx, view.id, attempt, replica)))
    # The client sends nothing: a receive returns only when it goes away.
    gone = asyncio.create_task(websocket.receive())
    done, _ = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in (pump, gone):
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
    failures = [task.exception() for task in done]  # retrieved: a gone client is no error
    if pump in done and failures == [None]:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(1000)
