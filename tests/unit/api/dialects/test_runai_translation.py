"""The Run:AI dialect's pure translation: every seed parameter into JobSpec and back, the
job-info view, the relaxed JSON reader and the error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pier.api.dialects import runai
from pier.api.dialects.relaxed_json import MalformedBody, loads
from pier.errors import Invalid
from pier.models import JobView, ReplicaView
from pier.spec import JobKind, JobSpec, TaskRole
from pier.status import JobStatus


def parse(**job: Any) -> JobSpec:
    body = {"job": {"project": "team-a", "image": "busybox", **job}}
    return runai.parse_submit(json.dumps(body).encode())


def rejected(**job: Any) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse(**job)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Every parameter of the seed, into JobSpec

PARAMETERS: list[tuple[str, Any, Any]] = [
    ("name", "my-job", lambda s: s.name == "my-job"),
    ("project", "team-b", lambda s: s.project == "team-b"),
    ("interactive", True, lambda s: s.kind is JobKind.INTERACTIVE),
    ("image", "gcr.io/x/y:1", lambda s: s.tasks[0].image == "gcr.io/x/y:1"),
    ("command", ["python", "t.py"], lambda s: s.tasks[0].command == ["python", "t.py"]),
    ("arguments", ["--lr", "0.1"], lambda s: s.tasks[0].args == ["--lr", "0.1"]),
    ("environment", {"A": "1"}, lambda s: s.tasks[0].env == {"A": "1"}),
    ("imagePullPolicy", "always", lambda s: s.tasks[0].image_pull_policy == "Always"),
    ("imagePullPolicy", "ifNotPresent", lambda s: s.tasks[0].image_pull_policy == "IfNotPresent"),
    ("imagePullPolicy", "never", lambda s: s.tasks[0].image_pull_policy == "Never"),
    ("stdin", True, lambda s: s.tasks[0].stdin),
    ("tty", True, lambda s: s.tasks[0].tty),
    ("workingDir", "/work", lambda s: s.tasks[0].working_dir == "/work"),
    ("createHomeDir", True, lambda s: s.tasks[0].create_home_dir),
    ("gpu", 0.25, lambda s: s.tasks[0].resources.gpu == 0.25),
    ("gpu", 2, lambda s: s.tasks[0].resources.gpu == 2),
    ("cpu", 0.5, lambda s: s.tasks[0].resources.cpu == 0.5),
    ("cpuLimit", 2, lambda s: s.tasks[0].resources.cpu_limit == 2),
    ("memory", "1G", lambda s: s.tasks[0].resources.memory == 10**9),
    ("memoryLimit", "20M", lambda s: s.tasks[0].resources.memory_limit == 20 * 10**6),
    ("largeShm", True, lambda s: s.tasks[0].resources.large_shm),
    (
        "pvc",
        [{"storageClass": "nfs", "size": "1Gi", "path": "/d", "readOnly": True}],
        lambda s: (
            [(p.storage_class, p.size, p.mount_path, p.read_only) for p in s.tasks[0].pvcs]
            == [("nfs", 2**30, "/d", True)]
        ),
    ),
    (
        "volume",
        {"/raid/public/john/data": "/root/data"},
        lambda s: (
            [(v.host_path, v.mount_path, v.read_only) for v in s.tasks[0].volumes]
            == [("/raid/public/john/data", "/root/data", False)]
        ),
    ),
    ("hostIpc", True, lambda s: s.tasks[0].host_ipc),
    ("hostNetwork", True, lambda s: s.tasks[0].host_network),
    (
        "ports",
        [{"container": 80, "external": 30080}],
        lambda s: [(p.container_port, p.host_port) for p in s.tasks[0].ports] == [(80, 30080)],
    ),
    ("backoffLimit", 3, lambda s: s.lifecycle.backoff_limit == 3 and s.backoff_limit == 3),
    ("completions", 1, lambda s: s.lifecycle.completions == 1),
    (
        "parallelism",
        3,
        lambda s: s.lifecycle.parallelism == 3 and s.tasks[0].replicas == 3,
    ),
    ("elastic", True, lambda s: s.elastic),
    ("preemptible", True, lambda s: s.preemptible is True),
    ("serviceType", "loadbalancer", lambda s: s.service_type == "loadbalancer"),
    ("serviceType", "NodePort", lambda s: s.service_type == "nodeport"),
    ("serviceType", "ingress", lambda s: s.service_type == "ingress"),
    ("ttlAfterFinish", "5s", lambda s: s.lifecycle.ttl_after_finish == 5),
    ("ttlAfterFinish", "2m", lambda s: s.lifecycle.ttl_after_finish == 120),
    ("ttlAfterFinish", "3h", lambda s: s.lifecycle.ttl_after_finish == 3 * 3600),
    ("preventPrivilegeEscalation", True, lambda s: s.tasks[0].prevent_privilege_escalation),
    ("nodeType", "dgx-a100", lambda s: s.tasks[0].resources.node_pool == "dgx-a100"),
    ("jobNamePrefix", "hpo", lambda s: s.name_prefix == "hpo" and s.name is None),
]


@pytest.mark.parametrize(("key", "value", "holds"), PARAMETERS, ids=[p[0] for p in PARAMETERS])
def test_each_seed_parameter_lands_in_the_spec(key: str, value: Any, holds: Any) -> None:
    spec = parse(**{key: value})
    assert holds(spec), spec.dump()
    # ... and comes back out under the same name.
    assert key in runai.spec_to_job(spec)


def test_the_seed_lists_every_parameter_handled_here() -> None:
    seed_parameters = {
        "name", "project", "interactive", "image", "command", "arguments", "environment",
        "imagePullPolicy", "stdin", "tty", "workingDir", "createHomeDir", "gpu", "cpu",
        "cpuLimit", "memory", "memoryLimit", "largeShm", "pvc", "volume", "hostIpc",
        "hostNetwork", "ports", "backoffLimit", "completions", "parallelism", "elastic",
        "preemptible", "serviceType", "ttlAfterFinish", "preventPrivilegeEscalation",
        "nodeType", "jobNamePrefix",
    }  # fmt: skip
    assert set(runai.RunAiJob.model_json_schema(by_alias=True)["properties"]) == seed_parameters
    assert {p[0] for p in PARAMETERS} == seed_parameters


def test_completions_below_parallelism_end_the_job_early() -> None:
    hpo = parse(completions=1, parallelism=3).tasks[0]
    assert (hpo.replicas, hpo.min_succeeded) == (3, 1)
    assert parse(completions=3, parallelism=3).tasks[0].min_succeeded is None
    assert parse(completions=1).tasks[0].min_succeeded is None


def test_defaults() -> None:
    spec = parse()
    assert spec.kind is JobKind.TRAIN
    assert spec.is_preemptible and spec.backoff_limit == 6
    assert spec.name is None and spec.tasks[0].replicas == 1
    assert spec.tasks[0].resources.gpu == 0
    interactive = parse(interactive=True)
    assert not interactive.is_preemptible and interactive.backoff_limit == 0
    assert parse(interactive=True, preemptible=True).is_preemptible


@pytest.mark.parametrize(
    ("job", "command", "args"),
    [
        ({"command": True, "arguments": ["sh", "-c", "echo hi"]}, ["sh", "-c", "echo hi"], []),
        ({"command": ["python"], "arguments": ["t.py"]}, ["python"], ["t.py"]),
        ({"command": "sh -c 'echo hi there'"}, ["sh", "-c", "echo hi there"], []),
        ({"command": False, "arguments": ["--epochs", "3"]}, [], ["--epochs", "3"]),
        ({"arguments": ["--epochs", "3"]}, [], ["--epochs", "3"]),
        ({}, [], []),
    ],
)
def test_command_forms(job: dict[str, Any], command: list[str], args: list[str]) -> None:
    spec = parse(**job)
    assert (spec.tasks[0].command, spec.tasks[0].args) == (command, args)


def test_the_seed_environment_example_with_numbers() -> None:
    raw = b"""{"job": {"project": "p", "image": "i",
      "environment": {
        "BATCH_SIZE"=50,
        "LEARNING_RAGE"=0.2,
      }
    }}"""
    spec = runai.parse_submit(raw)
    assert spec.tasks[0].env == {"BATCH_SIZE": "50", "LEARNING_RAGE": "0.2"}
    assert parse(environment={"DEBUG": True}).tasks[0].env == {"DEBUG": "true"}


@pytest.mark.parametrize(
    ("item", "container", "external"),
    [(8080, 8080, None), ("30080:80", 80, 30080), ("22", 22, None), ({"container": 9}, 9, None)],
)
def test_port_forms(item: Any, container: int, external: int | None) -> None:
    [port] = parse(ports=[item]).tasks[0].ports
    assert (port.container_port, port.host_port) == (container, external)


def test_read_only_volume() -> None:
    [volume] = parse(volume={"/src": "/dst:ro"}).tasks[0].volumes
    assert (volume.mount_path, volume.read_only) == ("/dst", True)
    assert runai.spec_to_job(parse(volume={"/src": "/dst:ro"}))["volume"] == {"/src": "/dst:ro"}


# ---------------------------------------------------------------------------------------------
# Rejections name the field


@pytest.mark.parametrize(
    ("job", "loc", "says"),
    [
        ({"gpu": -1}, ["body", "job", "gpu"], "greater than or equal to 0"),
        ({"gpu": "lots"}, ["body", "job", "gpu"], "valid number"),
        ({"gpu": True}, ["body", "job", "gpu"], "valid number"),
        ({"gpu": 2.5}, ["body", "job", "gpu"], "fraction between 0 and 1"),
        ({"memory": "12XB"}, ["body", "job", "memory"], "unknown unit 'XB'"),
        ({"memory": "1G", "memoryLimit": 5}, ["body", "job", "memoryLimit"], "less than memory"),
        ({"cpu": 2, "cpuLimit": 1}, ["body", "job", "cpuLimit"], "less than cpu"),
        ({"backoffLimit": 1.5}, ["body", "job", "backoffLimit"], "valid integer"),
        ({"backoffLimit": -1}, ["body", "job", "backoffLimit"], "greater than or equal to 0"),
        ({"interactive": True, "backoffLimit": 1}, ["body", "job", "backoffLimit"], "training"),
        ({"stdin": "true"}, ["body", "job", "stdin"], "valid boolean"),
        ({"name": "UPPER"}, ["body", "job", "name"], "not a job name"),
        ({"jobNamePrefix": "x" * 41}, ["body", "job", "jobNamePrefix"], "at most 40"),
        ({"command": True}, ["body", "job", "arguments"], "command: true"),
        ({"command": "sh -c 'open"}, ["body", "job", "command"], "cannot split"),
        ({"command": 1}, ["body", "job", "command"], "must be true, an array of strings"),
        ({"command": ["sh", 1]}, ["body", "job", "command"], "strings only"),
        ({"environment": {"A=B": "1"}}, ["body", "job", "environment"], "not a valid"),
        ({"environment": {"A": None}}, ["body", "job", "environment", "A"], "valid string"),
        ({"ports": ["http"]}, ["body", "job", "ports", 0], "is not a port"),
        (
            {"ports": [{"container": 1, "external": 2, "autoGenerate": True}]},
            ["body", "job", "ports", 0],
            "autoGenerate",
        ),
        ({"ports": [{"container": 0}]}, ["body", "job", "ports", 0, "container"], "greater"),
        ({"pvc": [{"size": "1G"}]}, ["body", "job", "pvc", 0, "path"], "required"),
        ({"volume": {"/a": ""}}, ["body", "job", "volume"], "does not map"),
        ({"ttlAfterFinish": "5 minutes"}, ["body", "job", "ttlAfterFinish"], "duration"),
        ({"serviceType": "clusterip"}, ["body", "job", "serviceType"], "loadbalancer"),
        ({"imagePullPolicy": 1}, ["body", "job", "imagePullPolicy"], "valid string"),
        ({"project": ""}, ["body", "job", "project"], "at least 1 character"),
        ({"gpus": 1}, ["body", "job", "gpus"], "unknown parameter"),
    ],
)
def test_rejections_name_the_field(job: dict[str, Any], loc: list[Any], says: str) -> None:
    error = rejected(**job)
    assert error.loc == loc
    assert says in error.message
    assert error.message.startswith(runai.error_field(loc) + ": ")


def test_several_problems_are_all_named() -> None:
    error = rejected(gpu="lots", memory="12XB", project=None)
    assert error.message.count(";") == 2
    for field in ("job.gpu", "job.memory", "job.project"):
        assert field in error.message


def test_missing_required_parameters() -> None:
    with pytest.raises(Invalid) as caught:
        runai.parse_submit(b'{"job": {}}')
    assert caught.value.message == "job.project: required; job.image: required"


# ---------------------------------------------------------------------------------------------
# Relaxed JSON


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"a": 1,}', {"a": 1}),
        ('{"a": [1, 2 ,\n ] ,\n}', {"a": [1, 2]}),
        ('{"a"=1, "b" = "x=y,}"}', {"a": 1, "b": "x=y,}"}),
        ('{"a": "quote \\" ,}"}', {"a": 'quote " ,}'}),
        ('{"a": "=", "b": ",]"}', {"a": "=", "b": ",]"}),
    ],
)
def test_relaxed_json_reads_the_seeds_slips(text: str, value: Any) -> None:
    assert loads(text.encode()) == value


@pytest.mark.parametrize(
    "text", ['{"a": 1', '{"a": 1,,}', "{'a': 1}", '{"a": NaN}', '{"a": Infinity}', "\xff"]
)
def test_relaxed_json_still_rejects_what_is_broken(text: str) -> None:
    with pytest.raises(MalformedBody) as caught:
        loads(text.encode("latin-1"))
    assert caught.value.status_code == 400


def _containers_of(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)


_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(), _containers_of)


@given(_json_values)
def test_relaxed_json_agrees_with_json_on_valid_documents(value: Any) -> None:
    text = json.dumps(value)
    assert loads(text.encode()) == value
    assert loads(json.dumps(value, indent=2, ensure_ascii=False).encode()) == value


# ---------------------------------------------------------------------------------------------
# JobSpec -> Run:AI -> JobSpec

_names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
_paths = st.from_regex(r"/[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True)
_words = st.lists(st.text(min_size=1, max_size=8), max_size=3)
_quantities = st.sampled_from(["1G", "20M", "512Mi", "1Gi", "1500M", "3T", 1234, "7K"])
_bodies = st.fixed_dictionaries(
    {"project": _names, "image": st.text(min_size=1, max_size=20)},
    optional={
        "name": _names,
        "interactive": st.booleans(),
        "command": st.one_of(_words.filter(bool), st.just(True)),
        "arguments": _words.filter(bool),
        "environment": st.dictionaries(st.from_regex(r"[A-Z_]{1,6}", fullmatch=True), st.text()),
        "imagePullPolicy": st.sampled_from(["always", "ifNotPresent", "never", "Always"]),
        "stdin": st.booleans(),
        "tty": st.booleans(),
        "workingDir": _paths,
        "createHomeDir": st.booleans(),
        "gpu": st.one_of(st.integers(0, 8), st.sampled_from([0.1, 0.25, 0.5, 0.75])),
        "cpu": st.sampled_from([0.1, 0.5, 1, 2]),
        "memory": _quantities,
        "largeShm": st.booleans(),
        "pvc": st.lists(
            st.fixed_dictionaries(
                {"path": _paths},
                optional={
                    "storageClass": _names,
                    "size": _quantities,
                    "readOnly": st.booleans(),
                },
            ),
            max_size=2,
        ),
        "volume": st.dictionaries(_paths, _paths.map(lambda p: p + ":ro") | _paths, max_size=2),
        "hostIpc": st.booleans(),
        "hostNetwork": st.booleans(),
        "ports": st.lists(
            st.fixed_dictionaries(
                {"container": st.integers(1, 65535)},
                optional={"external": st.integers(1, 65535)},
            ),
            max_size=2,
        ),
        "completions": st.integers(1, 4),
        "parallelism": st.integers(1, 4),
        "elastic": st.booleans(),
        "preemptible": st.booleans(),
        "serviceType": st.sampled_from(["loadbalancer", "nodeport", "ingress"]),
        "ttlAfterFinish": st.sampled_from(["5s", "2m", "3h", "1h30m"]) | st.integers(0, 9999),
        "preventPrivilegeEscalation": st.booleans(),
        "nodeType": _names,
        "jobNamePrefix": _names,
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_bodies, st.integers(0, 6))
def test_spec_to_runai_and_back_is_the_same_spec(job: dict[str, Any], backoff: int) -> None:
    if job.get("command") is True and "arguments" not in job:
        job["arguments"] = ["run"]
    if not job.get("interactive"):
        job["backoffLimit"] = backoff
    spec = runai.parse_submit(json.dumps({"job": job}).encode())
    rendered = runai.spec_to_job(spec)
    assert runai.parse_submit(json.dumps({"job": rendered}).encode()) == spec
    assert runai.spec_to_job(runai.parse_submit(json.dumps({"job": rendered}).encode())) == rendered


def test_rendering_uses_the_seeds_units() -> None:
    spec = parse(memory=2**30, memoryLimit=3 * 10**9, ttlAfterFinish=7200, gpu=1.0, cpu=2.0)
    job = runai.spec_to_job(spec)
    assert job["memory"] == "1Gi"
    assert job["memoryLimit"] == "3G"
    assert job["ttlAfterFinish"] == "2h"
    assert job["gpu"] == 1 and isinstance(job["gpu"], int)
    assert job["cpu"] == 2 and isinstance(job["cpu"], int)
    assert runai.spec_to_job(parse(ttlAfterFinish=1.5))["ttlAfterFinish"] == 1.5
    assert runai.spec_to_job(parse(memory=1001))["memory"] == "1001"


def test_a_spec_from_elsewhere_renders_what_runai_can_say() -> None:
    spec = JobSpec(
        project="p",
        tasks=[TaskRole(name="ps", image="a", command=["x"]), TaskRole(name="w", image="b")],
    )
    assert runai.spec_to_job(spec) == {"project": "p", "image": "a", "command": ["x"]}


# ---------------------------------------------------------------------------------------------
# JobView -> job info


def _view(**overrides: Any) -> JobView:
    values: dict[str, Any] = {
        "id": "b915c8ec-19b6-4135-b473-164971278fff",
        "name": "job-0",
        "project": "project-0",
        "owner": "jhon",
        "status": JobStatus.RUNNING,
        "kind": "train",
        "preemptible": True,
        "gpu": 1.0,
        "created_at": 1609340976.0,
        "updated_at": 1609340977.0,
        "replicas": [ReplicaView(task="main", index=0, node="node-0", devices=[0])],
        "spec": JobSpec(project="project-0", tasks=[TaskRole(image="gcr.io/run-ai-demo/x")]),
    }  # fmt: skip
    values.update(overrides)
    return JobView(**values)


def test_job_info_is_the_seeds_example() -> None:
    assert runai.job_info(_view()) == {
        "id": "b915c8ec-19b6-4135-b473-164971278fff",
        "project": "project-0",
        "name": "job-0",
        "status": "Running",
        "type": "Train",
        "nodes": "node-0",
        "createdAt": 1609340976000,
        "images": "gcr.io/run-ai-demo/x",
        "user": "jhon",
        "currentAllocatedGPUs": 1,
    }


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        (JobStatus.PENDING, "Pending"),
        (JobStatus.RUNNING, "Running"),
        (JobStatus.SUCCEEDED, "Succeeded"),
        (JobStatus.FAILED, "Failed"),
        (JobStatus.STOPPED, "Failed"),
        (JobStatus.UNKNOWN, "Unknown"),
    ],
)
def test_status_uses_the_seeds_five_names(status: JobStatus, shown: str) -> None:
    info = runai.job_info(_view(status=status))
    assert info["status"] == shown
    assert info["currentAllocatedGPUs"] == (0 if status.is_terminal else 1)


def test_job_info_of_a_spread_interactive_job() -> None:
    replicas = [
        ReplicaView(task="main", index=0, node="n1", devices=[0], gpu_fraction=0.5),
        ReplicaView(task="main", index=1, node="n2", devices=[3], gpu_fraction=0.5),
        ReplicaView(task="main", index=2, node="n1", devices=[1, 2]),
    ]
    spec = JobSpec(
        project="p", kind=JobKind.INTERACTIVE, tasks=[TaskRole(image="a"), TaskRole(name="b")]
    )
    info = runai.job_info(_view(kind="interactive", replicas=replicas, spec=spec))
    assert info["type"] == "Interactive"
    assert info["nodes"] == "n1,n2"
    assert info["images"] == "a"
    assert info["currentAllocatedGPUs"] == 3
    unplaced = runai.job_info(_view(status=JobStatus.PENDING, replicas=[]))
    assert (unplaced["nodes"], unplaced["currentAllocatedGPUs"]) == ("", 0)


# ---------------------------------------------------------------------------------------------
# Errors and DELETE bodies


@pytest.mark.parametrize(
    ("loc", "field"),
    [
        (["body", "job", "gpu"], "job.gpu"),
        (["body", "job", "ports", 0, "container"], "job.ports.0.container"),
        (["body", "tasks", 0, "command"], "job.command"),
        (["body", "tasks", 0, "args"], "job.arguments"),
        (["body", "lifecycle", "completions"], "job.completions"),
        (["body", "tasks"], "job"),
        (["body", "project"], "job.project"),
        (["body", "name"], "job.name"),
        (["body", "template"], "template"),
        (["body", 2, "project"], "2.project"),
        (["query", "project"], "project"),
        (["header", "RA-USER"], "RA-USER"),
        (["body"], ""),
        ([], ""),
    ],
)
def test_error_field(loc: list[Any], field: str) -> None:
    assert runai.error_field(loc) == field


def test_error_response_shape() -> None:
    response = runai.error_response(
        422, "invalid", "job.gpu: bad", [{"loc": ["body", "job", "gpu"], "msg": "bad"}]
    )
    assert response.status_code == 422
    assert json.loads(bytes(response.body)) == {
        "status": 422,
        "message": "job.gpu: bad",
        "details": "invalid",
        "field": "job.gpu",
    }
    plain = runai.error_response(401, "unauthenticated", "missing bearer token", [])
    assert json.loads(bytes(plain.body)) == {
        "status": 401,
        "message": "missing bearer token",
        "details": "unauthenticated",
    }


def test_parse_delete() -> None:
    refs = runai.parse_delete(b'[{"name": "a", "project": "p"}, {"name": "b", "project": "q"},]')
    assert [(r.name, r.project) for r in refs] == [("a", "p"), ("b", "q")]
    assert runai.parse_delete(b"[]") == []
    for bad, loc in [
        (b'{"name": "a"}', ["body"]),
        (b'[{"name": "a"}]', ["body", 0, "project"]),
        (b'[{"name": "a", "project": "p", "x": 1}]', ["body", 0, "x"]),
        (json.dumps([{"name": "a", "project": "p"}] * 1001).encode(), ["body"]),
    ]:
        with pytest.raises(Invalid) as caught:
            runai.parse_delete(bad)
        assert caught.value.loc == loc
