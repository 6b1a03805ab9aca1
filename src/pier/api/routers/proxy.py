"""Reverse proxy to a job's HTTP port: ``/v1/jobs/{ref}/http/...``, websockets included.

Who gets through (see :mod:`pier.services.exposure`): anyone for a port declared with
``requires_auth=False``; otherwise a caller who may see the job, authenticated by

- ``Authorization: Bearer pier_...`` (scripts, ``curl``), or
- ``?pier_token=pier_...`` (browsers): a GET answers with a redirect to the same URL
  without the parameter and sets an HttpOnly, SameSite=Lax cookie scoped to the job's
  proxy path, which later requests and websockets carry; other methods and websockets may
  use the parameter directly.

pier's own credentials (the bearer header of a protected port, the cookie, the parameter)
are never forwarded to the job. A websocket authenticated by the cookie must come from the
same origin as the proxy (cross-site websocket hijacking). The job is sent the original
``Host`` and ``X-Forwarded-For/-Host/-Proto/-Prefix``.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from pier.api import relay
from pier.api.deps import get_context
from pier.api.errors import error_response
from pier.errors import PierError, Unauthenticated
from pier.services import accounts, exposure
from pier.services.context import Principal, ServiceContext

router = APIRouter(prefix="/v1/jobs", tags=["proxy"])

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _principal(ctx: ServiceContext, token: str) -> Principal:
    if not token:
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    cached = accounts.cached_principal(ctx, token)
    if cached is not None:
        return cached
    return await run_in_threadpool(accounts.authenticate_token, ctx, token)


async def _target(ctx: ServiceContext, ref: str, creds: relay.Credentials) -> exposure.Target:
    """A public port needs nothing; any other needs a caller who may see the job."""
    try:
        return await run_in_threadpool(exposure.resolve_target, ctx, None, ref)
    except Unauthenticated:
        if not creds.token:
            raise
    caller = await _principal(ctx, creds.token)
    return await run_in_threadpool(exposure.resolve_target, ctx, caller, ref)


def _error(exc: PierError) -> Response:
    details = [{"loc": exc.loc, "msg": exc.message, "type": exc.code}] if exc.loc else []
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return error_response(exc.status_code, exc.code, exc.message, details, headers)


@router.api_route("/{ref}/http", methods=METHODS, include_in_schema=False)
async def proxy_root(ref: str, request: Request) -> Response:
    """The bare prefix: relative links need the trailing slash."""
    ctx = get_context(request)
    creds = relay.Credentials(
        request.headers, list(request.query_params.multi_items()), dict(request.cookies)
    )
    target = await _target(ctx, ref, creds)
    query = f"?{request.url.query}" if request.url.query else ""
    return RedirectResponse(exposure.base_path(target.job_id) + query, status_code=307)


# Not in the OpenAPI schema: what answers is the job's app, not pier's API.
@router.api_route("/{ref}/http/{path:path}", methods=METHODS, include_in_schema=False)
async def proxy_http(ref: str, request: Request) -> Response:
    """Forward the request to the job's HTTP port; stream the answer back."""
    ctx = get_context(request)
    creds = relay.Credentials(
        request.headers, list(request.query_params.multi_items()), dict(request.cookies)
    )
    target = await _target(ctx, ref, creds)
    by_param = bool(creds.param) and creds.token == creds.param  # the token that got it in
    if by_param and target.requires_auth and request.method in ("GET", "HEAD"):
        return _set_cookie_redirect(request, target, creds)
    return await relay.relay_http(request, target)


def _set_cookie_redirect(
    request: Request, target: exposure.Target, creds: relay.Credentials
) -> Response:
    query = relay.query_without_token(request.scope)
    path = bytes(request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    url = path + (f"?{query}" if query else "")
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        relay.COOKIE,
        creds.param,
        path=exposure.base_path(target.job_id),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


# ---- websockets ------------------------------------------------------------------------


@router.websocket("/{ref}/http/{path:path}")
async def proxy_websocket(websocket: WebSocket, ref: str) -> None:
    ctx: ServiceContext = websocket.app.state.ctx
    cookies = SimpleCookie(websocket.headers.get("cookie", ""))
    creds = relay.Credentials(
        websocket.headers,
        list(websocket.query_params.multi_items()),
        {k: m.value for k, m in cookies.items()},
    )
    try:
        if creds.cookie and not creds.bearer and not creds.param:
            relay.check_origin(websocket)
        target = await _target(ctx, ref, creds)
        upstream = await relay.connect_websocket(websocket, target)
    except PierError as exc:
        await _deny(websocket, exc)
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await relay.pump(websocket, upstream)


async def _deny(websocket: WebSocket, exc: PierError) -> None:
    # With a denial response the client sees the real status (401, 404, 502). uvicorn's
    # websockets-sansio (0.54) then logs a spurious "returned without completing handshake"
    # (Kludex/uvicorn#3138); the client's answer is right.
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(_error(exc))
    else:
        await websocket.close(code=1008, reason=str(exc)[:120])
