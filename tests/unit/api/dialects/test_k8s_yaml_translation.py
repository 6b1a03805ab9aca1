"""Kubernetes YAML (seed 001) <-> JobSpec: the seed's manifests, every refusal naming its
field, and the round trip spec -> manifest -> spec, checked against Kubernetes' own OpenAPI
schema (kubernetes-validate ships it)."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.seed_examples import SEED_BUILD, SEED_TRAIN

from pier.api.dialects.k8s_yaml import (
    FRACTION_ANNOTATION,
    ManifestInvalid,
    ParsedManifest,
    Unrepresentable,
    load_documents,
    manifest_loc,
    parse_documents,
    parse_manifest,
    relocate,
    render_manifest,
    render_yaml,
)
from pier.errors import Forbidden, Invalid
from pier.spec import JobKind, JobSpec

K8S_VERSION = "1.30"


def fill(template: str, name: str = "train-a", gpus: str = "1") -> str:
    return (
        template.replace("<JOB-NAME>", name)
        .replace("<USER-NAME>", "alice")
        .replace("<IMAGE-NAME>", "gcr.io/run-ai-demo/quickstart")
        .replace("<REQUESTED-GPUs>", gpus)
    )


def with_fraction(text: str, fraction: str = "0.5") -> str:
    """The seed's "Using Fractional GPUs": drop the limit, add the template annotation."""
    doc = yaml.safe_load(text)
    del doc["spec"]["template"]["spec"]["containers"][0]["resources"]
    doc["spec"]["template"]["metadata"]["annotations"] = {FRACTION_ANNOTATION: fraction}
    return yaml.safe_dump(doc)


def parse_one(text: str) -> ParsedManifest:
    parsed = parse_documents(load_documents(text))
    assert len(parsed) == 1
    return parsed[0]


def refused(text: str) -> ManifestInvalid:
    with pytest.raises(ManifestInvalid) as caught:
        parse_documents(load_documents(text))
    return caught.value


# ---- the seed's manifests --------------------------------------------------------------


def test_seed_train_job_is_a_train_job_with_whole_gpus() -> None:
    parsed = parse_one(fill(SEED_TRAIN, gpus="2"))
    spec = parsed.spec
    assert (parsed.kind, parsed.namespace, parsed.user) == ("Job", None, "alice")
    assert spec.kind is JobKind.TRAIN and spec.name == "train-a"
    assert spec.labels == {"user": "alice"}
    task = spec.tasks[0]
    assert (task.name, task.image, task.command) == (
        "train-a",
        "gcr.io/run-ai-demo/quickstart",
        [],
    )
    assert task.resources.gpu == 2 and task.replicas == 1
    assert spec.is_preemptible and spec.backoff_limit == 6


def test_seed_build_statefulset_is_interactive_and_keeps_its_command() -> None:
    parsed = parse_one(fill(SEED_BUILD, name="build-a"))
    spec = parsed.spec
    assert parsed.kind == "StatefulSet" and spec.kind is JobKind.INTERACTIVE
    assert spec.tasks[0].command == ["sleep"] and spec.tasks[0].args == ["infinity"]
    # release: <name> is the seed's selector plumbing, not a job label
    assert spec.labels == {"user": "alice"}
    assert not spec.is_preemptible and spec.backoff_limit == 0


@pytest.mark.parametrize("template", [SEED_TRAIN, SEED_BUILD])
def test_seed_fraction_annotation_asks_for_part_of_a_gpu(template: str) -> None:
    parsed = parse_one(with_fraction(fill(template), "0.5"))
    assert parsed.spec.tasks[0].resources.gpu == 0.5


def test_seed_manifests_render_back_to_what_kubernetes_accepts() -> None:
    for text in (fill(SEED_TRAIN), with_fraction(fill(SEED_BUILD, name="b"))):
        spec = parse_one(text).spec.model_copy(update={"project": "team"})
        manifest = render_manifest(spec)
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        assert manifest["metadata"]["namespace"] == "runai-team"
        assert manifest["spec"]["template"]["spec"]["schedulerName"] == "runai-scheduler"
        assert parse_manifest(manifest).spec == spec.model_copy(update={"project": None})


