"""Projects and their members."""

from __future__ import annotations

from fastapi import APIRouter, status

from pier.api.deps import Caller, Context
from pier.models import MemberAdd, ProjectCreate, ProjectUpdate, ProjectView
from pier.services import projects

router = APIRouter(prefix="/v1/projects", tags=["projects"])


@router.get("", response_model=list[ProjectView])
def list_projects(ctx: Context, caller: Caller) -> list[ProjectView]:
    return projects.list_projects(ctx, caller)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectView)
def create_project(body: ProjectCreate, ctx: Context, caller: Caller) -> ProjectView:
    return projects.create_project(ctx, caller, body)


@router.get("/{name}", response_model=ProjectView)
def get_project(name: str, ctx: Context, caller: Caller) -> ProjectView:
    return projects.get_project(ctx, caller, name)


@router.patch("/{name}", response_model=ProjectView)
def update_project(name: str, body: ProjectUpdate, ctx: Context, caller: Caller) -> ProjectView:
    return projects.update_project(ctx, caller, name, body)


@router.post("/{name}/members", response_model=ProjectView)
def add_member(name: str, body: MemberAdd, ctx: Context, caller: Caller) -> ProjectView:
    return projects.add_member(ctx, caller, name, body)


@router.delete("/{name}/members/{user}", response_model=ProjectView)
def remove_member(name: str, user: str, ctx: Context, caller: Caller) -> ProjectView:
    return projects.remove_member(ctx, caller, name, user)
