"""The native jobs API on a real server: listing, names, stop, delete, retries, timeouts,
fractional GPUs, gangs, projects and the node inventory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.conftest import Api

TERMINAL = ("Succeeded", "Failed", "Stopped")


@pytest.fixture
def api(shared_api: Api) -> Iterator[Api]:
    """One server per module (a server takes a second to build); every test leaves it idle
    and empty: live jobs are stopped and all jobs deleted, so GPUs, lists and names are free
    for the next test."""
    yield shared_api
    headers = shared_api.headers()
    live = shared_api.client.get("/v1/jobs", params={"limit": 500}, headers=headers).json()
    for job in live["items"]:
        if job["status"] not in TERMINAL:
            shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=headers)
    for job in live["items"]:
        shared_api.wait(job["id"])
        shared_api.client.delete(f"/v1/jobs/{job['id']}", headers=headers)
    node = shared_api.client.get("/v1/nodes", headers=headers).json()[0]
    assert node["gpu_allocated"] == 0.0, node


HOLD = 'while [ ! -e "$0" ]; do sleep 0.05; done'
"""A command that runs until the file named by its first argument exists."""


def _hold(gate: Path, *after: str) -> list[str]:
    script = "; ".join([*after, HOLD]) if after else HOLD
    return ["sh", "-c", script, str(gate)]


def _statuses(job: dict[str, Any]) -> list[str]:
    return [h["status"] for h in job["history"]]


def _is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda job: job["status"] == status


def _list(api: Api, token: str | None = None, **params: Any) -> dict[str, Any]:
    r = api.client.get("/v1/jobs", params=params, headers=api.headers(token))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _names(page: dict[str, Any]) -> list[str]:
    return [j["name"] for j in page["items"]]


def test_list_filters(api: Api) -> None:
    api.project("lab")
    alice = api.user("alice", "lab", "default")
    ok = api.submit(["true"], name="ok")
    bad = api.submit(["false"], name="bad", lifecycle={"backoff_limit": 0})
    hers = api.submit(["true"], token=alice, name="hers", project="lab")
    for job in (ok, bad, hers):
        api.wait(job["id"])
    assert _names(_list(api)) == ["hers", "bad", "ok"]  # newest first
    assert _names(_list(api, project="lab")) == ["hers"]
    assert _names(_list(api, project="default")) == ["bad", "ok"]
    assert _names(_list(api, status="Failed")) == ["bad"]
    assert _names(_list(api, status=["Failed", "Succeeded"])) == ["hers", "bad", "ok"]
    assert _names(_list(api, status="Running")) == []
    assert _names(_list(api, owner="alice")) == ["hers"]
    assert _names(_list(api, owner="nobody")) == []
    assert _names(_list(api, name="ok")) == ["ok"]
    assert _names(_list(api, project="default", status="Succeeded", owner="admin")) == ["ok"]
    item = _list(api, name="bad")["items"][0]
    assert item["history"] is None  # lists are light; GET /v1/jobs/{ref} carries history
    assert item["exit_code"] == 1 and item["owner"] == "admin" and item["project"] == "default"


def test_cursor_pagination_has_no_duplicates_or_gaps(api: Api) -> None:
    submitted = [api.submit(["true"], name=f"page-{i}")["id"] for i in range(8)]
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = _list(api, **params)
        pages += 1
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["items"]) == 3
    assert pages == 3
    assert seen == list(reversed(submitted))
    # a new job does not shift a page that is being walked
    first = _list(api, limit=3)
    api.submit(["true"], name="late")
    rest = _list(api, limit=10, cursor=first["next_cursor"])
    assert [j["id"] for j in first["items"] + rest["items"]] == list(reversed(submitted))
    assert _list(api, limit=9)["next_cursor"] is None


def test_generated_names_count_up_per_prefix(api: Api) -> None:
    api.project("naming")
    api.project("other")

    def name(**spec: Any) -> str:
        return str(api.submit(["true"], project=spec.pop("project", "naming"), **spec)["name"])

    assert name() == "job-1"
    assert name() == "job-2"
    assert name(name="job-3") == "job-3"  # taken by hand: skipped
    assert name() == "job-4"
    assert name(name_prefix="train") == "train-1"
    assert name(name_prefix="train") == "train-2"
    assert name(project="other") == "job-1"  # counted per project
    assert api.job("job-1", project="other")["project"] == "other"
    assert api.job("job-1", project="naming")["id"] != api.job("job-1", project="other")["id"]


def test_concurrent_submits_get_distinct_names(api: Api) -> None:
    def submit(_: int) -> httpx.Response:
        return api.client.post(
            "/v1/jobs",
            json={"name_prefix": "burst", "tasks": [{"command": ["true"]}]},
            headers=api.headers(),
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(submit, range(16)))
    assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses]
    names = sorted(r.json()["name"] for r in responses)
    assert names == sorted(f"burst-{i}" for i in range(1, 17))


def test_stop_a_running_job(api: Api, tmp_path: Path) -> None:
    job = api.submit(["sleep", "30"], name="sleeper")
    api.wait("sleeper", _is("Running"))
    r = api.client.post("/v1/jobs/sleeper/stop", headers=api.headers())
    assert r.status_code == 200, r.text
    assert r.json()["stop_requested"] is True
    done = api.wait(job["id"])
    assert done["status"] == "Stopped"
    assert done["reason"] == "StoppedByUser"
    assert done["exit_code"] == 143
    assert _statuses(done) == ["Pending", "Running", "Stopped"]
    assert done["history"][-1]["exit_code"] == 143
    assert done["finished_at"] >= done["started_at"]
    again = api.client.post("/v1/jobs/sleeper/stop", headers=api.headers())
    assert again.status_code == 409


def test_stop_a_pending_job_ends_it_at_once(api: Api, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    holder = api.submit(_hold(gate), name="holder", task={"resources": {"gpu": 4}})
    api.wait("holder", _is("Running"))
    waiting = api.submit(["true"], name="waiting", task={"resources": {"gpu": 4}})
    queued = api.wait("waiting", lambda j: j["queue_position"] is not None)
    assert queued["status"] == "Pending"
    assert queued["queue_position"] == 0
    assert "waiting for 4 GPUs in the cluster" in queued["pending_reason"]
    r = api.client.post("/v1/jobs/waiting/stop", headers=api.headers())
    assert r.status_code == 200
    stopped = r.json()
    assert stopped["status"] == "Stopped"
    assert stopped["exit_code"] is None
    assert _statuses(api.job(waiting["id"])) == ["Pending", "Stopped"]
    gate.touch()
    assert api.wait(holder["id"])["status"] == "Succeeded"
    assert api.job(waiting["id"])["status"] == "Stopped"


def test_delete_hides_the_job_and_frees_its_name(api: Api) -> None:
    first = api.submit(["true"], name="reused")
    api.wait(first["id"])
    r = api.client.delete("/v1/jobs/reused", headers=api.headers())
    assert r.status_code == 204
    assert api.client.get(f"/v1/jobs/{first['id']}", headers=api.headers()).status_code == 404
    assert api.client.get("/v1/jobs/reused/logs", headers=api.headers()).status_code == 404
    assert _names(_list(api)) == []
    second = api.submit(["true"], name="reused")
    assert second["id"] != first["id"]
    assert [j["id"] for j in _list(api)["items"]] == [second["id"]]
    assert api.client.delete(f"/v1/jobs/{first['id']}", headers=api.headers()).status_code == 404


def test_delete_a_running_job_stops_it(api: Api) -> None:
    job = api.submit(["sleep", "30"], name="doomed")
    api.wait("doomed", _is("Running"))
    assert api.client.delete("/v1/jobs/doomed", headers=api.headers()).status_code == 204
    assert _names(_list(api)) == []
    # its GPUs and CPUs come back: a job needing the whole node runs
    big = api.submit(["true"], name="doomed", task={"resources": {"gpu": 4, "cpu": 8}})
    assert api.wait(big["id"])["status"] == "Succeeded"
    assert job["id"] != big["id"]


def test_backoff_retry_then_limit_exceeded(api: Api) -> None:
    api.submit(["sh", "-c", "exit 3"], name="flaky", lifecycle={"backoff_limit": 1})
    done = api.wait("flaky", timeout=20)
    assert done["status"] == "Failed"
    assert done["reason"] == "BackoffLimitExceeded"
    assert done["exit_code"] == 3
    assert done["retries"] == 1 and done["attempt"] == 2
    history = [(h["status"], h["reason"], h["exit_code"], h["attempt"]) for h in done["history"]]
    assert history == [
        ("Pending", "Submitted", None, 0),
        ("Running", "Started", None, 1),
        ("Pending", "BackoffRetry", 3, 1),
        ("Running", "Started", None, 2),
        ("Failed", "BackoffLimitExceeded", 3, 2),
    ]
    retry = done["history"][2]
    assert "retry 1 of 1 in 1s" in retry["message"]
    assert done["history"][3]["created_at"] - retry["created_at"] >= 1.0
    first_attempt = api.client.get(
        "/v1/jobs/flaky/logs", params={"attempt": 1}, headers=api.headers()
    )
    assert first_attempt.status_code == 200
    missing = api.client.get("/v1/jobs/flaky/logs", params={"attempt": 3}, headers=api.headers())
    assert missing.status_code == 404


def test_schedule_timeout_fails_unschedulable(api: Api, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    holder = api.submit(_hold(gate), name="holder", task={"resources": {"gpu": 3}})
    api.wait("holder", _is("Running"))
    api.submit(
        ["true"],
        name="impatient",
        task={"resources": {"gpu": 2}},
        lifecycle={"schedule_timeout": "1s"},
    )
    done = api.wait("impatient", timeout=10)
    assert done["status"] == "Failed"
    assert done["reason"] == "Unschedulable"
    assert done["message"].startswith(f"job {done['id']} cannot be scheduled within 1000 ms")
    assert "no available resource that meets the request requirements" in done["message"]
    assert done["exit_code"] is None and done["attempt"] == 0
    assert _statuses(done) == ["Pending", "Failed"]
    gate.touch()
    api.wait(holder["id"])


def test_two_half_gpu_jobs_share_one_device(api: Api, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    show = 'echo "$CUDA_VISIBLE_DEVICES $PIER_GPU_FRACTION"'
    halves = [
        api.submit(_hold(gate, show), name=f"half-{i}", task={"resources": {"gpu": 0.5}})
        for i in range(2)
    ]
    running = [api.wait(j["id"], _is("Running")) for j in halves]
    for job in running:
        (replica,) = job["replicas"]
        assert replica["devices"] == [running[0]["replicas"][0]["devices"][0]]
        assert replica["gpu_fraction"] == 0.5
        assert job["gpu"] == 0.5
    device = running[0]["replicas"][0]["devices"][0]
    nodes = api.client.get("/v1/nodes", headers=api.headers()).json()
    (node,) = nodes
    allocated = {g["index"]: g["allocated"] for g in node["gpus"]}
    assert allocated == {i: (1.0 if i == device else 0.0) for i in range(4)}
    assert node["gpu_allocated"] == 1.0
    # a third half goes to another device: the shared one is full
    third = api.submit(_hold(gate, show), name="half-2", task={"resources": {"gpu": 0.5}})
    third_running = api.wait(third["id"], _is("Running"))
    assert third_running["replicas"][0]["devices"] != [device]
    gate.touch()
    printed: dict[str, str] = {}
    for job in [*halves, third]:
        assert api.wait(job["id"])["status"] == "Succeeded"
        logs = api.client.get(f"/v1/jobs/{job['id']}/logs", headers=api.headers()).text
        printed[job["name"]], fraction = logs.split()
        assert fraction == "0.5"
        assert printed[job["name"]] == str(api.job(job["id"])["replicas"][0]["devices"][0])
    assert printed["half-0"] == printed["half-1"] == str(device) != printed["half-2"]
    after = api.client.get("/v1/nodes", headers=api.headers()).json()[0]
    assert after["gpu_allocated"] == 0.0


def test_gang_replicas_are_distinct(api: Api) -> None:
    script = 'echo "$PIER_TASK_ROLE $PIER_REPLICA_INDEX $PIER_NUM_REPLICAS $CUDA_VISIBLE_DEVICES"'
    api.submit(["sh", "-c", script], name="gang", task={"replicas": 2, "resources": {"gpu": 1}})
    done = api.wait("gang")
    assert done["status"] == "Succeeded"
    replicas = done["replicas"]
    assert [(r["task"], r["index"]) for r in replicas] == [("main", 0), ("main", 1)]
    devices = [tuple(r["devices"]) for r in replicas]
    assert len(set(devices)) == 2 and all(len(d) == 1 for d in devices)
    for r in replicas:
        logs = api.client.get(
            "/v1/jobs/gang/logs", params={"replica": f"main-{r['index']}"}, headers=api.headers()
        )
        assert logs.text.split() == ["main", str(r["index"]), "2", str(r["devices"][0])]
    bad = api.client.get("/v1/jobs/gang/logs", params={"replica": "main-7"}, headers=api.headers())
    assert bad.status_code == 404
    assert "has no replica 'main-7' (it has main-0, main-1)" in bad.json()["error"]["message"]


def test_projects_api_round_trip(api: Api) -> None:
    created = api.project(
        "vision",
        description="CV team",
        department="research",
        gpu_quota=2.5,
        cpu_quota=16,
        memory_quota="64Gi",
        max_gpu=3,
        weight=2,
        node_pools=["default"],
    )
    expected = {
        "name": "vision",
        "description": "CV team",
        "department": "research",
        "gpu_quota": 2.5,
        "cpu_quota": 16.0,
        "memory_quota": 64 * 2**30,
        "max_gpu": 3.0,
        "weight": 2.0,
        "node_pools": ["default"],
        "members": [],
        "gpu_allocated": 0.0,
        "jobs_running": 0,
        "jobs_pending": 0,
    }
    assert {k: created[k] for k in expected} == expected
    got = api.client.get("/v1/projects/vision", headers=api.headers()).json()
    assert got == created
    listed = api.client.get("/v1/projects", headers=api.headers()).json()
    names = [p["name"] for p in listed]
    assert names == sorted(names) and {"default", "vision"} <= set(names)
    r = api.client.patch(
        "/v1/projects/vision", json={"gpu_quota": 4, "max_gpu": None}, headers=api.headers()
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["gpu_quota"] == 4.0 and patched["max_gpu"] is None
    assert patched["description"] == "CV team" and patched["weight"] == 2.0
    assert (
        api.client.patch(
            "/v1/projects/vision", json={"name": "renamed"}, headers=api.headers()
        ).status_code
        == 422
    )
    assert (
        api.client.patch(
            "/v1/projects/nope", json={"gpu_quota": 1}, headers=api.headers()
        ).status_code
        == 404
    )
    api.user("grace", "default")
    r = api.client.post(
        "/v1/projects/vision/members", json={"user": "grace"}, headers=api.headers()
    )
    assert r.status_code == 200 and r.json()["members"] == ["grace"]
    r = api.client.post(
        "/v1/projects/vision/members", json={"user": "ghost"}, headers=api.headers()
    )
    assert r.status_code == 422
    r = api.client.delete("/v1/projects/vision/members/grace", headers=api.headers())
    assert r.status_code == 200 and r.json()["members"] == []
    r = api.client.delete("/v1/projects/vision/members/grace", headers=api.headers())
    assert r.status_code == 404


def test_max_gpu_limits_running_gpus(api: Api, tmp_path: Path) -> None:
    api.project("capped", max_gpu=1)
    gate = tmp_path / "gate"
    first = api.submit(_hold(gate), name="a", project="capped", task={"resources": {"gpu": 1}})
    api.wait(first["id"], _is("Running"))
    second = api.submit(["true"], name="b", project="capped", task={"resources": {"gpu": 1}})
    blocked = api.wait(second["id"], lambda j: j["pending_reason"] is not None)
    assert blocked["status"] == "Pending"
    assert blocked["pending_reason"] == (
        "project capped would exceed its limit of 1 GPUs (1 in use)"
    )
    # another project is not held back by it
    free = api.submit(["true"], name="c", task={"resources": {"gpu": 1}})
    assert api.wait(free["id"])["status"] == "Succeeded"
    project = api.client.get("/v1/projects/capped", headers=api.headers()).json()
    assert project["gpu_allocated"] == 1.0
    assert project["jobs_running"] == 1 and project["jobs_pending"] == 1
    gate.touch()
    assert api.wait(second["id"])["status"] == "Succeeded"


def test_nodes_inventory(api: Api) -> None:
    r = api.client.get("/v1/nodes", headers=api.headers())
    assert r.status_code == 200
    (node,) = r.json()
    assert node["cpus"] == 8.0
    assert node["memory_bytes"] == 32 * 1024**3
    assert node["pool"] == "default"
    assert [(g["index"], g["model"], g["allocated"]) for g in node["gpus"]] == [
        (i, "sim-a100", 0.0) for i in range(4)
    ]
    assert node["gpu_allocated"] == 0.0


def test_openapi_is_served_and_lists_the_routes(api: Api) -> None:
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["info"]["title"] == "pier"
    paths = schema["paths"]
    for path, method in [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{ref}", "get"),
        ("/v1/jobs/{ref}", "delete"),
        ("/v1/jobs/{ref}/stop", "post"),
        ("/v1/jobs/{ref}/history", "get"),
        ("/v1/jobs/{ref}/logs", "get"),
        ("/v1/projects", "post"),
        ("/v1/projects/{name}", "patch"),
        ("/v1/tokens", "post"),
        ("/v1/nodes", "get"),
        ("/v1/health", "get"),
    ]:
        assert method in paths[path], (path, method)
    assert "JobSpec" in schema["components"]["schemas"]


def test_history_endpoint_matches_the_job(api: Api) -> None:
    job = api.submit(["true"], name="hist")
    done = api.wait(job["id"])
    r = api.client.get("/v1/jobs/hist/history", headers=api.headers())
    assert r.status_code == 200
    assert r.json() == done["history"]
    assert [h["attempt"] for h in r.json()] == [0, 1, 1]
