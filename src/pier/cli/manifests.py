"""Kubernetes manifests (seed 001): ``pier apply -f FILE``, ``pier export JOB --format k8s``,
and the kinds ``pier delete job|sts NAME`` understands."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pier.cli.common import OutputOpt, UrlOpt, connect
from pier.cli.output import OutputFormat, emit_json, print_error, show
from pier.models import JobView

__all__ = ["apply", "check_kind", "export", "kind_of", "split_target"]

JOB_KINDS = frozenset({"job", "jobs", "job.batch", "jobs.batch"})
STS_KINDS = frozenset(
    {"sts", "statefulset", "statefulsets", "statefulset.apps", "statefulsets.apps"}
)
_RESOURCE = {"train": "job.batch", "interactive": "statefulset.apps"}

NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        "--namespace",
        "-n",
        help="project for documents without metadata.namespace (runai-<project> works too)",
    ),
]


class ExportFormat(StrEnum):
    K8S = "k8s"


class ManifestOutput(StrEnum):
    YAML = "yaml"
    JSON = "json"


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="-f") from None


def apply(
    filename: Annotated[
        list[str],
        typer.Option(
            "--filename", "-f", help="YAML file ('-' for stdin); repeatable, applied as one"
        ),
    ],
    project: NamespaceOpt = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Submit Run:AI-style Kubernetes YAML: batch/v1 Job (train), apps/v1 StatefulSet
    (interactive). Every document is submitted, or none when one is invalid (documents are
    counted from 1 across the files, in order)."""
    text = "\n---\n".join(_read(path) for path in filename)
    with connect(url) as client:
        views = client.apply_manifests(text, project)
    if output is OutputFormat.JSON:
        emit_json(views)
        return
    for view in views:
        show(f"{_RESOURCE.get(view.kind, 'job')}/{view.name} created (project {view.project})")


def export(
    job: Annotated[str, typer.Argument(help="job name or id", show_default=False)],
    format: Annotated[
        ExportFormat, typer.Option("--format", help="k8s: a batch/v1 Job or apps/v1 StatefulSet")
    ] = ExportFormat.K8S,
    project: NamespaceOpt = None,
    output: Annotated[
        ManifestOutput, typer.Option("--output", "-o", help="yaml, or json")
    ] = ManifestOutput.YAML,
    url: UrlOpt = None,
) -> None:
    """Print a job as the manifest that `pier apply -f` takes back."""
    with connect(url) as client:
        text = client.export_manifest(job, project, output.value)
    typer.echo(text.rstrip("\n"))


def split_target(target: str, name: str | None) -> tuple[str, str | None]:
    """``("job", "x")`` / ``("sts/x", None)`` -> ``("x", kind)``; ``("x", None)`` ->
    ``("x", None)``. The kind is ``train`` or ``interactive``."""
    if name is None and "/" in target:
        target, _, name = target.partition("/")
    if name is None:
        return target, None
    return name, kind_of(target)


def kind_of(word: str) -> str:
    lowered = word.lower()
    if lowered in JOB_KINDS:
        return "train"
    if lowered in STS_KINDS:
        return "interactive"
    raise typer.BadParameter(
        f"'{word}' is not a kind pier deletes: use job or sts (statefulset)", param_hint="KIND"
    )


def check_kind(view: JobView, kind: str) -> None:
    """As kubectl: deleting a StatefulSet by a Job's name finds nothing."""
    if view.kind != kind:
        print_error(
            f'{_RESOURCE[kind]} "{view.name}" not found: {view.name} is a '
            f"{_RESOURCE.get(view.kind, view.kind)}"
        )
        raise typer.Exit(1)
