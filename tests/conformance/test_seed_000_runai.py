"""Seed 000, the Run:AI researcher REST API, against a real pier server over HTTP: the seed's
own requests, the exact response shapes, jobs that really run to their end, ``RA-USER``,
bad input in Run:AI's error shape with nothing persisted, and project isolation."""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

import httpx
import pytest
from tests.conformance.conftest import Tenant, unique
from tests.integration.conftest import Api

# The seed's "Basic job with auto-generated name", byte for byte (its trailing comma too).
SEED_BASIC_JOB = """
    {
      "job": {
        "project": "RunAiProject",
        "image": "gcr.io/run-ai-demo/quickstart",
        "gpu": 1,
      }
    }
"""
SEED_JOB_INFO_FIELDS = {
    "id",
    "project",
    "name",
    "status",
    "type",
    "nodes",
    "createdAt",
    "images",
    "user",
    "currentAllocatedGPUs",
}
TERMINAL = ("Succeeded", "Failed")


def _with_project(text: str, project: str) -> str:
    return text.replace('"RunAiProject"', json.dumps(project))


def _with_command(text: str, *argv: str) -> str:
    """The seed's text with a command line added (the local executor has no container
    runtime, so an image alone cannot run)."""
    addition = f'"command": true, "arguments": {json.dumps(list(argv))},'
    return text.replace('"gpu": 1,', f'"gpu": 1, {addition}')


def post(server: Api, body: str | dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return server.client.post("/api/job", content=content, headers=headers)


def listing(server: Api, headers: dict[str, str], project: str | None) -> list[dict[str, Any]]:
    params = {"project": project} if project is not None else {}
    r = server.client.get("/api/job", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"data"}
    data: list[dict[str, Any]] = r.json()["data"]
    return data


def ids(server: Api, tenant: Tenant) -> list[str]:
    return [j["id"] for j in listing(server, tenant.auth, tenant.project)]


def info(server: Api, tenant: Tenant, name: str) -> dict[str, Any]:
    found = [j for j in listing(server, tenant.auth, tenant.project) if j["name"] == name]
    assert len(found) == 1, found
    return found[0]


def wait_info(
    server: Api,
    tenant: Tenant,
    name: str,
    statuses: tuple[str, ...] = TERMINAL,
    timeout: float = 20,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = info(server, tenant, name)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"{name} still {job['status']}"
        time.sleep(0.05)


def submit(server: Api, tenant: Tenant, **job: Any) -> str:
    r = post(server, {"job": {"project": tenant.project, "image": "busybox", **job}}, tenant.auth)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"name"}
    name: str = r.json()["name"]
    return name


def assert_runai_error(r: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert set(body) == {"status", "message", "details"} | ({"field"} if field else set()), body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], str) and body["details"]
    if field:
        assert body["field"] == field, body
    return body


# ---------------------------------------------------------------------------------------------
# The seed's examples


def test_the_seed_example_is_read_as_written(server: Api, tenant_factory: Any) -> None:
    tenant = tenant_factory("seed")
    # As written it names a project pier does not have, and an image with no command; the
    # body itself (trailing comma included) is read, and the answer says what is missing.
    r = post(server, SEED_BASIC_JOB, tenant.auth)
    body = assert_runai_error(r, 422, "job.command")
    assert "container runtime" in body["message"]
    r = post(server, _with_project(SEED_BASIC_JOB, tenant.project), tenant.auth)
    assert_runai_error(r, 422, "job.command")
    assert listing(server, tenant.auth, tenant.project) == []

    seed_job = _with_command(_with_project(SEED_BASIC_JOB, tenant.project), "sh", "-c", "echo hi")
    r = post(server, seed_job, {**tenant.auth, "RA-USER": tenant.user})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "job-1"}
    r = post(server, seed_job, tenant.auth)
    assert r.json() == {"name": "job-2"}
    for name in ("job-1", "job-2"):
        job = wait_info(server, tenant, name)
        assert job["status"] == "Succeeded"
        assert job["currentAllocatedGPUs"] == 0
    logs = server.client.get(
        "/v1/jobs/job-1/logs", params={"project": tenant.project}, headers=tenant.auth
    )
    assert logs.text == "hi\n"


