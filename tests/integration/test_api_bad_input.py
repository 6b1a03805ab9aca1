"""Rejected requests: each answers with a JSON error naming what was wrong, and leaves
nothing behind (no job, no history entry, no name consumed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.integration.conftest import Api

from pier.store.tables import history, jobs, name_counters

Counts = tuple[int, int, int, int]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _counts(api: Api) -> Counts:
    """Jobs as the API lists them, and every row a submit could have written."""
    listed = api.client.get("/v1/jobs", params={"limit": 500}, headers=api.headers())
    assert listed.status_code == 200, listed.text
    with api.server.db.read() as conn:
        rows = [
            conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (jobs, history, name_counters)
        ]
    return (len(listed.json()["items"]), *rows)  # type: ignore[return-value]


@pytest.fixture
def unchanged(shared_api: Api) -> Iterator[None]:
    """The test's rejections must not change what is stored."""
    before = _counts(shared_api)
    yield
    assert _counts(shared_api) == before


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code
    return error


def _post_job(api: Api, body: Any) -> httpx.Response:
    return api.client.post("/v1/jobs", json=body, headers=api.headers())


def _task(**fields: Any) -> dict[str, Any]:
    return {"command": ["true"], **fields}


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"tasks": [_task()], "bogus": 1}, ["body", "bogus"], "Extra inputs are not permitted"),
        ({"tasks": [_task(bogus=1)]}, ["body", "tasks", 0, "bogus"], "Extra inputs"),
        ({}, ["body", "tasks"], "Field required"),
        ({"tasks": []}, ["body", "tasks"], "at least 1 item"),
        ({"tasks": "sleep 1"}, ["body", "tasks"], "valid list"),
        ({"tasks": [{"command": "echo hi"}]}, ["body", "tasks", 0, "command"], "valid list"),
        ({"tasks": [_task(replicas="many")]}, ["body", "tasks", 0, "replicas"], "valid integer"),
        ({"tasks": [_task(replicas=0)]}, ["body", "tasks", 0, "replicas"], "greater than"),
        ({"tasks": [_task(env={"A": 1})]}, ["body", "tasks", 0, "env", "A"], "valid string"),
        ({"tasks": [_task()], "kind": "batch"}, ["body", "kind"], "'train' or 'interactive'"),
        ({"tasks": [_task()], "name": "Bad_Name"}, ["body", "name"], "pattern"),
        ([_task()], ["body"], "valid dictionary"),
        (
            {"tasks": [_task(resources={"gpu": -1})]},
            ["body", "tasks", 0, "resources", "gpu"],
            "greater than or equal to 0",
        ),
        (
            {"tasks": [_task(resources={"gpu": 2.5})]},
            ["body", "tasks", 0, "resources", "gpu"],
            "2.5 GPUs: use a whole number of GPUs or a fraction between 0 and 1",
        ),
        (
            {"tasks": [_task(resources={"gpu": "lots"})]},
            ["body", "tasks", 0, "resources", "gpu"],
            "valid number",
        ),
        (
            {"tasks": [_task(resources={"memory": "12XB"})]},
            ["body", "tasks", 0, "resources", "memory"],
            "unknown unit 'XB' in '12XB'",
        ),
        (
            {"tasks": [_task(resources={"cpu": "2", "cpu_limit": "1"})]},
            ["body", "tasks", 0, "resources"],
            "cpu_limit must be at least cpu",
        ),
        (
            {"tasks": [_task(resources={"cpu": "nan"})]},
            ["body", "tasks", 0, "resources", "cpu"],
            "not a finite number of cores",
        ),
        (
            {"tasks": [_task()], "lifecycle": {"schedule_timeout": "soon"}},
            ["body", "lifecycle", "schedule_timeout"],
            "'soon' is not a duration",
        ),
        (
            {"tasks": [_task(name="w"), _task(name="w")]},
            ["body", "tasks"],
            "task role names must be unique",
        ),
    ],
)
def test_invalid_specs_are_422_naming_the_field(
    shared_api: Api, unchanged: None, body: Any, loc: list[str | int], words: str
) -> None:
    error = _error(_post_job(shared_api, body), 422, "invalid")
    assert [d["loc"] for d in error["details"]] == [loc]
    assert words in error["details"][0]["msg"]
    assert words in error["message"]
    if len(loc) > 1:
        assert ".".join(map(str, loc[1:])) in error["message"]


def test_unknown_field_message_names_it(shared_api: Api, unchanged: None) -> None:
    error = _error(_post_job(shared_api, {"tasks": [_task()], "bogus": 1}), 422)
    assert error["message"] == "bogus: Extra inputs are not permitted"


