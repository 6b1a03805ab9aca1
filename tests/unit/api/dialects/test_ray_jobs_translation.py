"""The Ray Jobs dialect as pure translation: bodies to JobSpec, jobs to Ray's JobDetails
(checked against the Ray client's own pydantic model), errors in the seed's words."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from ray.dashboard.modules.job.pydantic_models import JobDetails
from tests.seed_examples import SEED_BODY

from pier.api.dialects import ray_jobs as d
from pier.errors import Conflict, Invalid, NotFound, Unschedulable
from pier.models import JobView, ReplicaView
from pier.spec import JobSpec
from pier.status import JobStatus, Reason


def parse(body: dict[str, Any], **headers: str) -> d.RaySubmission:
    return d.parse_submission(body, {k.replace("_", "-"): v for k, v in headers.items()})


def test_seed_body_translates_field_by_field() -> None:
    sub = parse(SEED_BODY, **{"X-Tenant-Id": "team-a", "X-Pool-Label": "npu-pool"})
    spec = d.to_spec(sub)
    task = spec.tasks[0]
    assert spec.submission_id == "app-1234"
    assert spec.name == "app-1234"
    assert spec.project == "team-a"
    assert spec.metadata == SEED_BODY["metadata"]
    assert task.command == ["/bin/sh", "-c", "python script.py"]
    assert task.env == {"PYTHONUNBUFFERED": "1", **SEED_BODY["runtime_env"]["env_vars"]}
    assert task.runtime_env is not None
    assert task.runtime_env.working_dir == "file:///usr1/deploy/file.zip"
    assert task.runtime_env.pip == ["numpy==1.24", "scipy==1.11.0"]
    assert task.resources.cpu == 3
    assert task.resources.memory == 134217728
    assert task.resources.custom == {"NPU": 0}
    assert task.resources.node_pool == "npu-pool"
    assert task.resources.gpu == 0
    assert spec.lifecycle.backoff_limit == 0  # Ray never retries an entrypoint
    assert spec.lifecycle.stop_grace_period == 3.0
    JobSpec.model_validate(spec.dump())  # what is stored reads back


def test_client_forms_are_accepted() -> None:
    """What the stock client sends: pip normalised to a dict, _ray_commit injected, job_id
    as the deprecated alias, label selectors."""
    sub = parse(
        {
            "entrypoint": "echo hi",
            "job_id": "legacy-1",
            "runtime_env": {
                "pip": {"packages": ["requests"], "pip_check": False},
                "_ray_commit": "b7f4",
                "excludes": ["*.log"],
            },
            "metadata": {},
            "entrypoint_num_gpus": 0.5,
            "entrypoint_label_selector": {"zone": "a"},
        }
    )
    spec = d.to_spec(sub)
    assert sub.submission_id == "legacy-1"
    assert spec.tasks[0].runtime_env is not None
    assert spec.tasks[0].runtime_env.pip == ["requests"]
    assert spec.tasks[0].resources.gpu == 0.5
    assert spec.tasks[0].resources.node_selector == {"zone": "a"}


def test_missing_submission_id_is_generated_with_the_app_prefix() -> None:
    ids = {parse({"entrypoint": "true", "runtime_env": {}}).submission_id for _ in range(50)}
    assert len(ids) == 50
    for sid in ids:
        assert sid.startswith("app-") and len(sid) == 20
        assert not set(sid[4:]) & set("IloO0")


def test_a_submission_id_that_is_no_pier_name_gets_a_generated_name() -> None:
    spec = d.to_spec(parse({"entrypoint": "true", "runtime_env": {}, "submission_id": "Ray_X"}))
    assert spec.name is None and spec.name_prefix == "ray"
    assert spec.submission_id == "Ray_X"


@pytest.mark.parametrize(
    ("patch", "loc", "words"),
    [
        ({"entrypoint": None}, "entrypoint", "is required"),
        ({"entrypoint": "  "}, "entrypoint", "non-empty"),
        ({"runtime_env": None}, "runtime_env", "is required"),
        ({"runtime_env": []}, "runtime_env", "must be an object"),
        ({"entrypoint_num_cpus": 0.29}, "entrypoint_num_cpus", "out of range"),
        ({"entrypoint_num_cpus": 16.01}, "entrypoint_num_cpus", "out of range"),
        ({"entrypoint_num_cpus": True}, "entrypoint_num_cpus", "out of range"),
        ({"entrypoint_num_cpus": "2"}, "entrypoint_num_cpus", "out of range"),
        ({"entrypoint_memory": 134217727}, "entrypoint_memory", "out of range"),
        ({"entrypoint_memory": 1125899906842625}, "entrypoint_memory", "out of range"),
        ({"entrypoint_memory": 1.5e9}, "entrypoint_memory", "integer"),
        ({"entrypoint_num_gpus": -1}, "entrypoint_num_gpus", "number of GPUs"),
        ({"entrypoint_num_gpus": 2.5}, "entrypoint_num_gpus", "whole GPUs"),
        ({"entrypoint_resources": {"GPU": 1}}, "entrypoint_resources.GPU", "entrypoint_num_gpus"),
        ({"entrypoint_resources": {"memory": 1}}, "entrypoint_resources.memory", "memory"),
        ({"entrypoint_resources": {"NPU": "1"}}, "entrypoint_resources.NPU", "non-negative"),
        ({"entrypoint_label_selector": {"z": "!a"}}, "entrypoint_label_selector.z", "equality"),
        ({"metadata": {"ttl": 1250}}, "metadata.ttl", "string"),
        ({"metadata": []}, "metadata", "object"),
        ({"submission_id": "a b"}, "submission_id", "letters"),
        ({"submission_id": "x" * 129}, "submission_id", "letters"),
        ({"submission_id": "a", "job_id": "b"}, "job_id", "differs"),
        ({"runtime_env": {"py_modules": []}}, "runtime_env.py_modules", "not supported"),
        ({"runtime_env": {"working_dir": "s3://b/x.zip"}}, "runtime_env.working_dir", "gcs"),
        ({"runtime_env": {"working_dir": "file://rel.zip"}}, "runtime_env.working_dir", "abs"),
        ({"runtime_env": {"env_vars": {"A": 1}}}, "runtime_env.env_vars.A", "string"),
        ({"runtime_env": {"env_vars": {"A=B": "1"}}}, "runtime_env.env_vars", "variable"),
        ({"runtime_env": {"pip": "numpy"}}, "runtime_env.pip", "list"),
        ({"runtime_env": {"pip": ["--index-url=x"]}}, "runtime_env.pip.0", "options"),
        ({"runtime_env": {"pip": {"packages": ["a"], "pip_check": True}}}, "pip.pip_check", ""),
        ({"runtime_env": {"pip": {"packages": ["a"], "pip_version": "==23"}}}, "pip_version", ""),
        ({"entrypoint_num_cpu": 1}, "entrypoint_num_cpu", "unknown field"),
    ],
)
def test_bad_bodies_name_the_field(patch: dict[str, Any], loc: str, words: str) -> None:
    body = {"entrypoint": "true", "runtime_env": {}, **patch}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(Invalid) as caught:
        parse(body)
    assert loc in caught.value.message.split(":")[0]
    assert words in caught.value.message


def test_nulls_count_as_absent_and_the_body_must_be_an_object() -> None:
    sub = parse({"entrypoint": "true", "runtime_env": {}, "metadata": None, "job_id": None})
    assert sub.metadata == {}
    with pytest.raises(Invalid, match="JSON object"):
        d.parse_submission(["entrypoint"], {})


def test_headers_are_trimmed_and_bounded() -> None:
    sub = parse({"entrypoint": "true", "runtime_env": {}}, **{"X-Tenant-Id": "  "})
    assert sub.tenant is None
    with pytest.raises(Invalid, match="X-Pool-Label"):
        parse({"entrypoint": "true", "runtime_env": {}}, **{"X-Pool-Label": "p" * 129})
    with pytest.raises(Invalid, match="X-Tenant-Id"):
        parse({"entrypoint": "true", "runtime_env": {}}, **{"X-Tenant-Id": "t" * 64})
    longest = {"X-Tenant-Id": "t" * 63, "X-Pool-Label": "p" * 128}
    spec = d.to_spec(parse({"entrypoint": "true", "runtime_env": {}}, **longest))
    assert spec.project == "t" * 63 and spec.tasks[0].resources.node_pool == "p" * 128


# -- JobDetails ---------------------------------------------------------------------------


def _view(status: JobStatus, **fields: Any) -> JobView:
    spec = fields.pop("spec", None) or d.to_spec(parse(copy.deepcopy(SEED_BODY)))
    values: dict[str, Any] = {
        "id": "0b5f0f4e-0000-4000-8000-000000000001",
        "name": "app-1234",
        "project": "team-a",
        "owner": "alice",
        "status": status,
        "kind": "train",
        "preemptible": True,
        "gpu": 0.0,
        "created_at": 1_700_000_000.25,
        "updated_at": 1_700_000_001.0,
        "submission_id": "app-1234",
        "spec": spec,
        **fields,
    }
    return JobView(**values)


@pytest.mark.parametrize(
    ("status", "ray"),
    [
        (JobStatus.PENDING, "PENDING"),
        (JobStatus.RUNNING, "RUNNING"),
        (JobStatus.UNKNOWN, "RUNNING"),
        (JobStatus.SUCCEEDED, "SUCCEEDED"),
        (JobStatus.FAILED, "FAILED"),
        (JobStatus.STOPPED, "STOPPED"),
    ],
)
def test_every_status_gives_details_the_ray_client_parses(status: JobStatus, ray: str) -> None:
    terminal = status.is_terminal
    view = _view(
        status,
        exit_code=143 if terminal else None,
        finished_at=1_700_000_002.5 if terminal else None,
        reason=Reason.ERROR.value if status is JobStatus.FAILED else None,
        replicas=[ReplicaView(task="main", index=0, node="node-1")],
    )
    body = d.job_details(view)
    # The client's own model, from JSON as it would arrive: strict about every type.
    details = JobDetails.model_validate(json.loads(json.dumps(body)))
    assert details.status.value == ray
    assert details.type.value == "SUBMISSION"
    assert details.submission_id == "app-1234"
    assert details.job_id == view.id
    assert details.entrypoint == "python script.py"
    assert details.start_time == 1_700_000_000_250
    assert details.end_time == (1_700_000_002_500 if terminal else None)
    assert details.metadata == SEED_BODY["metadata"]
    assert details.driver_node_id == "node-1"
    assert details.driver_exit_code == (None if ray == "STOPPED" or not terminal else 143)
    assert details.runtime_env == {
        "working_dir": "file:///usr1/deploy/file.zip",
        "env_vars": {"PYTHONUNBUFFERED": "1", **SEED_BODY["runtime_env"]["env_vars"]},
        "pip": {"packages": ["numpy==1.24", "scipy==1.11.0"], "pip_check": False},
    }
    assert body["entrypoint_num_cpus"] == 3 and body["entrypoint_memory"] == 134217728
    assert body["tenant"] == "team-a" and body["pier_status"] == status.value


def test_messages_and_error_types() -> None:
    pending = d.job_details(_view(JobStatus.PENDING, pending_reason="waiting for 1 GPU"))
    assert pending["message"] == "Job has not started yet. waiting for 1 GPU"
    assert pending["error_type"] is None
    failed = d.job_details(_view(JobStatus.FAILED, exit_code=7, reason=Reason.ERROR.value))
    assert failed["message"] == "Job entrypoint command failed with exit code 7."
    assert failed["error_type"] == "JOB_ENTRYPOINT_COMMAND_ERROR"
    start = d.job_details(
        _view(JobStatus.FAILED, reason=Reason.START_FAILED.value, message="no such file")
    )
    assert start["error_type"] == "JOB_ENTRYPOINT_COMMAND_START_ERROR"
    assert start["message"] == "Job failed: no such file"
    lost = d.job_details(_view(JobStatus.FAILED, reason=Reason.SUPERVISOR_LOST.value))
    assert lost["error_type"] == "JOB_SUPERVISOR_ACTOR_DIED"
    assert d.job_details(_view(JobStatus.RUNNING))["message"] == "Job is currently running."


def test_entrypoint_is_recovered_from_any_command() -> None:
    assert d.entrypoint_of(["/bin/sh", "-c", "echo 'a b'"]) == "echo 'a b'"
    wrapped = ["/py", "-I", "/setup.py", "--pip-env", "/e", "--", "/bin/sh", "-c", "run it"]
    assert d.entrypoint_of(wrapped) == "run it"
    assert (
        d.entrypoint_of(["python", "-c", "print('x y')"]) == "python -c 'print('\"'\"'x y'\"'\"')'"
    )


def test_version_handshake() -> None:
    body = d.version_body()
    assert int(body["version"]) == 4
    assert body["ray_version"] == "2.60.0"


# -- errors -------------------------------------------------------------------------------


def test_unschedulable_in_the_seed_words() -> None:
    error = d.submit_failed(
        "app-9", Unschedulable("cannot be scheduled", problem="no node has node pool 'abc'")
    )
    assert error.status_code == 400
    assert error.message.startswith("create app failed, submissionId:[app-9], err: \n")
    assert "no available resource that meets the request requirements" in error.message
    assert "[Affinity can't be Satisfied] requirements: [no node has node pool 'abc']" in (
        error.message
    )


def test_other_submit_failures() -> None:
    dup = d.submit_failed("a", Conflict("taken", loc=["body", "submission_id"]))
    assert dup.status_code == 409
    assert dup.message.endswith(
        "Job with submission_id a already exists. Please use a different submission_id."
    )
    bad = d.submit_failed("b", Invalid("entrypoint: is required"))
    assert bad.status_code == 400
    assert bad.message == "create app failed, submissionId:[b], err: entrypoint: is required"
    missing = d.submit_failed("c", NotFound("project 'x' not found"))
    assert missing.status_code == 404


def test_errors_render_as_json_strings() -> None:
    response = d.render_error(422, "invalid", 'say "no"', [])
    assert response.status_code == 400
    assert json.loads(bytes(response.body)) == 'say "no"'
    assert d.render_error(404, "not_found", "Job x does not exist.", []).status_code == 404