def test_the_seed_list_example_shape(server: Api, tenant_factory: Any) -> None:
    tenant = tenant_factory("list")
    before = time.time()
    done = submit(server, tenant, name="job-0", command="sh -c 'exit 0'")
    running = submit(server, tenant, name="job-1", command=["sleep", "30"], gpu=1)
    wait_info(server, tenant, done)
    live = wait_info(server, tenant, running, ("Running",))

    r = server.client.get(f"/api/job?project={tenant.project}", headers=tenant.auth)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    data = r.json()["data"]
    assert [j["name"] for j in data] == ["job-1", "job-0"]  # newest first
    for job in data:
        assert set(job) == SEED_JOB_INFO_FIELDS
        assert re.fullmatch(r"[0-9a-f-]{36}", job["id"])
        assert job["project"] == tenant.project
        assert job["type"] == "Train"
        assert job["images"] == "busybox"
        assert job["user"] == tenant.user
        assert isinstance(job["createdAt"], int)
        assert before * 1000 - 1000 <= job["createdAt"] <= time.time() * 1000 + 1000
        assert job["nodes"] == socket.gethostname()
    assert live == data[0]
    assert live["status"] == "Running"
    assert live["currentAllocatedGPUs"] == 1
    assert data[1]["status"] == "Succeeded"
    assert data[1]["currentAllocatedGPUs"] == 0

    # Deleting stops it; it leaves the listing and frees its GPU.
    r = server.client.request(
        "DELETE",
        "/api/job",
        content=json.dumps([{"name": running, "project": tenant.project}]),
        headers=tenant.auth,
    )
    assert r.status_code == 200, r.text
    assert r.json() == [{"name": running, "ok": True}]
    assert [j["name"] for j in listing(server, tenant.auth, tenant.project)] == ["job-0"]


def test_every_parameter_is_kept_and_the_job_runs(server: Api, tenant_factory: Any) -> None:
    tenant = tenant_factory("full", gpu_quota=4)  # non-preemptible GPUs need quota
    job = {
        "name": "every-field",
        "project": tenant.project,
        "interactive": False,
        "image": "gcr.io/run-ai-demo/quickstart",
        "command": True,
        "arguments": [
            "sh",
            "-c",
            'test "$BATCH_SIZE" = 50 && test "$(pwd)" = /tmp && echo "$PIER_REPLICA_INDEX ok"',
        ],
        "environment": {"BATCH_SIZE": 50, "LEARNING_RATE": "0.2"},
        "imagePullPolicy": "ifNotPresent",
        "stdin": True,
        "tty": True,
        "workingDir": "/tmp",
        "createHomeDir": True,
        "gpu": 0.5,
        "cpu": 0.5,
        "cpuLimit": 1,
        "memory": "20M",
        "memoryLimit": "1G",
        "largeShm": True,
        "pvc": [{"storageClass": "nfs", "size": "10G", "path": "/data", "readOnly": True}],
        "volume": {"/raid/public/john/data": "/root/data"},
        "hostIpc": True,
        "hostNetwork": True,
        "ports": [{"container": 8888, "external": 30888}],
        "backoffLimit": 2,
        "completions": 2,
        "parallelism": 2,
        "elastic": True,
        "preemptible": False,
        "serviceType": "nodeport",
        "ttlAfterFinish": "3h",
        "preventPrivilegeEscalation": True,
        "nodeType": "default",
    }
    r = post(server, {"job": job}, {**tenant.auth, "RA-USER": tenant.user})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "every-field"}
    assert wait_info(server, tenant, "every-field")["status"] == "Succeeded"

    native = server.job("every-field", tenant.token, project=tenant.project)
    assert native["preemptible"] is False
    assert native["owner"] == tenant.user
    task = native["spec"]["tasks"][0]
    assert task["replicas"] == 2
    assert task["command"] == job["arguments"]
    assert task["env"] == {"BATCH_SIZE": "50", "LEARNING_RATE": "0.2"}
    assert task["image_pull_policy"] == "IfNotPresent"
    assert (task["stdin"], task["tty"], task["create_home_dir"]) == (True, True, True)
    assert (task["host_ipc"], task["host_network"]) == (True, True)
    assert task["prevent_privilege_escalation"] is True
    assert task["resources"] == {
        "gpu": 0.5,
        "node_pool": "default",
        "node_selector": {},
        "gpu_model": None,
        "cpu": 0.5,
        "cpu_limit": 1.0,
        "memory": 20_000_000,
        "memory_limit": 1_000_000_000,
        "shm": None,
        "large_shm": True,
        "custom": {},
    }
    assert task["pvcs"] == [
        {
            "claim_name": None,
            "storage_class": "nfs",
            "size": 10_000_000_000,
            "mount_path": "/data",
            "read_only": True,
        }
    ]
    assert task["volumes"] == [
        {"host_path": "/raid/public/john/data", "mount_path": "/root/data", "read_only": False}
    ]
    assert task["ports"][0]["container_port"] == 8888
    assert task["ports"][0]["host_port"] == 30888
    spec = native["spec"]
    assert (spec["elastic"], spec["service_type"], spec["kind"]) == (True, "nodeport", "train")
    assert spec["lifecycle"]["backoff_limit"] == 2
    assert spec["lifecycle"]["completions"] == 2
    assert spec["lifecycle"]["parallelism"] == 2
    assert spec["lifecycle"]["ttl_after_finish"] == 3 * 3600
    for replica in ("main-0", "main-1"):
        logs = server.client.get(
            "/v1/jobs/every-field/logs",
            params={"project": tenant.project, "replica": replica},
            headers=tenant.auth,
        )
        assert logs.text == f"{replica[-1]} ok\n"