def test_multi_document_file_and_list_and_json() -> None:
    text = fill(SEED_TRAIN, name="a") + "---\n" + fill(SEED_BUILD, name="b") + "---\n"
    assert [p.spec.name for p in parse_documents(load_documents(text))] == ["a", "b"]
    listed = {"apiVersion": "v1", "kind": "List", "items": yaml.safe_load_all(text)}
    listed["items"] = [d for d in listed["items"] if d]
    names = [p.spec.name for p in parse_documents(load_documents(yaml.safe_dump(listed)))]
    assert names == ["a", "b"]
    as_json = json.dumps(yaml.safe_load(fill(SEED_TRAIN, name="c")), indent="\t")
    assert "\t" in as_json  # tabs: JSON, but not YAML
    assert parse_one(as_json).spec.name == "c"


def test_namespace_generate_name_and_pier_scheduler() -> None:
    doc = yaml.safe_load(fill(SEED_TRAIN))
    del doc["metadata"]["name"]
    doc["metadata"]["generateName"] = "sweep-"
    doc["metadata"]["namespace"] = "runai-vision"
    doc["spec"]["template"]["spec"]["schedulerName"] = "pier"
    parsed = parse_manifest(doc)
    assert parsed.spec.name is None and parsed.spec.name_prefix == "sweep"
    assert parsed.namespace == "runai-vision"


def test_kubectl_get_output_applies_server_fields_ignored() -> None:
    doc = yaml.safe_load(fill(SEED_TRAIN))
    doc["metadata"].update(uid="x", resourceVersion="12", creationTimestamp="2024-01-01")
    doc["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "team": "vision",
    }
    doc["status"] = {"succeeded": 1}
    assert parse_manifest(doc).spec.metadata == {"team": "vision"}


# ---- refusals name the document and the field ------------------------------------------


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "Pod"),
        ("batch/v1beta1", "Job"),
        ("batch/v1", "CronJob"),
        (None, None),
    ],
)
def test_unsupported_kinds_are_named(api_version: str | None, kind: str | None) -> None:
    doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {}}
    doc = {k: v for k, v in doc.items() if v is not None}
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(doc, 2)
    assert caught.value.loc == ["body", 2, "kind"]
    assert f"{kind or 'no kind'} ({api_version or 'no apiVersion'}) is not supported" in (
        caught.value.message
    )
    assert caught.value.message.startswith("document 3 ")


def _mutated(path: list[str | int], value: Any, template: str = SEED_TRAIN) -> str:
    doc = yaml.safe_load(fill(template))
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return yaml.safe_dump(doc)


