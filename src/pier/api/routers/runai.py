"""The Run:AI researcher REST dialect (seed 000): ``/api/job``. Translation lives in
:mod:`pier.api.dialects.runai`; this only reads, authenticates, calls services and renders.

``RA-USER`` names the user a job is submitted for; it never authenticates: the bearer token
does, and the header must name the token's user unless the token is an admin's."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from pier.api.deps import Caller, Context
from pier.api.dialects import runai
from pier.api.render import call
from pier.errors import PierError
from pier.models import JobView
from pier.services import delegation, jobs

router = APIRouter(prefix=runai.PREFIX, tags=["runai"])

RA_USER = "ra-user"


@router.post("")
async def submit_job(request: Request, ctx: Context, caller: Caller) -> Response:
    spec = runai.parse_submit(await request.body())
    user = request.headers.get(RA_USER, "").strip() or None  # empty: as if absent
    view = await call(ctx, delegation.submit_as, ctx, caller, user, spec)
    return JSONResponse(runai.submitted(view))


@router.get("")
def list_jobs(
    ctx: Context, caller: Caller, project: Annotated[str | None, Query(max_length=63)] = None
) -> Response:
    """Every job of ``project`` (every job the caller may see when it is omitted), newest
    first."""
    views: list[JobView] = []
    cursor: str | None = None
    while True:
        page = jobs.list_jobs(ctx, caller, project=project, limit=jobs.MAX_PAGE, cursor=cursor)
        views += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    return JSONResponse({"data": [runai.job_info(v) for v in views]})


@router.delete("")
async def delete_jobs(request: Request, ctx: Context, caller: Caller) -> Response:
    """Delete (stopping first if live) each ``{"name", "project"}``; one result per job, as
    Run:AI's ``JobActionStatus``."""
    results: list[dict[str, Any]] = []
    for ref in runai.parse_delete(await request.body()):
        try:
            await call(ctx, jobs.delete_job, ctx, caller, ref.name, ref.project)
            results.append({"name": ref.name, "ok": True})
        except PierError as error:
            failure = {"status": error.status_code, "message": error.message, "details": error.code}
            results.append({"name": ref.name, "ok": False, "error": failure})
    return JSONResponse(results)