def test_huge_number_is_a_422_not_a_500(shared_api: Api, unchanged: None) -> None:
    raw = b'{"tasks": [{"command": ["true"], "resources": {"memory": 1e400}}]}'
    r = shared_api.client.post(
        "/v1/jobs",
        content=raw,
        headers={**shared_api.headers(), "content-type": "application/json"},
    )
    error = _error(r, 422, "invalid")
    assert error["details"][0]["loc"] == ["body", "tasks", 0, "resources", "memory"]


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"gpu": 16}, "replica main-0 asks for 16 GPUs; the largest matching node has 4"),
        ({"node_pool": "nowhere"}, "no node has node pool 'nowhere'"),
        ({"gpu_model": "tpu-v5"}, "no node has GPU model 'tpu-v5'"),
        ({"cpu": 64}, "asks for 64 CPUs; the largest matching node has 8"),
        ({"memory": "1Ti"}, "bytes of memory; the largest matching node has"),
    ],
)
def test_requests_no_node_can_hold_are_422(
    shared_api: Api, unchanged: None, resources: dict[str, Any], words: str
) -> None:
    error = _error(_post_job(shared_api, {"tasks": [_task(resources=resources)]}), 422)
    assert error["message"].startswith("cannot be scheduled: ")
    assert words in error["message"]
    assert "no available resource that meets the request requirements" in error["message"]
    assert error["details"][0]["loc"] == ["body", "tasks"]


def test_gang_bigger_than_the_cluster_is_422(shared_api: Api, unchanged: None) -> None:
    body = {"tasks": [_task(replicas=3, resources={"gpu": 2})]}
    error = _error(_post_job(shared_api, body), 422)
    assert "do not fit on the cluster even when it is idle" in error["message"]


def test_image_without_command_is_422_with_a_clear_message(
    shared_api: Api, unchanged: None
) -> None:
    error = _error(_post_job(shared_api, {"tasks": [{"image": "pytorch/pytorch:2.3"}]}), 422)
    assert error["message"].startswith("image 'pytorch/pytorch:2.3' alone cannot run")
    assert "give a command" in error["message"]
    assert error["details"][0]["loc"] == ["body", "tasks", 0, "command"]
    error = _error(_post_job(shared_api, {"tasks": [{}]}), 422)
    assert error["message"].startswith("a job without a command cannot run")


@pytest.mark.parametrize(
    ("lifecycle", "field"),
    [({"parallelism": 2}, "parallelism"), ({"completions": 5}, "completions")],
)
def test_unsupported_lifecycle_combinations(
    shared_api: Api, unchanged: None, lifecycle: dict[str, int], field: str
) -> None:
    error = _error(_post_job(shared_api, {"tasks": [_task()], "lifecycle": lifecycle}), 422)
    assert error["details"][0]["loc"] == ["body", "lifecycle", field]


def test_unknown_project_is_404_naming_it(shared_api: Api, unchanged: None) -> None:
    error = _error(_post_job(shared_api, {"tasks": [_task()], "project": "atlantis"}), 404)
    assert error["message"] == "project 'atlantis' not found"
    assert error["details"][0]["loc"] == ["body", "project"]


def test_duplicate_name_is_409(shared_api: Api) -> None:
    name = _unique("twice")
    shared_api.wait(shared_api.submit(["true"], name=name)["id"])
    before = _counts(shared_api)
    error = _error(_post_job(shared_api, {"name": name, "tasks": [_task()]}), 409, "conflict")
    assert error["message"] == f"a job named '{name}' already exists in project 'default'"
    assert error["details"][0]["loc"] == ["body", "name"]
    assert _counts(shared_api) == before


def test_duplicate_submission_id_is_409_and_consumes_no_name(shared_api: Api) -> None:
    prefix = _unique("sid")
    submission = _unique("submission")
    first = shared_api.submit(["true"], name_prefix=prefix, submission_id=submission)
    assert first["name"] == f"{prefix}-1"
    shared_api.wait(first["id"])
    before = _counts(shared_api)
    body = {"name_prefix": prefix, "submission_id": submission, "tasks": [_task()]}
    error = _error(_post_job(shared_api, body), 409, "conflict")
    assert error["message"] == f"a job with submission id '{submission}' already exists"
    assert _counts(shared_api) == before
    second = shared_api.submit(["true"], name_prefix=prefix)
    assert second["name"] == f"{prefix}-2"
    shared_api.wait(second["id"])


def test_stopping_a_finished_job_is_409(shared_api: Api) -> None:
    job = shared_api.submit(["true"], name=_unique("done"))
    shared_api.wait(job["id"])
    before = _counts(shared_api)
    r = shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())
    error = _error(r, 409, "conflict")
    assert error["message"] == f"job '{job['name']}' has already finished (Succeeded)"
    assert _counts(shared_api) == before
    assert shared_api.job(job["id"])["stop_requested"] is False


def test_ten_megabyte_body_is_413(shared_api: Api, unchanged: None) -> None:
    body = {"tasks": [_task(env={"BIG": "x" * (10 * 1024 * 1024)})]}
    error = _error(_post_job(shared_api, body), 413, "too_large")
    assert "larger than 1048576 bytes" in error["message"]


