"""Kubernetes manifests (seed 001): ``POST /v1/manifests`` submits Run:AI-style ``batch/v1
Job`` / ``apps/v1 StatefulSet`` YAML; ``GET /v1/jobs/{ref}/manifest`` renders a job back."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from pier.api.deps import Caller, Context
from pier.api.dialects import k8s_yaml
from pier.api.render import call, render
from pier.errors import Invalid, PierError
from pier.services import jobs, manifests

router = APIRouter(tags=["manifests"])

ProjectQuery = Annotated[
    str | None, Query(max_length=63, description="project for documents without a namespace")
]
_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.post(
    "/v1/manifests",
    status_code=status.HTTP_201_CREATED,
    response_model=k8s_yaml.AppliedManifests,
    openapi_extra=_YAML_BODY,
)
async def apply_manifests(
    request: Request, ctx: Context, caller: Caller, project: ProjectQuery = None
) -> Response:
    """Submit every document of a (multi-document) YAML or JSON body, or none of them."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text", loc=["body"]) from None
    # Off the event loop: a large file takes a while to parse.
    parsed = await run_in_threadpool(_parse, text)
    requests = [p.request for p in parsed]
    try:
        views = await call(ctx, manifests.submit_namespaced, ctx, caller, requests, project)
    except PierError as exc:
        raise k8s_yaml.relocate(exc, parsed) from None
    return render(k8s_yaml.applied(parsed, views), status.HTTP_201_CREATED)


def _parse(text: str) -> list[k8s_yaml.ParsedManifest]:
    return k8s_yaml.parse_documents(k8s_yaml.load_documents(text))


@router.get("/v1/jobs/{ref}/manifest", response_class=Response)
async def export_manifest(
    ref: str,
    ctx: Context,
    caller: Caller,
    project: ProjectQuery = None,
    format: Literal["yaml", "json"] = "yaml",
) -> Response:
    """The job as a ``batch/v1 Job`` (train) or ``apps/v1 StatefulSet`` (interactive)."""
    view = await run_in_threadpool(jobs.get_job, ctx, caller, ref, project)
    manifest = k8s_yaml.render_manifest(view.spec)
    if format == "json":
        return Response(json.dumps(manifest), media_type="application/json")
    return Response(k8s_yaml.render_yaml([manifest]), media_type="application/yaml")