_DELETE = object()
C = ["spec", "template", "spec", "containers", 0]
GPU = [*C, "resources", "limits", "nvidia.com/gpu"]


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (GPU, -1, "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "0 or more"),
        (GPU, "lots", "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "lots"),
        (GPU, 1.5, "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "whole"),
        (GPU, 5000, "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "4096"),
        (
            [*C, "resources", "limits", "memory"],
            "12XB",
            "spec.template.spec.containers[0].resources.limits.memory",
            "unknown unit 'XB'",
        ),
        (
            [*C, "resources", "requests"],
            {"cpu": "lots"},
            "spec.template.spec.containers[0].resources.requests.cpu",
            "not a number of cores",
        ),
        (
            [*C, "resources", "limits", "ephemeral-storage"],
            "1Gi",
            "spec.template.spec.containers[0].resources.limits.ephemeral-storage",
            "not supported",
        ),
        ([*C, "livenessProbe"], {}, "spec.template.spec.containers[0].livenessProbe", "supported"),
        (
            [*C, "env"],
            [{"name": "A", "valueFrom": {}}],
            "spec.template.spec.containers[0].env[0].valueFrom",
            "env field",
        ),
        (
            ["spec", "template", "spec", "tolerations"],
            [],
            "spec.template.spec.tolerations",
            "pod spec field",
        ),
        (
            ["spec", "template", "spec", "restartPolicy"],
            "OnFailure",
            "spec.template.spec.restartPolicy",
            "must be Never",
        ),
        (
            ["spec", "template", "spec", "schedulerName"],
            "default-scheduler",
            "spec.template.spec.schedulerName",
            "not pier's scheduler",
        ),
        (
            ["spec", "template", "spec", "containers"],
            [],
            "spec.template.spec.containers",
            "0 containers",
        ),
        (["spec", "activeDeadlineSeconds"], 60, "spec.activeDeadlineSeconds", "Job spec field"),
        (["spec", "backoffLimit"], -2, "spec.backoffLimit", "whole number"),
        (["spec", "parallelism"], 0, "spec.parallelism", "at least 1"),
        (["metadata", "name"], "Not_A_Name", "metadata.name", "DNS-1123"),
        (["metadata", "name"], _DELETE, "metadata.name", "is required"),
        (["metadata", "finalizers"], ["x"], "metadata.finalizers", "metadata field"),
        (["spec", "template"], _DELETE, "spec.template", "is required"),
        (
            ["spec", "template", "metadata", "annotations"],
            {FRACTION_ANNOTATION: "2"},
            "spec.template.metadata.annotations.gpu-fraction",
            "not both",
        ),
        ([*C, "command"], "python", "spec.template.spec.containers[0].command", "must be a list"),
    ],
)
def test_bad_fields_are_refused_with_their_path(
    path: list[str | int], value: Any, field: str, words: str
) -> None:
    error = refused(_mutated(path, value))
    assert error.message.startswith("document 1 (Job "), error.message
    assert f"): {field}: " in error.message, error.message
    assert words in error.message
    assert error.status_code == 422


@pytest.mark.parametrize(
    ("fraction", "words"), [("1.5", "strictly between 0 and 1"), ("half", "not a number")]
)
def test_bad_fraction(fraction: str, words: str) -> None:
    error = refused(with_fraction(fill(SEED_BUILD), fraction))
    assert "spec.template.metadata.annotations.gpu-fraction" in error.message
    assert words in error.message


def test_statefulset_rules() -> None:
    error = refused(_mutated(["spec", "selector", "matchLabels", "release"], "x", SEED_BUILD))
    assert "spec.selector.matchLabels.release: selector does not match" in error.message
    error = refused(_mutated(["spec", "template", "spec", "restartPolicy"], "Never", SEED_BUILD))
    assert "restartPolicy: must be Always" in error.message
    error = refused(_mutated(["spec", "volumeClaimTemplates"], [], SEED_BUILD))
    assert "spec.volumeClaimTemplates: StatefulSet spec field" in error.message


def test_duplicate_names_and_label_conflicts() -> None:
    error = refused(fill(SEED_TRAIN, name="a") + "---\n" + fill(SEED_BUILD, name="a"))
    assert error.loc == ["body", 1, "metadata", "name"]
    assert "document 2: metadata.name: 'a' is also the name of document 1" in error.message
    error = refused(_mutated(["metadata", "labels"], {"user": "bob"}))
    assert "spec.template.metadata.labels.user: 'alice' differs from metadata.labels.user" in (
        error.message
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no manifest"),
        ("---\n---\n", "no manifest"),
        ("kind: [unclosed", "not valid YAML at line"),
        ("a: &x [1]\nb: *x\n", "aliases"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("just text", "must be a mapping"),
    ],
)
def test_bad_yaml(text: str, words: str) -> None:
    assert words in refused(text).message


def test_too_many_documents() -> None:
    text = "---\n".join(fill(SEED_TRAIN, name=f"j{i}") for i in range(257))
    assert "at most 256" in refused(text).message


def test_service_errors_are_readdressed_to_the_document() -> None:
    parsed = parse_documents(
        load_documents(fill(SEED_TRAIN, "a") + "---\n" + fill(SEED_BUILD, "b"))
    )
    moved = relocate(Invalid("give a command", loc=["body", 0, "tasks", 0, "command"]), parsed)
    assert moved.loc == ["body", 0, *C, "command"]
    assert moved.message == (
        "document 1 (Job a): spec.template.spec.containers[0].command: give a command"
    )
    moved = relocate(Forbidden("not you", loc=["body", 1, "labels", "user"]), parsed)
    assert isinstance(moved, Forbidden)
    assert moved.loc == ["body", 1, "spec", "template", "metadata", "labels", "user"]
    assert manifest_loc(parsed[1], ["project"]) == ["body", 1, "metadata", "namespace"]
    untouched = Invalid("x", loc=["query", "project"])
    assert relocate(untouched, parsed) is untouched


# ---- rendering ---------------------------------------------------------------------------


def _spec(**fields: Any) -> JobSpec:
    body: dict[str, Any] = {"name": "j", "tasks": [{"command": ["true"]}], **fields}
    return JobSpec.model_validate(body)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"tasks": [{"name": "a"}, {"name": "b"}]}, ["spec", "tasks"]),
        ({"submission_id": "app-1"}, ["spec", "submission_id"]),
        ({"lifecycle": {"schedule_timeout": 30}}, ["spec", "lifecycle", "schedule_timeout"]),
        ({"lifecycle": {"stop_grace_period": 1.5}}, ["spec", "lifecycle", "stop_grace_period"]),
        (
            {"kind": "interactive", "lifecycle": {"backoff_limit": 2}},
            ["spec", "lifecycle", "backoff_limit"],
        ),
        (
            {"tasks": [{"command": ["x"], "runtime_env": {"pip": ["numpy"]}}]},
            ["spec", "tasks", 0, "runtime_env"],
        ),
        (
            {"tasks": [{"command": ["x"], "ports": [{"container_port": 80, "expose": "http"}]}]},
            ["spec", "tasks", 0, "ports", 0],
        ),
    ],
)
def test_what_a_manifest_cannot_carry_is_named(fields: dict[str, Any], loc: list[Any]) -> None:
    with pytest.raises(Unrepresentable) as caught:
        render_manifest(_spec(**fields))
    assert caught.value.loc == loc


