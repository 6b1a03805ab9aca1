"""Tokens and users."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from pier.api.deps import Caller, Context
from pier.models import TokenCreate, TokenView, UserCreate, UserView
from pier.services import accounts

router = APIRouter(prefix="/v1", tags=["accounts"])


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenView)
def create_token(body: TokenCreate, ctx: Context) -> TokenView:
    return accounts.create_token(
        ctx, body.username, body.password, name=body.name, expires_in=body.expires_in
    )


@router.get("/tokens", response_model=list[TokenView])
def list_tokens(ctx: Context, caller: Caller) -> list[TokenView]:
    return accounts.list_tokens(ctx, caller)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, ctx: Context, caller: Caller) -> Response:
    accounts.revoke_token(ctx, caller, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users/me", response_model=UserView)
def me(ctx: Context, caller: Caller) -> UserView:
    return accounts.get_user(ctx, caller)


@router.get("/users", response_model=list[UserView])
def list_users(ctx: Context, caller: Caller) -> list[UserView]:
    return accounts.list_users(ctx, caller)


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserView)
def create_user(body: UserCreate, ctx: Context, caller: Caller) -> UserView:
    return accounts.create_user(ctx, caller, body)
