"""OpenPAI REST server v1 (seed 004) under ``/api/v1``: parse, authenticate, call a service,
render in OpenPAI's shapes (:mod:`pier.api.dialects.openpai`). Every route but ``POST
/token`` (which exchanges a username and password for a token) needs a bearer token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.responses import JSONResponse

from pier.api.deps import Caller, Context
from pier.api.dialects import openpai as pai
from pier.api.dialects import openpai_views as pai_views
from pier.api.errors import register_dialect_errors
from pier.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from pier.services import accounts
from pier.services import openpai_support as support

__all__ = ["install", "router"]

router = APIRouter(prefix=pai.PREFIX, tags=["openpai"])


def install(app: FastAPI) -> None:
    """Serve the OpenPAI routes and answer their errors in OpenPAI's shape."""
    app.include_router(router)
    register_dialect_errors(app, pai.PREFIX, pai.render_error)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        return pai.form_body(raw)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise pai.invalid("the body is not valid JSON") from None


Body = Annotated[Any, Depends(_body)]


@contextmanager
def _job_errors(job_name: str) -> Iterator[None]:
    try:
        yield
    except NotFound:
        raise pai.OpenPaiError(404, "JobNotFound", f"could not find job {job_name}") from None
    except Forbidden as exc:
        raise pai.OpenPaiError(403, "ForbiddenUserError", exc.message) from None


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except Forbidden as exc:
        raise pai.OpenPaiError(401, "NotAuthorized", f"not authorized: {exc.message}") from None
    except NotFound as exc:
        if exc.loc[:2] == ["body", "projects"]:
            raise  # not a user: the route names it
        raise pai.OpenPaiError(404, "NoUserError", exc.message) from None
    except Conflict as exc:
        raise pai.OpenPaiError(409, "ConflictUserError", exc.message) from None


def _message(text: str, status_code: int = status.HTTP_200_OK) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status_code)


@router.post("/token")
def create_token(ctx: Context, body: Body) -> JSONResponse:
    req = pai.parse(pai.TokenRequest, body)
    try:
        token = accounts.create_token(
            ctx, req.username, req.password, name="openpai", expires_in=req.expiration
        )
    except Unauthenticated:
        raise pai.OpenPaiError(401, "AuthenticationFailed", "authentication failed") from None
    return JSONResponse(pai_views.token_view(token))


@router.put("/user")
def update_user(ctx: Context, caller: Caller, body: Body) -> JSONResponse:
    req = pai.parse(pai.UserUpdate, body)
    with _user_errors():
        support.put_user(
            ctx, caller, req.username, req.password, admin=req.admin, modify=req.modify
        )
    return _message("update successfully", status.HTTP_201_CREATED)


@router.delete("/user")
def remove_user(ctx: Context, caller: Caller, body: Body) -> JSONResponse:
    req = pai.parse(pai.UserDelete, body)
    with _user_errors():
        accounts.delete_user(ctx, caller, req.username)
    return _message("remove successfully")


@router.put("/user/{username}/virtualClusters")
def update_user_virtual_clusters(
    username: str, ctx: Context, caller: Caller, body: Body
) -> JSONResponse:
    req = pai.parse(pai.UserVirtualClusters, body)
    names = req.names
    try:
        with _user_errors():
            support.grant_virtual_clusters(ctx, caller, username, names)
    except NotFound as exc:  # a virtual cluster (the user is _user_errors' NoUserError)
        vc = names[int(exc.loc[-1])]
        raise pai.OpenPaiError(
            404, "NoVirtualClusterError", f"Virtual cluster {vc} is not found."
        ) from None
    return _message("update user virtual clusters successfully", status.HTTP_201_CREATED)


@router.get("/jobs")
def list_jobs(
    ctx: Context,
    caller: Caller,
    username: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    found = support.list_jobs(ctx, caller, username or None)
    return JSONResponse([pai_views.job_summary(view) for view in found])


@router.post("/jobs")
def submit_job(ctx: Context, caller: Caller, body: Body) -> JSONResponse:
    config = pai.parse(pai.JobConfig, body)
    spec = pai.job_spec(config, body, caller.name)
    try:
        support.submit_job(ctx, caller, spec, config.jobName)
    except Conflict as exc:
        raise pai.OpenPaiError(400, "JobUpdateError", f"job update error: {exc.message}") from None
    except Forbidden as exc:
        raise pai.OpenPaiError(403, "ForbiddenUserError", exc.message) from None
    except Invalid as exc:
        raise pai.invalid(exc.message) from None
    response = _message(f"update job {config.jobName} successfully", status.HTTP_201_CREATED)
    response.headers["Location"] = f"{pai.PREFIX}/jobs/{config.jobName}"
    if config.killAllOnCompletedTaskNumber is not None:
        response.headers["X-Warning"] = (
            "killAllOnCompletedTaskNumber has been obsoleted, please use minFailedTaskCount "
            "and minSucceededTaskCount instead."
        )
    return response


@router.get("/jobs/{job_name}")
def get_job(job_name: str, ctx: Context, caller: Caller) -> JSONResponse:
    with _job_errors(job_name):
        view = support.find_job(ctx, caller, job_name)
    return JSONResponse(pai_views.job_status(view))


@router.delete("/jobs/{job_name}")
def delete_job(job_name: str, ctx: Context, caller: Caller) -> JSONResponse:
    with _job_errors(job_name):
        support.delete_job(ctx, caller, job_name)
    return _message(f"deleted job {job_name} successfully", status.HTTP_202_ACCEPTED)


@router.get("/jobs/{job_name}/config")
def get_job_config(job_name: str, ctx: Context, caller: Caller) -> JSONResponse:
    with _job_errors(job_name):
        view = support.find_job(ctx, caller, job_name)
    return JSONResponse(
        pai_views.job_config_of(view.spec, pai_views.job_name_of(view), view.project)
    )


@router.get("/jobs/{job_name}/ssh")
def get_job_ssh(job_name: str, ctx: Context, caller: Caller) -> JSONResponse:
    with _job_errors(job_name):
        view = support.find_job(ctx, caller, job_name)
    return JSONResponse(pai_views.ssh_info(view))


@router.put("/jobs/{job_name}/executionType")
def execute_job(job_name: str, ctx: Context, caller: Caller, body: Body) -> JSONResponse:
    req = pai.parse(pai.ExecutionType, body)
    with _job_errors(job_name):
        try:
            support.execute_job(ctx, caller, job_name, start=req.value == "START")
        except (Conflict, Invalid) as exc:
            raise pai.OpenPaiError(
                500, "JobExecuteError", f"job execute error: {exc.message}"
            ) from None
    return _message(f"execute job {job_name} successfully")


@router.get("/virtual-clusters")
def list_virtual_clusters(ctx: Context, caller: Caller) -> JSONResponse:
    cluster = support.cluster_capacity(ctx)
    usages = support.virtual_clusters(ctx, caller)
    return JSONResponse({usage.name: pai_views.vc_view(usage, cluster) for usage in usages})


@router.get("/virtual-clusters/{vc_name}")
def get_virtual_cluster(vc_name: str, ctx: Context, caller: Caller) -> JSONResponse:
    try:
        usages = support.virtual_clusters(ctx, caller, vc_name)
    except NotFound:
        raise pai.OpenPaiError(
            404, "VirtualClusterNotFound", f"could not find virtual cluster {vc_name}"
        ) from None
    return JSONResponse(pai_views.vc_view(usages[0], support.cluster_capacity(ctx)))