def test_interactive_jobs_are_not_preemptible_by_default(server: Api, tenant_factory: Any) -> None:
    tenant = tenant_factory("kinds")
    build = submit(server, tenant, interactive=True, command=["true"])
    train = submit(server, tenant, command=["true"])
    spare = submit(server, tenant, interactive=True, preemptible=True, command=["true"])
    kinds = {build: ("Interactive", False), train: ("Train", True), spare: ("Interactive", True)}
    for name, (kind, preemptible) in kinds.items():
        assert wait_info(server, tenant, name)["type"] == kind
        native = server.job(name, tenant.token, project=tenant.project)
        assert native["preemptible"] is preemptible


def test_a_failing_job_ends_failed_after_its_retries(server: Api, tenant_factory: Any) -> None:
    tenant = tenant_factory("fail")
    name = submit(server, tenant, command="sh -c 'exit 3'", backoffLimit=0)
    job = wait_info(server, tenant, name)
    assert job["status"] == "Failed"
    assert server.job(name, tenant.token, project=tenant.project)["exit_code"] == 3


def test_completions_end_a_parallel_job(server: Api, tenant_factory: Any) -> None:
    tenant = tenant_factory("hpo")
    started = time.monotonic()
    name = submit(
        server,
        tenant,
        command=["sh", "-c", '[ "$PIER_REPLICA_INDEX" = 1 ] || exec sleep 60'],
        parallelism=3,
        completions=1,
    )
    assert wait_info(server, tenant, name)["status"] == "Succeeded"
    assert time.monotonic() - started < 30


def test_job_name_prefix_counts_up_per_project(server: Api, tenant_factory: Any) -> None:
    first, second = tenant_factory("prefix"), tenant_factory("prefix")
    names = [submit(server, first, jobNamePrefix="hpo", command=["true"]) for _ in range(3)]
    assert names == ["hpo-1", "hpo-2", "hpo-3"]
    assert submit(server, second, jobNamePrefix="hpo", command=["true"]) == "hpo-1"


# ---------------------------------------------------------------------------------------------
# RA-USER


def test_ra_user_must_be_the_token_user_unless_admin(server: Api, tenant_factory: Any) -> None:
    tenant, other = tenant_factory("ra"), tenant_factory("ra")
    body = {"job": {"project": tenant.project, "image": "busybox", "command": ["true"]}}

    r = post(server, body, {**tenant.auth, "RA-USER": other.user})
    err = assert_runai_error(r, 403, "RA-USER")
    assert other.user in err["message"] and tenant.user in err["message"]
    r = post(server, body, {"RA-USER": tenant.user})
    assert_runai_error(r, 401, None)
    r = post(server, body, {"RA-USER": "admin"})
    assert_runai_error(r, 401, None)
    assert listing(server, tenant.auth, tenant.project) == []

    # An admin submits on behalf of a member: the member owns the job and sees it.
    r = post(server, body, {**server.headers(), "RA-USER": tenant.user})
    assert r.status_code == 200, r.text
    job = wait_info(server, tenant, r.json()["name"])
    assert job["user"] == tenant.user
    assert job["status"] == "Succeeded"

    # ... but not on behalf of a stranger to the project, nor of nobody.
    for user in (other.user, "no-such-user"):
        r = post(server, body, {**server.headers(), "RA-USER": user})
        err = assert_runai_error(r, 403, "RA-USER")
        assert user in err["message"]
    assert len(listing(server, tenant.auth, tenant.project)) == 1


