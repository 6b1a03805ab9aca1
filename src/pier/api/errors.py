"""Error rendering: the native API's ``{"error": {"code", "message", "details"}}``, or a
dialect's own shape for requests under a path prefix that dialect registered with
``register_dialect_errors`` (Run:AI, OpenPAI and the Ray Jobs shape each answer errors as
their clients expect)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from pier.errors import PierError

__all__ = [
    "DialectErrorRenderer",
    "error_response",
    "install_error_handlers",
    "register_dialect_errors",
    "render_error",
]

# (status, code, message, details) -> the response a dialect's clients expect.
DialectErrorRenderer = Callable[[int, str, str, list[dict[str, Any]]], Response]


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": list(details)}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def register_dialect_errors(app: FastAPI, prefix: str, renderer: DialectErrorRenderer) -> None:
    """Render errors of requests at ``prefix`` or below it (whole path segments: ``/api/job``
    covers ``/api/job/x``, not ``/api/jobs``) with ``renderer``; the longest prefix wins."""
    prefixes: list[tuple[str, DialectErrorRenderer]] = app.state.error_dialects
    prefixes.append((prefix.rstrip("/"), renderer))
    prefixes.sort(key=lambda item: len(item[0]), reverse=True)


def _dialect_of(request: Request) -> DialectErrorRenderer | None:
    app = request.scope.get("app")  # absent only outside a Starlette app
    prefixes: list[tuple[str, DialectErrorRenderer]] = getattr(
        getattr(app, "state", None), "error_dialects", []
    )
    path = request.url.path
    for prefix, renderer in prefixes:
        if path == prefix or path.startswith(prefix + "/"):
            return renderer
    return None


def _render(
    request: Request,
    status_code: int,
    code: str,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    renderer = _dialect_of(request)
    if renderer is None:
        return error_response(status_code, code, message, details, headers)
    response = renderer(status_code, code, message, list(details))
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def render_error(request: Request, status_code: int, code: str, message: str) -> Response:
    """An error response in the shape of the dialect ``request`` is under (or the native one),
    for code that answers outside FastAPI's exception handlers (ASGI middleware)."""
    return _render(request, status_code, code, message)


def _pier_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PierError)
    details = [{"loc": exc.loc, "msg": exc.message, "type": exc.code}] if exc.loc else []
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return _render(request, exc.status_code, exc.code, exc.message, details, headers)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        # pydantic prefixes custom messages with "Value error, "; the field says enough.
        msg = msg.removeprefix("Value error, ")
        details.append({"loc": list(err.get("loc", ())), "msg": msg, "type": err.get("type", "")})
    if any(d["type"] == "json_invalid" for d in details):
        return _render(request, 400, "malformed_json", "the body is not valid JSON", details)
    summary = "; ".join(
        f"{'.'.join(str(p) for p in d['loc'][1:] or d['loc'])}: {d['msg']}" for d in details[:5]
    )
    return _render(request, 422, "invalid", summary or "invalid request", details)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    headers = dict(exc.headers) if exc.headers else None
    return _render(request, exc.status_code, code, str(exc.detail), headers=headers)


def _internal_error(request: Request, _exc: Exception) -> Response:
    """A bug: the JSON error shape still holds; the traceback goes to the server's log (the
    exception propagates on from here), never to the client."""
    return _render(request, 500, "internal", "internal server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.state.error_dialects = []
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(PierError, _pier_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