def test_chunked_body_over_the_limit_is_413(shared_api: Api, unchanged: None) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"tasks": [{"command": ["true"], "env": {"BIG": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}]}'

    r = shared_api.client.post(
        "/v1/jobs",
        content=chunks(),
        headers={**shared_api.headers(), "content-type": "application/json"},
    )
    error = _error(r, 413, "too_large")
    assert error["message"] == "request body is larger than 1048576 bytes"


@pytest.mark.parametrize("raw", [b"{", b'{"tasks": [}', b"not json", b'{"tasks": [1,]}'])
def test_malformed_json_is_400(shared_api: Api, unchanged: None, raw: bytes) -> None:
    r = shared_api.client.post(
        "/v1/jobs",
        content=raw,
        headers={**shared_api.headers(), "content-type": "application/json"},
    )
    error = _error(r, 400, "malformed_json")
    assert error["message"] == "the body is not valid JSON"


def test_malformed_json_without_a_token_is_rejected(shared_api: Api, unchanged: None) -> None:
    """FastAPI decodes the body before it resolves dependencies, so this is the one
    rejection an anonymous caller sees before 401: it reveals nothing about any job."""
    r = shared_api.client.post(
        "/v1/jobs", content=b"{", headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 401)
    _error(r, r.status_code)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "501"}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"cursor": "garbage!"}, ["query", "cursor"]),
        ({"cursor": "bm90IGpzb24"}, ["query", "cursor"]),
        ({"cursor": "WzEsMiwzXQ"}, ["query", "cursor"]),
        ({"cursor": "e30"}, ["query", "cursor"]),
        ({"status": "Sleeping"}, ["query", "status", 0]),
    ],
)
def test_bad_list_parameters_are_422(
    shared_api: Api, unchanged: None, params: dict[str, str], loc: list[str | int]
) -> None:
    r = shared_api.client.get("/v1/jobs", params=params, headers=shared_api.headers())
    error = _error(r, 422, "invalid")
    assert error["details"][0]["loc"] == loc


def test_unknown_route_and_method_are_json(shared_api: Api, unchanged: None) -> None:
    _error(shared_api.client.get("/v1/nothing-here", headers=shared_api.headers()), 404)
    _error(shared_api.client.put("/v1/jobs", headers=shared_api.headers()), 405)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "Not_Valid"}, 422),
        ({"name": "ok-name", "gpu_quota": -1}, 422),
        ({"name": "ok-name", "weight": 0}, 422),
        ({"name": "ok-name", "members": ["nobody-at-all"]}, 422),
        ({"name": "ok-name", "memory_quota": "12XB"}, 422),
        ({"name": "ok-name", "bogus": True}, 422),
        ({"name": "default"}, 409),
    ],
)
def test_bad_project_bodies(
    shared_api: Api, unchanged: None, body: dict[str, Any], status: int
) -> None:
    r = shared_api.client.post("/v1/projects", json=body, headers=shared_api.headers())
    _error(r, status)
    names = [
        p["name"]
        for p in shared_api.client.get("/v1/projects", headers=shared_api.headers()).json()
    ]
    assert "ok-name" not in names


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "x", "password": "short"}, 422),
        ({"name": "bad name", "password": "long-enough-pw"}, 422),
        ({"name": "admin", "password": "long-enough-pw"}, 409),
        ({"name": "ghosty", "password": "long-enough-pw", "projects": ["nowhere"]}, 422),
    ],
)
def test_bad_user_bodies(
    shared_api: Api, unchanged: None, body: dict[str, Any], status: int
) -> None:
    r = shared_api.client.post("/v1/users", json=body, headers=shared_api.headers())
    _error(r, status)
    users = [
        u["name"] for u in shared_api.client.get("/v1/users", headers=shared_api.headers()).json()
    ]
    assert "ghosty" not in users


@pytest.mark.parametrize("field", ["gpu_quota", "node_pools"])
def test_patching_a_required_project_field_to_null_is_422(
    shared_api: Api, unchanged: None, field: str
) -> None:
    name = _unique("nullable")
    shared_api.project(name, gpu_quota=2, node_pools=["default"])
    r = shared_api.client.patch(
        f"/v1/projects/{name}", json={field: None}, headers=shared_api.headers()
    )
    error = _error(r, 422, "invalid")
    assert error["details"][0]["loc"] == ["body", field]
    project = shared_api.client.get(f"/v1/projects/{name}", headers=shared_api.headers()).json()
    assert project["gpu_quota"] == 2 and project["node_pools"] == ["default"]


def test_an_unexpected_error_is_a_json_500(shared_api: Api) -> None:
    """A bug must not answer with a bare text page or a traceback."""

    def fail() -> None:
        raise RuntimeError("a bug with a secret in its message")

    shared_api.server.app.add_api_route("/v1/test-only-failure", fail)
    # uvicorn closes the connection after an unhandled exception: use a connection of its own
    r = httpx.get(shared_api.client.base_url.join("/v1/test-only-failure"), timeout=10)
    error = _error(r, 500, "internal")
    assert "secret" not in r.text
    assert error["message"] == "internal server error; see the server log"
