"""Nodes (inventory) and health."""

from __future__ import annotations

from fastapi import APIRouter

from pier import __version__
from pier.api.deps import Caller, Context
from pier.models import NodeView
from pier.services import nodes

router = APIRouter(prefix="/v1", tags=["system"])


@router.get("/nodes", response_model=list[NodeView])
def list_nodes(ctx: Context, caller: Caller) -> list[NodeView]:
    return nodes.list_nodes(ctx, caller)


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}
