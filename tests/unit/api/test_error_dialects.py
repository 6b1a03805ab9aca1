"""Errors under a dialect's registered prefix render in that dialect's shape; others stay
native."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from pier.api.errors import install_error_handlers, register_dialect_errors
from pier.errors import NotFound


def _openpai_like(status: int, code: str, message: str, _details: list[dict[str, Any]]) -> Response:
    return JSONResponse({"code": code.upper(), "message": message}, status_code=status)


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    register_dialect_errors(app, "/api/job/", _openpai_like)

    @app.get("/api/job/{name}")
    def dialect_route(name: str) -> None:
        raise NotFound(f"job {name!r} not found")

    @app.get("/api/jobs/{name}")
    def other_route(name: str) -> None:
        raise NotFound(f"job {name!r} not found")

    return app


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t")


async def test_dialect_prefix_renders_its_own_shape() -> None:
    async with _client() as client:
        response = await client.get("/api/job/x")
    assert response.status_code == 404
    assert response.json() == {"code": "NOT_FOUND", "message": "job 'x' not found"}


async def test_prefix_matches_whole_segments_only() -> None:
    async with _client() as client:
        response = await client.get("/api/jobs/x")
        unknown = await client.get("/api/job/x/y/z")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # An unknown route under the prefix is the dialect's too.
    assert unknown.json() == {"code": "NOT_FOUND", "message": "Not Found"}
