"""Manifests -> :class:`~pier.spec.JobSpec`: the documents, the object and its spec."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from pier.api.dialects.k8s_yaml._shared import (
    DESCRIPTION_ANNOTATION,
    FRACTION_ANNOTATION,
    KINDS,
    LAST_APPLIED,
    MAX_DOCUMENTS,
    RELEASE_LABEL,
    SERVER_METADATA,
    Doc,
    Loc,
    ManifestInvalid,
    ParsedManifest,
    locate,
    path_text,
)
from pier.api.dialects.k8s_yaml.pod import pod_task
from pier.spec import JobKind, JobSpec

__all__ = ["load_documents", "parse_documents", "parse_manifest"]


# libyaml's loader where built (about ten times faster than the pure-Python one).
_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_documents(text: str) -> list[Any]:
    """Safe YAML, refusing anchors and aliases first: an alias bomb in a 1 MiB body could
    otherwise expand to gigabytes."""
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ManifestInvalid(f"YAML aliases (*name) are not supported{where}", loc=["body"])
    return [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]


def _json_document(text: str) -> list[Any]:
    """A JSON body as one document (JSON is YAML too, except for tabs and the like)."""
    if text.lstrip()[:1] not in ("{", "["):
        return []
    try:
        document = json.loads(text)
    except ValueError:
        return []
    return [document] if document is not None else []


def load_documents(text: str) -> list[Any]:
    """The documents of a (multi-document) YAML or JSON text; empty documents are skipped,
    a top-level list or a ``v1 List`` is unpacked into its items."""
    try:
        raw = _json_document(text) or _yaml_documents(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestInvalid(f"not valid YAML{where}: {problem}", loc=["body"]) from None
    documents: list[Any] = []
    for doc in raw:
        if isinstance(doc, list):
            documents.extend(doc)
        elif isinstance(doc, dict) and doc.get("kind") == "List" and doc.get("apiVersion") == "v1":
            items = doc.get("items")
            if not isinstance(items, list):
                raise ManifestInvalid("a v1 List needs a list of items", loc=["body", "items"])
            documents.extend(items)
        else:
            documents.append(doc)
    if not documents:
        raise ManifestInvalid("no manifest in the body", loc=["body"])
    if len(documents) > MAX_DOCUMENTS:
        raise ManifestInvalid(
            f"{len(documents)} documents; at most {MAX_DOCUMENTS} at once", loc=["body"]
        )
    return documents


def parse_documents(documents: Sequence[Any]) -> list[ParsedManifest]:
    """Every document translated, or the first error (nothing is half-accepted). Two
    documents naming the same job in the same namespace are an error."""
    parsed = [parse_manifest(doc, i) for i, doc in enumerate(documents)]
    seen: dict[tuple[str | None, str], int] = {}
    for item in parsed:
        if item.spec.name is None:
            continue
        key = (item.namespace, item.spec.name)
        if key in seen:
            raise ManifestInvalid(
                f"document {item.index + 1}: metadata.name: '{item.spec.name}' is also the "
                f"name of document {seen[key] + 1}",
                loc=["body", item.index, "metadata", "name"],
            )
        seen[key] = item.index
    return parsed


_TOP = ("apiVersion", "kind", "metadata", "spec", "status")
_METADATA = ("name", "generateName", "namespace", "labels", "annotations", *SERVER_METADATA)
_JOB_SPEC = ("template", "backoffLimit", "completions", "parallelism", "ttlSecondsAfterFinished")
_STS_SPEC = ("template", "replicas", "serviceName", "selector")
_TEMPLATE = ("metadata", "spec")
_TEMPLATE_METADATA = ("labels", "annotations", "name")


def parse_manifest(document: Any, index: int = 0) -> ParsedManifest:
    """One manifest -> :class:`ParsedManifest`; :class:`ManifestInvalid` names the field."""
    probe = Doc(index, "document")
    doc = probe.mapping(document, ())
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    job_kind = KINDS.get((str(api_version), str(kind)))
    if job_kind is None:
        raise probe.fail(
            ("kind",),
            f"{kind or 'no kind'} ({api_version or 'no apiVersion'}) is not supported: pier "
            "runs batch/v1 Job (train) and apps/v1 StatefulSet (interactive)",
        )
    metadata = probe.mapping(doc.get("metadata"), ("metadata",))
    name = metadata.get("name")
    d = Doc(index, f"{kind} {name or metadata.get('generateName') or '(unnamed)'}")
    d.only(doc, (), _TOP, str(kind))
    d.only(metadata, ("metadata",), _METADATA, "metadata")
    spec: dict[str, Any] = {"kind": job_kind.value}
    if name is not None:
        spec["name"] = d.string(name, ("metadata", "name"))
        d.origin(("name",), ("metadata", "name"))
    generate = metadata.get("generateName")
    if generate is not None:
        prefix = d.string(generate, ("metadata", "generateName"))
        if not prefix.endswith("-"):
            raise d.fail(("metadata", "generateName"), "must end with '-' (pier adds a number)")
        spec["name_prefix"] = prefix[:-1]
        d.origin(("name_prefix",), ("metadata", "generateName"))
    if name is None and generate is None:
        raise d.fail(("metadata", "name"), "is required (or metadata.generateName)")
    namespace = metadata.get("namespace")
    if namespace is not None:
        namespace = d.string(namespace, ("metadata", "namespace"))
    d.origin(("project",), ("metadata", "namespace"))
    body = d.mapping(doc.get("spec"), ("spec",))
    labels = d.string_map(metadata.get("labels"), ("metadata", "labels"))
    annotations = d.string_map(metadata.get("annotations"), ("metadata", "annotations"))
    if FRACTION_ANNOTATION in annotations:
        raise d.fail(
            ("metadata", "annotations", FRACTION_ANNOTATION),
            "belongs on the pod template: spec.template.metadata.annotations",
        )
    lifecycle: dict[str, Any] = {}
    replicas = 1
    if job_kind is JobKind.TRAIN:
        d.only(body, ("spec",), _JOB_SPEC, "Job spec")
        for key, target in (
            ("backoffLimit", "backoff_limit"),
            ("completions", "completions"),
            ("ttlSecondsAfterFinished", "ttl_after_finish"),
        ):
            if key in body:
                lifecycle[target] = d.integer(body[key], ("spec", key))
                d.origin(("lifecycle", target), ("spec", key))
        if "parallelism" in body:
            replicas = d.integer(body["parallelism"], ("spec", "parallelism"), low=1)
    else:
        d.only(body, ("spec",), _STS_SPEC, "StatefulSet spec")
        if "replicas" in body:
            replicas = d.integer(body["replicas"], ("spec", "replicas"), low=1)
        if "serviceName" in body:
            d.string(body["serviceName"], ("spec", "serviceName"))
    template = d.mapping(body.get("template"), ("spec", "template"))
    if not template:
        raise d.fail(("spec", "template"), "is required")
    d.only(template, ("spec", "template"), _TEMPLATE, "pod template")
    tpath: Loc = ("spec", "template", "metadata")
    tmeta = d.mapping(template.get("metadata"), tpath)
    d.only(tmeta, tpath, _TEMPLATE_METADATA, "pod template metadata")
    pod_labels = d.string_map(tmeta.get("labels"), (*tpath, "labels"))
    pod_annotations = d.string_map(tmeta.get("annotations"), (*tpath, "annotations"))
    if job_kind is JobKind.INTERACTIVE:
        # The seed's selector label, derived from the name: plumbing, not a job label.
        release = spec.get("name") or spec.get("name_prefix") or "job"
        selector = _selector(d, body.get("selector"), pod_labels)
        if pod_labels.get(RELEASE_LABEL) == release and selector.get(RELEASE_LABEL) == release:
            del pod_labels[RELEASE_LABEL]
    fraction = pod_annotations.pop(FRACTION_ANNOTATION, None)
    spec["labels"] = _merge(d, labels, pod_labels, ("metadata", "labels"), (*tpath, "labels"))
    d.origin(("labels",), (*tpath, "labels"))
    description = annotations.pop(DESCRIPTION_ANNOTATION, None)
    if description is not None:
        spec["description"] = description
        d.origin(("description",), ("metadata", "annotations", DESCRIPTION_ANNOTATION))
    annotations.pop(LAST_APPLIED, None)
    spec["metadata"] = _merge(
        d, annotations, pod_annotations, ("metadata", "annotations"), (*tpath, "annotations")
    )
    d.origin(("metadata",), ("metadata", "annotations"))
    pod_path: Loc = ("spec", "template", "spec")
    pod = d.mapping(template.get("spec"), pod_path)
    task, preemptible, grace = pod_task(d, pod, pod_path, job_kind, fraction, replicas)
    if preemptible is not None:
        spec["preemptible"] = preemptible
    if grace is not None:
        lifecycle["stop_grace_period"] = grace
    spec["tasks"] = [task]
    spec["lifecycle"] = lifecycle
    try:
        parsed = JobSpec.model_validate(spec)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = locate(d.origins, index, list(err["loc"]))
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            message = (
                f"'{err['input']}' is not a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        raise d.fail(tuple(loc[2:]), message) from None
    user = parsed.labels.get("user")
    return ParsedManifest(index, str(kind), parsed, namespace, user, d.origins)


def _merge(
    d: Doc, outer: dict[str, str], inner: dict[str, str], outer_path: Loc, inner_path: Loc
) -> dict[str, str]:
    for key, value in inner.items():
        if key in outer and outer[key] != value:
            raise d.fail(
                (*inner_path, key), f"'{value}' differs from {path_text((*outer_path, key))}"
            )
    return {**outer, **inner}


def _selector(d: Doc, value: Any, pod_labels: dict[str, str]) -> dict[str, str]:
    path: Loc = ("spec", "selector")
    selector = d.mapping(value, path)
    d.only(selector, path, ("matchLabels",), "selector")
    match = d.string_map(selector.get("matchLabels"), (*path, "matchLabels"))
    for key, wanted in match.items():
        if pod_labels.get(key) != wanted:
            raise d.fail(
                (*path, "matchLabels", key),
                "selector does not match the template's labels (spec.template.metadata.labels)",
            )
    return match
