"""Reject request bodies over a size limit with 413 before they are read into memory."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pier.api.errors import render_error

__all__ = ["BodySizeLimit"]


class _TooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body reader passes it on (any other exception
    while reading the body becomes a 400 "error parsing the body") and the app's handler
    answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _message(max_bytes))


def _message(max_bytes: int) -> str:
    return f"request body is larger than {max_bytes} bytes"


class BodySizeLimit:
    """``max_bytes`` for every request, or the limit of the longest matching prefix in
    ``prefix_limits`` (uploads)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, prefix_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix_limits = sorted((prefix_limits or {}).items(), key=lambda p: -len(p[0]))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = next((n for p, n in self.prefix_limits if path.startswith(p)), self.max_bytes)
        if limit != self.max_bytes:
            await BodySizeLimit(self.app, limit)(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        # In the error shape of the dialect the path belongs to (Run:AI, OpenPAI, Ray...).
        response = render_error(Request(scope), 413, "too_large", _message(self.max_bytes))
        response.headers["connection"] = "close"
        await response(scope, receive, send)
