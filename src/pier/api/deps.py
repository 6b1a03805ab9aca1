"""Request dependencies: the service context and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pier.errors import Unauthenticated
from pier.services import accounts
from pier.services.context import Principal, ServiceContext

__all__ = ["Caller", "Context", "bearer_token", "get_context", "get_principal"]


def get_context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    return token.strip()


async def get_principal(
    request: Request, ctx: Annotated[ServiceContext, Depends(get_context)]
) -> Principal:
    token = bearer_token(request)
    # A cached principal is answered on the event loop: no thread hop for most requests.
    cached = accounts.cached_principal(ctx, token)
    if cached is not None:
        return cached
    return await run_in_threadpool(accounts.authenticate_token, ctx, token)


Context = Annotated[ServiceContext, Depends(get_context)]
Caller = Annotated[Principal, Depends(get_principal)]
