"""The transport half of the job proxy (:mod:`pier.api.routers.proxy`): pier's credentials
on a request, what is forwarded to the job and how, HTTP answers streamed back, websocket
messages pumped both ways. No access decisions here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets
from fastapi import Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

from pier.errors import PierError, Unauthenticated
from pier.services import exposure

__all__ = [
    "COOKIE",
    "TOKEN_PARAM",
    "BadGateway",
    "Credentials",
    "check_origin",
    "connect_websocket",
    "forward_headers",
    "pump",
    "query_without_token",
    "relay_http",
    "upstream_path",
]

TOKEN_PARAM = "pier_token"
COOKIE = "pier_proxy_token"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0)


class Credentials:
    """pier's credentials on a proxied request, wherever they came from."""

    def __init__(self, headers: Any, query: list[tuple[str, str]], cookies: dict[str, str]) -> None:
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        self.bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        self.param = next((v for k, v in query if k == TOKEN_PARAM), "")
        self.cookie = cookies.get(COOKIE, "")

    @property
    def token(self) -> str:
        return self.bearer or self.param or self.cookie


class BadGateway(PierError):
    status_code = 502
    code = "bad_gateway"


def upstream_path(target: exposure.Target, scope: Any) -> str:
    """The request's path after ``/v1/jobs/<ref>/http`` (as sent: still percent-encoded, so
    an encoded ``/`` stays one), and its query without pier's token parameter."""
    raw = bytes(scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    rest = raw.split("/", 5)[5] if raw.count("/") >= 5 else ""
    full = f"{target.prefix}/{rest}" if target.keep_prefix else f"/{rest}"
    query = query_without_token(scope)
    return f"{full}?{query}" if query else full


def query_without_token(scope: Any) -> str:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    return "&".join(p for p in query.split("&") if p and not p.startswith(f"{TOKEN_PARAM}="))


def forward_headers(
    headers: Any, target: exposure.Target, client: str, scheme: str
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or (lower == "content-length" and not value):
            continue
        if lower == "authorization" and target.requires_auth:
            continue  # pier's token, not the job's business
        if lower == "cookie":
            value = _without_pier_cookie(value)
            if not value:
                continue
        if lower.startswith("sec-websocket-"):
            continue
        out.append((name, value))
    host = headers.get("host", "")
    out += [
        ("X-Forwarded-For", client),
        ("X-Forwarded-Host", host),
        ("X-Forwarded-Proto", scheme),
        ("X-Forwarded-Prefix", target.prefix),
    ]
    return out


def _without_pier_cookie(header: str) -> str:
    parts = [p.strip() for p in header.split(";")]
    return "; ".join(p for p in parts if p and not p.startswith(f"{COOKIE}="))


async def relay_http(request: Request, target: exposure.Target) -> StreamingResponse:
    """Send the request to the job; its answer, streamed (BadGateway if it does not answer)."""
    client_host = request.client.host if request.client else ""
    headers = forward_headers(request.headers, target, client_host, request.url.scheme)
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    # Plain http to this machine: verify=False only skips building a TLS context (loading
    # the CA bundle took ~12 ms a request, more than the rest of the proxy's work).
    http = httpx.AsyncClient(
        timeout=UPSTREAM_TIMEOUT, trust_env=False, follow_redirects=False, verify=False
    )
    upstream = http.build_request(
        request.method,
        f"http://{target.host}:{target.port}{upstream_path(target, request.scope)}",
        headers=headers,
        content=request.stream() if has_body else None,
    )
    try:
        answer = await http.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        await http.aclose()
        raise BadGateway(
            f"job {target.job_id} does not answer on port {target.port}: "
            f"{exc or type(exc).__name__}"
        ) from exc
    response = StreamingResponse(
        _relay(answer, http),
        status_code=answer.status_code,
        background=BackgroundTask(_close, answer, http),
    )
    response.raw_headers = [
        (k.lower().encode("latin-1"), v.encode("latin-1"))
        for k, v in answer.headers.multi_items()
        if k.lower() not in HOP_BY_HOP
    ]
    return response


async def _relay(answer: httpx.Response, http: httpx.AsyncClient) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        pass  # the job hung up mid-answer: end it here
    finally:  # also when the caller hung up (the background task then does not run)
        await _close(answer, http)


async def _close(answer: httpx.Response, http: httpx.AsyncClient) -> None:
    await answer.aclose()
    await http.aclose()


async def connect_websocket(websocket: WebSocket, target: exposure.Target) -> ClientConnection:
    """A websocket to the job for this one (BadGateway if the job refuses)."""
    client_host = websocket.client.host if websocket.client else ""
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    headers = [
        (k, v)
        for k, v in forward_headers(websocket.headers, target, client_host, scheme)
        if k.lower() not in ("host", "origin")  # the client library sets its own
    ]
    uri = f"ws://{target.host}:{target.port}{upstream_path(target, websocket.scope)}"
    try:
        return await connect(
            uri,
            additional_headers=headers,
            subprotocols=websocket.scope.get("subprotocols") or None,
            open_timeout=10,
            max_size=None,
            compression=None,
        )
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        raise BadGateway(
            f"job {target.job_id} refused the websocket on port {target.port}: {exc}"
        ) from exc


def check_origin(websocket: WebSocket) -> None:
    origin = websocket.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != websocket.headers.get("host"):
        raise Unauthenticated("a websocket from another origin cannot use the proxy cookie")


async def pump(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def downstream() -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async for message in upstream:
                if isinstance(message, str):
                    await websocket.send_text(message)
                else:
                    await websocket.send_bytes(message)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=_sendable(upstream.close_code))

    async def upstream_side() -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    await upstream.close(code=_sendable(message.get("code")))
                    return
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])

    tasks = [asyncio.create_task(downstream()), asyncio.create_task(upstream_side())]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _sendable(code: int | None) -> int:
    """A close code that may be sent on the wire (1005/1006 are only ever reported)."""
    if code is None or code in (1005, 1006, 1015) or not 1000 <= code < 5000:
        return 1000
    return code
