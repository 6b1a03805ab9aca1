"""Run:AI jobs as Kubernetes YAML (seed 001) <-> :class:`~pier.spec.JobSpec`. Pure: no I/O.

A ``batch/v1 Job`` is a train job, an ``apps/v1 StatefulSet`` an interactive (Build) one. The
same mapping renders a job back to its manifest (``pier export --format k8s``, and later the
Kubernetes executor). Choices where the seed is silent, as the real systems behave:

- The project is ``metadata.namespace``: Run:AI's namespace ``runai-<project>`` and the bare
  project name both resolve (the service does that; parsing leaves ``JobSpec.project`` unset
  and reports the namespace). Rendering writes ``runai-<project>``.
- ``metadata.generateName: "p-"`` is ``name_prefix: "p"`` (pier numbers the names ``p-1``...).
- ``nvidia.com/gpu`` in ``limits`` is a whole number of GPUs (a ``requests`` entry must equal
  it, as Kubernetes demands of extended resources); a fraction comes only from the pod
  template's ``gpu-fraction`` annotation, strictly between 0 and 1; both together is an error.
- Other extended resources (``vendor/name``) in ``limits`` are ``resources.custom``.
- ``requests.cpu``/``requests.memory`` are the request, ``limits.cpu``/``limits.memory`` the
  limit (Kubernetes quantities; ``12XB`` is refused).
- ``nodeSelector`` ``run.ai/type`` is the node pool (Run:AI's ``--node-type``) and
  ``nvidia.com/gpu.product`` the GPU model (NVIDIA feature discovery's label); other keys are
  ``resources.node_selector``.
- ``priorityClassName`` ``train`` / ``build`` / ``interactive-preemptible`` (Run:AI's classes)
  set ``preemptible``; absent leaves pier's default (train yes, interactive no).
- Labels of the object and of the pod template are the job's labels (the same key with two
  values is an error). ``user`` is display only: the service checks it names the caller
  unless the caller is an admin; it never authenticates. A StatefulSet's
  ``release: <name>`` selector label is plumbing and is not kept as a job label.
- Annotations are the job's ``metadata``, except ``pier/description`` (the description) and
  ``kubectl.kubernetes.io/last-applied-configuration`` (dropped, as kubectl's own bookkeeping).
- ``restartPolicy`` must be ``Never`` on a Job (pier retries the whole job ``backoffLimit``
  times) and ``Always`` (or absent) on a StatefulSet, as Kubernetes requires there.
- ``schedulerName`` is ``runai-scheduler``, ``pier`` or absent; pier schedules every job.
- A Job's ``parallelism`` is the replica count; a StatefulSet's ``replicas`` is.
- Server-set metadata (``uid``, ``resourceVersion``, ...) and ``status`` are ignored, so the
  output of ``kubectl get -o yaml`` applies; anything else pier cannot honour is refused with
  its path named (pier never drops a field silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from pier.api.dialects.k8s_yaml._shared import (
    FRACTION_ANNOTATION,
    ManifestInvalid,
    ParsedManifest,
    Unrepresentable,
    locate,
    path_text,
)
from pier.api.dialects.k8s_yaml.reading import load_documents, parse_documents, parse_manifest
from pier.api.dialects.k8s_yaml.rendering import render_manifest, render_yaml
from pier.errors import PierError
from pier.models import JobView
from pier.services.manifests import NAMESPACE_PREFIX

__all__ = [
    "FRACTION_ANNOTATION",
    "NAMESPACE_PREFIX",
    "AppliedManifest",
    "AppliedManifests",
    "ManifestInvalid",
    "ParsedManifest",
    "Unrepresentable",
    "applied",
    "load_documents",
    "manifest_loc",
    "parse_documents",
    "parse_manifest",
    "relocate",
    "render_manifest",
    "render_yaml",
]


class AppliedManifest(BaseModel):
    kind: str
    name: str
    project: str
    job: JobView


class AppliedManifests(BaseModel):
    """The answer to ``POST /v1/manifests``: one item per document, in file order."""

    items: list[AppliedManifest]


def manifest_loc(parsed: ParsedManifest, spec_loc: Sequence[Any]) -> list[str | int]:
    """Where in the document a :class:`JobSpec` field came from (for errors the service
    raises about the translated spec): the longest known prefix of ``spec_loc``."""
    return locate(parsed.origins, parsed.index, spec_loc)


def relocate(exc: PierError, parsed: Sequence[ParsedManifest]) -> PierError:
    """A service error about item ``loc[1]`` of a submission, re-addressed to the document
    and field it came from (same class, so the same status)."""
    index = exc.loc[1] if len(exc.loc) > 1 and exc.loc[0] == "body" else None
    if not isinstance(index, int) or not 0 <= index < len(parsed):
        return exc
    item = parsed[index]
    loc = manifest_loc(item, exc.loc[2:])
    where = path_text(tuple(loc[2:]))
    message = f"document {index + 1} ({item.label}): {where + ': ' if where else ''}{exc.message}"
    return type(exc)(message, loc=loc)


def applied(parsed: Sequence[ParsedManifest], views: Sequence[JobView]) -> AppliedManifests:
    return AppliedManifests(
        items=[
            AppliedManifest(kind=p.kind, name=v.name, project=v.project, job=v)
            for p, v in zip(parsed, views, strict=True)
        ]
    )
