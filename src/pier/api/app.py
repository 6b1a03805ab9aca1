"""The ASGI application: native routers, error handlers, body limits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from pier import __version__
from pier.api.batching import SubmitBatcher
from pier.api.dialects import runai as runai_dialect
from pier.api.errors import install_error_handlers, register_dialect_errors
from pier.api.limits import BodySizeLimit
from pier.api.routers import (
    accounts,
    jobs,
    manifests,
    metrics,
    projects,
    proxy,
    ray_jobs,
    runai,
    system,
    telemetry,
)
from pier.api.routers import openpai as openpai_routes
from pier.services.context import ServiceContext

__all__ = ["create_app"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield


def create_app(
    ctx: ServiceContext,
    *,
    max_body_bytes: int = 1024 * 1024,
    lifespan: Lifespan | None = None,
    metrics_public: bool = False,
) -> FastAPI:
    app = FastAPI(
        title="pier",
        version=__version__,
        description="Self-hosted platform for GPU and ML jobs.",
        lifespan=lifespan or _no_lifespan,
    )
    app.state.ctx = ctx
    app.state.submits = SubmitBatcher(ctx)
    app.state.metrics_public = metrics_public
    install_error_handlers(app)
    for module in (accounts, projects, jobs, system, ray_jobs, runai, manifests):
        app.include_router(module.router)
    for module in (telemetry, metrics, proxy):
        app.include_router(module.router)
    openpai_routes.install(app)
    ray_jobs.register_errors(app)
    register_dialect_errors(app, runai_dialect.PREFIX, runai_dialect.error_response)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, prefix_limits=ray_jobs.BODY_LIMITS)
    return app