# ---------------------------------------------------------------------------------------------
# Bad input: Run:AI's error shape, the field named, nothing persisted

BAD = [
    pytest.param({"project": None}, 422, "job.project", "required", id="no-project"),
    pytest.param({"image": None}, 422, "job.image", "required", id="no-image"),
    pytest.param({"gpu": -1}, 422, "job.gpu", "greater than or equal to 0", id="gpu-negative"),
    pytest.param({"gpu": "lots"}, 422, "job.gpu", "valid number", id="gpu-lots"),
    pytest.param({"gpu": 1.5}, 422, "job.gpu", "fraction between 0 and 1", id="gpu-1.5"),
    pytest.param({"gpu": 64}, 422, "job", "the largest matching node has 4", id="gpu-64"),
    pytest.param({"memory": "12XB"}, 422, "job.memory", "unknown unit 'XB'", id="memory-xb"),
    pytest.param({"cpu": "lots"}, 422, "job.cpu", "not a number of cores", id="cpu-lots"),
    pytest.param({"interactive": "yes"}, 422, "job.interactive", "boolean", id="bool-type"),
    pytest.param({"arguments": "x"}, 422, "job.arguments", "JSON array", id="args-type"),
    pytest.param({"environment": ["A=1"]}, 422, "job.environment", "JSON object", id="env-type"),
    pytest.param({"nodeType": "dgx-a100"}, 422, "job", "no node has node pool", id="node-type"),
    pytest.param({"imagePullPolicy": "sometimes"}, 422, "job.imagePullPolicy", "always", id="pull"),
    pytest.param({"serviceType": "magic"}, 422, "job.serviceType", "nodeport", id="service"),
    pytest.param({"ttlAfterFinish": "soon"}, 422, "job.ttlAfterFinish", "duration", id="ttl"),
    pytest.param({"gpus": 1}, 422, "job.gpus", "unknown parameter", id="unknown-param"),
    pytest.param({"name": "My_Job"}, 422, "job.name", "not a job name", id="bad-name"),
    pytest.param(
        {"interactive": True, "backoffLimit": 3},
        422,
        "job.backoffLimit",
        "training jobs only",
        id="backoff-interactive",
    ),
    pytest.param({"command": None}, 422, "job.command", "container runtime", id="image-only"),
    pytest.param(
        {"completions": 4, "parallelism": 2}, 422, "job.completions", "not supported", id="hpo"
    ),
]


@pytest.mark.parametrize(("change", "status", "field", "says"), BAD)
def test_bad_input_names_the_problem_and_persists_nothing(
    server: Api, tenant_a: Tenant, change: dict[str, Any], status: int, field: str, says: str
) -> None:
    job: dict[str, Any] = {"project": tenant_a.project, "image": "busybox", "command": ["true"]}
    job.update(change)
    job = {k: v for k, v in job.items() if v is not None}
    before = ids(server, tenant_a)
    r = post(server, {"job": job}, tenant_a.auth)
    body = assert_runai_error(r, status, field)
    assert says in body["message"], body
    assert ids(server, tenant_a) == before


@pytest.mark.parametrize(
    ("content", "status", "field", "says"),
    [
        ('{"job": {"project": ', 400, None, "not valid JSON"),
        ('{"job": {"gpu": NaN}}', 400, None, "not valid JSON"),
        ("[]", 422, None, "JSON object"),
        ('{"job": 1}', 422, "job", "JSON object"),
        ('{"job": {}, "template": {}}', 422, "template", "unknown field 'template'"),
    ],
)
def test_malformed_bodies(
    server: Api, tenant_a: Tenant, content: str, status: int, field: str | None, says: str
) -> None:
    body = assert_runai_error(post(server, content, tenant_a.auth), status, field)
    assert says in body["message"]