def test_native_job_without_image_renders_without_one() -> None:
    manifest = render_manifest(_spec(project="p", tasks=[{"command": ["python", "t.py"]}]))
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert "image" not in container and container["command"] == ["python", "t.py"]


# ---- the round trip ----------------------------------------------------------------------

_name = st.from_regex(r"[a-z]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12
)
_key = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z]{1,4}/[a-z]{1,6})?", fullmatch=True)
_reserved = {"pier/description", "kubectl.kubernetes.io/last-applied-configuration"}


@st.composite
def representable_specs(draw: st.DrawFn) -> JobSpec:
    """Random specs within what a manifest carries (see the module's docstring)."""
    kind = draw(st.sampled_from([JobKind.TRAIN, JobKind.INTERACTIVE]))
    name = draw(_name)
    gpu = draw(
        st.one_of(
            st.just(0.0),
            st.integers(1, 8).map(float),
            st.integers(1, 99).map(lambda n: n / 100),
        )
    )
    cpu = draw(st.none() | st.integers(1, 64_000).map(lambda m: m / 1000))
    memory = draw(st.none() | st.integers(1, 2**45))
    resources: dict[str, Any] = {
        "gpu": gpu,
        "cpu": cpu,
        "cpu_limit": None if cpu is None else cpu + draw(st.integers(0, 8)),
        "memory": memory,
        "memory_limit": None if memory is None else memory * draw(st.integers(1, 4)),
        "gpu_model": draw(st.none() | st.sampled_from(["A100", "H100-80GB"])),
        "node_pool": draw(st.none() | _name),
        "node_selector": draw(st.dictionaries(_key, _text, max_size=2)),
        "custom": draw(
            st.dictionaries(
                st.sampled_from(["example.com/fpga", "rdma/hca"]),
                st.integers(0, 8).map(lambda n: n / 2),
                max_size=2,
            )
        ),
    }
    if draw(st.booleans()):
        resources["large_shm"] = True
        resources["shm"] = draw(st.none() | st.integers(1, 64).map(lambda g: g * 2**30))
    task: dict[str, Any] = {
        "name": draw(_name),
        "replicas": draw(st.integers(1, 4)),
        "image": draw(st.none() | st.sampled_from(["ubuntu", "gcr.io/run-ai-demo/quickstart"])),
        "image_pull_policy": draw(st.none() | st.sampled_from(["Always", "IfNotPresent"])),
        "command": draw(st.lists(_text, max_size=3)),
        "args": draw(st.lists(_text, max_size=3)),
        "env": draw(
            st.dictionaries(
                st.from_regex(r"[A-Z_][A-Z0-9_]{0,6}", fullmatch=True), _text, max_size=3
            )
        ),
        "working_dir": draw(st.none() | st.just("/work")),
        "resources": resources,
        "ports": draw(
            st.lists(
                st.fixed_dictionaries(
                    {"container_port": st.integers(1, 65535)},
                    optional={
                        "host_port": st.integers(1, 65535),
                        "protocol": st.sampled_from(["tcp", "udp"]),
                        "name": _name,
                    },
                ),
                max_size=2,
            )
        ),
        "volumes": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "host_path": st.just("/data"),
                        "mount_path": st.just("/mnt/d"),
                        "read_only": st.booleans(),
                    }
                ),
                max_size=2,
            )
        ),
        "pvcs": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "claim_name": _name,
                        "mount_path": st.just("/mnt/p"),
                        "read_only": st.booleans(),
                    }
                ),
                max_size=2,
            )
        ),
        "stdin": draw(st.booleans()),
        "tty": draw(st.booleans()),
        "host_ipc": draw(st.booleans()),
        "host_network": draw(st.booleans()),
        "prevent_privilege_escalation": draw(st.none() | st.booleans()),
    }
    lifecycle: dict[str, Any] = {"stop_grace_period": draw(st.integers(0, 3600))}
    if kind is JobKind.TRAIN:
        lifecycle["backoff_limit"] = draw(st.none() | st.integers(0, 10))
        lifecycle["completions"] = draw(st.none() | st.integers(1, 4))
        lifecycle["ttl_after_finish"] = draw(st.none() | st.integers(0, 86400))
    labels = draw(st.dictionaries(_key.filter(lambda k: k != "release"), _text, max_size=3))
    metadata = draw(st.dictionaries(_key.filter(lambda k: k not in _reserved), _text, max_size=3))
    use_prefix = draw(st.booleans())
    spec = {
        "name": None if use_prefix and draw(st.booleans()) else name,
        "name_prefix": draw(_name) if use_prefix else None,
        "project": draw(_name),
        "description": draw(st.none() | _text),
        "labels": labels,
        "metadata": metadata,
        "kind": kind.value,
        "preemptible": draw(st.none() | st.booleans()),
        "tasks": [task],
        "lifecycle": lifecycle,
    }
    return JobSpec.model_validate(spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(representable_specs())
def test_round_trip_spec_manifest_spec(spec: JobSpec) -> None:
    manifest = render_manifest(spec)
    kubernetes_validate.validate(copy.deepcopy(manifest), K8S_VERSION, strict=True)
    parsed = parse_one(render_yaml([manifest]))
    assert parsed.namespace == f"runai-{spec.project}"
    assert parsed.spec == spec.model_copy(update={"project": None})
