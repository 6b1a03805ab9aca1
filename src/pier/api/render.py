"""Responses rendered once from the service's model (FastAPI would otherwise validate the
model a second time against ``response_model``, which costs more than the query)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pier.services.context import ServiceContext

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["call", "render"]


def render(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


async def call(ctx: ServiceContext, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a service call. On SQLite it runs on the event loop: its writes are serialised
    anyway and take well under a millisecond, and handing each one to a worker thread cost
    more (GIL and lock hand-offs, and a cold SQLite page cache in each pooled connection)
    than the work, also with several worker processes (measured: 934 vs 470 submits/s with
    two), where a write may wait a fraction of a millisecond for another process's. Elsewhere
    it runs in the thread pool, so a network round trip to PostgreSQL never blocks the
    loop."""
    if ctx.db.is_sqlite:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)