def test_a_duplicate_name_conflicts(server: Api, tenant_a: Tenant) -> None:
    name = unique("dup")
    submit(server, tenant_a, name=name, command=["sleep", "5"])
    before = ids(server, tenant_a)
    r = post(
        server,
        {"job": {"name": name, "project": tenant_a.project, "image": "x", "command": ["true"]}},
        tenant_a.auth,
    )
    body = assert_runai_error(r, 409, "job.name")
    assert name in body["message"] and "already exists" in body["message"]
    assert ids(server, tenant_a) == before
    r = server.client.request(
        "DELETE",
        "/api/job",
        content=json.dumps([{"name": name, "project": tenant_a.project}]),
        headers=tenant_a.auth,
    )
    assert r.json() == [{"name": name, "ok": True}]


# ---------------------------------------------------------------------------------------------
# Access


def test_every_route_needs_a_token(server: Api) -> None:
    for method in ("GET", "POST", "DELETE"):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"RA-USER": "admin"}):
            r = server.client.request(method, "/api/job", content="{}", headers=headers)
            assert_runai_error(r, 401, None)
            assert r.headers["www-authenticate"] == "Bearer"


def test_a_project_sees_nothing_of_another(server: Api, tenant_a: Tenant, tenant_b: Tenant) -> None:
    secret = submit(server, tenant_b, name=unique("secret"), command=["sleep", "30"])
    wait_info(server, tenant_b, secret, ("Running",))

    # listing B's project: the same 404 as a project that does not exist
    missing = server.client.get("/api/job", params={"project": "nope"}, headers=tenant_a.auth)
    hidden = server.client.get(
        "/api/job", params={"project": tenant_b.project}, headers=tenant_a.auth
    )
    assert_runai_error(hidden, 404, "project")
    assert_runai_error(missing, 404, "project")
    assert hidden.json()["message"].replace(tenant_b.project, "nope") == missing.json()["message"]
    # listing everything: only A's own jobs
    assert all(j["project"] == tenant_a.project for j in listing(server, tenant_a.auth, None))
    # submitting into B's project
    r = post(
        server,
        {"job": {"project": tenant_b.project, "image": "x", "command": ["true"]}},
        tenant_a.auth,
    )
    assert_runai_error(r, 404, "job.project")
    # deleting B's job
    r = server.client.request(
        "DELETE",
        "/api/job",
        content=json.dumps([{"name": secret, "project": tenant_b.project}]),
        headers=tenant_a.auth,
    )
    assert r.status_code == 200
    [result] = r.json()
    assert result["ok"] is False
    assert result["error"]["status"] == 404
    assert info(server, tenant_b, secret)["status"] == "Running"
    # the admin sees B's job in the all-projects listing
    assert secret in [j["name"] for j in listing(server, server.headers(), None)]
    r = server.client.request(
        "DELETE",
        "/api/job",
        content=json.dumps([{"name": secret, "project": tenant_b.project}]),
        headers=tenant_b.auth,
    )
    assert r.json() == [{"name": secret, "ok": True}]


def test_delete_reports_each_job(server: Api, tenant_a: Tenant) -> None:
    name = submit(server, tenant_a, name=unique("del"), command=["true"])
    wait_info(server, tenant_a, name)
    refs = [
        {"name": name, "project": tenant_a.project},
        {"name": "never-was", "project": tenant_a.project},
    ]
    r = server.client.request("DELETE", "/api/job", content=json.dumps(refs), headers=tenant_a.auth)
    assert r.status_code == 200
    ok, missing = r.json()
    assert ok == {"name": name, "ok": True}
    assert missing["ok"] is False and missing["name"] == "never-was"
    assert missing["error"] == {
        "status": 404,
        "message": "job 'never-was' not found",
        "details": "not_found",
    }
    bad = server.client.request(
        "DELETE", "/api/job", content='[{"name": "x"}]', headers=tenant_a.auth
    )
    assert_runai_error(bad, 422, "0.project")


def test_a_body_over_the_size_limit_is_413_in_runai_shape(server: Api, tenant_a: Tenant) -> None:
    huge = '{"job": {"project": "x", "command": "' + "a" * (2 << 20) + '"}}'
    body = assert_runai_error(post(server, huge, tenant_a.auth), 413, None)
    assert "larger than" in body["message"]
