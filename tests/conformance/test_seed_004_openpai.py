"""Seed 004 (OpenPAI REST server v1) against a real pier server over HTTP, on SQLite and
PostgreSQL: the seed's own requests (its curl lines as httpx calls, same bodies and content
types), exact response bodies, jobs that really run to their end, and isolation of virtual
clusters."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from tests.conftest import BACKENDS, fresh_database
from tests.integration.conftest import ADMIN_PASSWORD, Api, make_settings, serving

PUBLIC = {
    # Exchanges a username and password for a token: nothing to authenticate with yet.
    ("POST", "/api/v1/token"),
}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JOB_STATUS_KEYS = {
    # the seed's fields
    "name",
    "state",
    "createdTime",
    "completedTime",
    "appId",
    "appProgress",
    "appTrackingUrl",
    "appLaunchedTime",
    "appCompletedTime",
    "appExitCode",
    "appExitDiagnostics",
    # the job list's fields, which OpenPAI's job status also carries
    "username",
    "virtualCluster",
    "subState",
    "executionType",
    "retries",
}
JOB_LIST_KEYS = {
    "name",
    "username",
    "state",
    "subState",
    "executionType",
    "retries",
    "createdTime",
    "completedTime",
    "appExitCode",
    "virtualCluster",
}
LIVE = ("WAITING", "RUNNING")


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Pai:
    """The OpenPAI client side: the seed's requests, on a running pier server."""

    api: Api

    @property
    def client(self) -> httpx.Client:
        return self.api.client

    def token(self, username: str, password: str, **extra: str) -> str:
        # curl -H "Content-Type: application/x-www-form-urlencoded" -X POST .../api/v1/token
        #   -d "username=YOUR_USERNAME" -d "password=YOUR_PASSWORD"
        form = {"username": username, "password": password, **extra}
        r = self.client.post("/api/v1/token", headers=FORM, content=_urlencode(form))
        assert r.status_code == 200, r.text
        assert r.json() == {"token": r.json()["token"], "user": username}
        token: str = r.json()["token"]
        return token

    @property
    def admin(self) -> str:
        return self.api.admin_token

    def add_user(self, name: str, password: str, admin: bool = False) -> None:
        body = {"username": name, "password": password, "admin": admin, "modify": False}
        r = self.client.put("/api/v1/user", json=body, headers=_bearer(self.admin))
        assert (r.status_code, r.json()) == (201, {"message": "update successfully"}), r.text

    def grant(self, name: str, vcs: str) -> None:
        r = self.client.put(
            f"/api/v1/user/{name}/virtualClusters",
            json={"virtualClusters": vcs},
            headers=_bearer(self.admin),
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"message": "update user virtual clusters successfully"}

    def member(self, vc: str) -> tuple[str, str]:
        """A new user with access to ``vc``; (name, token)."""
        name = _unique("u")
        self.add_user(name, f"{name}-pw")
        self.grant(name, vc)
        return name, self.token(name, f"{name}-pw")

    def submit(self, token: str, config: dict[str, Any]) -> httpx.Response:
        # curl -H "Content-Type: application/json" -H "Authorization: Bearer TOKEN"
        #   -X POST .../api/v1/jobs -d @exampleJob.json
        return self.client.post(
            "/api/v1/jobs",
            content=_json(config),
            headers={"Content-Type": "application/json", **_bearer(token)},
        )

    def run(self, token: str, config: dict[str, Any]) -> None:
        r = self.submit(token, config)
        assert r.status_code == 201, r.text
        assert r.json() == {"message": f"update job {config['jobName']} successfully"}

    def status(self, token: str, name: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/jobs/{name}", headers=_bearer(token))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait(
        self,
        token: str,
        name: str,
        until: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        done = until or (lambda job: job["state"] not in LIVE)
        deadline = time.monotonic() + timeout
        while True:
            job = self.status(token, name)
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {name} still {job['state']}: {job}")
            time.sleep(0.05)

    def execute(self, token: str, name: str, value: str) -> httpx.Response:
        return self.client.put(
            f"/api/v1/jobs/{name}/executionType", json={"value": value}, headers=_bearer(token)
        )

    def stop(self, token: str, name: str) -> dict[str, Any]:
        r = self.execute(token, name, "STOP")
        assert r.status_code == 200, r.text
        return self.wait(token, name)


def _urlencode(form: dict[str, str]) -> str:
    return str(httpx.QueryParams(form))


def _json(body: Any) -> bytes:
    return httpx.Request("POST", "http://x", json=body).content


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One real server (store, runtime, local executor, HTTP) for the module, per backend."""
    home = tmp_path_factory.mktemp("openpai")
    with (
        fresh_database(request.param, home) as url,
        serving(make_settings(home / "home", url)) as served,
    ):
        yield served


@pytest.fixture(scope="module")
def pai(server: Api) -> Pai:
    return Pai(server)


@pytest.fixture(scope="module")
def vc(server: Api) -> str:
    """A virtual cluster of this module's jobs, with a quota of 2 of the cluster's 4 GPUs."""
    name = _unique("vc")
    server.project(name, gpu_quota=2)
    return name


@pytest.fixture(scope="module")
def alice(pai: Pai, vc: str) -> tuple[str, str]:
    return pai.member(vc)


def _job(name: str, vc: str, *roles: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "jobName": name,
        "image": "pai.run.tensorflow",
        "virtualCluster": vc,
        "taskRoles": list(roles) or [{"name": "main", "taskNumber": 1, "command": "true"}],
        **fields,
    }


# -- authentication -------------------------------------------------------------------------


def test_token_from_the_seeds_form_and_from_json(pai: Pai) -> None:
    token = pai.token("admin", ADMIN_PASSWORD)
    assert pai.client.get("/api/v1/jobs", headers=_bearer(token)).status_code == 200
    r = pai.client.post("/api/v1/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200
    assert set(r.json()) == {"token", "user"} and r.json()["user"] == "admin"


def test_token_expiration_is_honoured(pai: Pai) -> None:
    for expiration, lifetime in (("3600", 3600), (None, 86400)):
        extra = {"expiration": expiration} if expiration else {}
        token = pai.token("admin", ADMIN_PASSWORD, **extra)
        mine = pai.client.get("/v1/tokens", headers=_bearer(token)).json()
        issued = max(mine, key=lambda t: t["created_at"])
        assert issued["name"] == "openpai"
        assert issued["expires_at"] - issued["created_at"] == pytest.approx(lifetime)


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        ({"username": "admin", "password": "wrong-password"}, None),
        ({"username": "ghost", "password": "wrong-password"}, None),
        ({"username": "admin", "password": "short"}, '"password"'),
        ({"password": ADMIN_PASSWORD}, '"username" is required'),
        ({"username": "admin", "password": ADMIN_PASSWORD, "expiration": "10"}, "expiration"),
        ({"username": "admin", "password": ADMIN_PASSWORD, "expiration": "soon"}, "expiration"),
    ],
)
def test_token_refusals(pai: Pai, form: dict[str, str], problem: str | None) -> None:
    r = pai.client.post("/api/v1/token", headers=FORM, content=_urlencode(form))
    if problem is None:
        assert r.status_code == 401
        assert r.json() == {"error": "AuthenticationFailed", "message": "authentication failed"}
    else:
        assert r.status_code == 400
        assert r.json()["error"] == "InvalidParametersError"
        assert problem in r.json()["message"]


def _routes(api: Api) -> list[tuple[str, str]]:
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(api.server.app.routes)) if flatten else api.server.app.routes
    return [
        (method, route.path)
        for route in routes
        if getattr(route, "path", "").startswith("/api/v1/")
        for method in sorted(getattr(route, "methods", None) or ())
        if method != "HEAD"
    ]


def test_every_route_but_token_needs_a_bearer_token(pai: Pai) -> None:
    routes = _routes(pai.api)
    assert ("PUT", "/api/v1/jobs/{job_name}/executionType") in routes
    assert ("GET", "/api/v1/virtual-clusters/{vc_name}") in routes
    assert len(routes) >= 13
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = re.sub(r"\{[^}]+\}", "x", path)
        for headers in ({}, {"Authorization": "Bearer nope"}, {"RA-USER": "admin"}):
            r = pai.client.request(method, url, json={}, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"] == "UnauthorizedUserError"
            assert set(r.json()) == {"error", "message"}


# -- users and virtual clusters -------------------------------------------------------------


def test_user_admin_rules(pai: Pai, vc: str) -> None:
    name, token = pai.member(vc)
    other = _unique("u")
    pai.add_user(other, "six-ch")  # OpenPAI's minimum: 6 characters
    assert pai.token(other, "six-ch")
    refused = {"error": "NotAuthorized"}
    attempts = [
        ("PUT", "/api/v1/user", {"username": _unique("u"), "password": "secret1", "modify": False}),
        ("PUT", "/api/v1/user", {"username": other, "password": "hijacked", "modify": True}),
        ("PUT", "/api/v1/user", {"username": name, "password": "", "admin": True, "modify": True}),
        ("DELETE", "/api/v1/user", {"username": other}),
        ("PUT", f"/api/v1/user/{name}/virtualClusters", {"virtualClusters": "default"}),
    ]
    for method, path, body in attempts:
        r = pai.client.request(method, path, json=body, headers=_bearer(token))
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"] == refused["error"]
        assert r.json()["message"].startswith("not authorized")
    assert pai.token(other, "six-ch")  # untouched
    # a user changes their own password
    body = {"username": name, "password": "new-password", "modify": True}
    r = pai.client.put("/api/v1/user", json=body, headers=_bearer(token))
    assert (r.status_code, r.json()) == (201, {"message": "update successfully"})
    assert pai.token(name, "new-password")
    old = pai.client.post("/api/v1/token", json={"username": name, "password": f"{name}-pw"})
    assert old.status_code == 401
    # an admin removes a user: their tokens stop working
    other_token = pai.token(other, "six-ch")
    r = pai.client.request(
        "DELETE", "/api/v1/user", json={"username": other}, headers=_bearer(pai.admin)
    )
    assert (r.status_code, r.json()) == (200, {"message": "remove successfully"})
    again = pai.client.post("/api/v1/token", json={"username": other, "password": "six-ch"})
    assert again.status_code == 401
    assert pai.client.get("/api/v1/jobs", headers=_bearer(other_token)).status_code == 401


def test_user_refusals(pai: Pai) -> None:
    taken = _unique("u")
    pai.add_user(taken, "password")
    cases = [
        ({"username": taken, "password": "password", "modify": False}, 409, "ConflictUserError"),
        ({"username": _unique("u"), "password": "pw", "modify": False}, 400, "Invalid"),
        ({"username": _unique("u"), "modify": False}, 400, "Invalid"),
        ({"username": "bad name", "password": "password", "modify": False}, 400, "Invalid"),
        ({"username": _unique("u"), "password": "password"}, 400, "Invalid"),
        ({"username": _unique("u"), "password": "password", "modify": True}, 404, "NoUserError"),
    ]
    for body, status, code in cases:
        r = pai.client.put("/api/v1/user", json=body, headers=_bearer(pai.admin))
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"].startswith(code), r.text
    r = pai.client.request(
        "DELETE", "/api/v1/user", json={"username": _unique("u")}, headers=_bearer(pai.admin)
    )
    assert (r.status_code, r.json()["error"]) == (404, "NoUserError")
    r = pai.client.request(
        "DELETE", "/api/v1/user", json={"username": "admin"}, headers=_bearer(pai.admin)
    )
    assert r.status_code == 401, r.text  # an admin is never removed


def test_granting_and_revoking_virtual_clusters(pai: Pai, server: Api) -> None:
    vc1, vc2 = _unique("vc"), _unique("vc")
    server.project(vc1)
    server.project(vc2)
    name, token = pai.member(f"{vc1},{vc2}")
    listed = pai.client.get("/api/v1/virtual-clusters", headers=_bearer(token)).json()
    assert set(listed) == {"default", vc1, vc2}
    pai.grant(name, vc2)
    listed = pai.client.get("/api/v1/virtual-clusters", headers=_bearer(token)).json()
    assert set(listed) == {"default", vc2}
    r = pai.client.get(f"/api/v1/virtual-clusters/{vc1}", headers=_bearer(token))
    assert r.status_code == 404
    assert r.json() == {
        "error": "VirtualClusterNotFound",
        "message": f"could not find virtual cluster {vc1}",
    }
    assert pai.submit(token, _job(_unique("j"), vc1)).status_code == 403
    for user, vcs, code in (
        (name, "nosuchvc", "NoVirtualClusterError"),
        (_unique("ghost"), vc1, "NoUserError"),
        (name, "bad vc!", "InvalidParametersError"),
    ):
        r = pai.client.put(
            f"/api/v1/user/{user}/virtualClusters",
            json={"virtualClusters": vcs},
            headers=_bearer(pai.admin),
        )
        assert r.json()["error"] == code, r.text
    listed = pai.client.get("/api/v1/virtual-clusters", headers=_bearer(token)).json()
    assert set(listed) == {"default", vc2}  # the refused requests changed nothing


# -- jobs -----------------------------------------------------------------------------------


def test_the_seeds_job_lifecycle(pai: Pai, vc: str, alice: tuple[str, str]) -> None:
    name, token = alice
    config = _job(
        "exampleJob",
        vc,
        {"name": "main", "taskNumber": 1, "cpuNumber": 1, "memoryMB": 256, "command": "true"},
    )
    pai.run(token, config)
    r = pai.submit(token, config)
    assert r.status_code == 400
    assert r.json()["error"] == "JobUpdateError"
    assert r.json()["message"].startswith("job update error")
    job = pai.wait(token, "exampleJob")
    assert set(job) == JOB_STATUS_KEYS
    assert job["name"] == "exampleJob" and job["username"] == name
    assert (job["state"], job["appExitCode"], job["virtualCluster"]) == ("SUCCEEDED", 0, vc)
    assert job["createdTime"] <= job["appLaunchedTime"] <= job["appCompletedTime"]
    assert job["completedTime"] == job["appCompletedTime"]
    assert isinstance(job["createdTime"], int) and job["createdTime"] > 1.5e12  # milliseconds
    assert job["executionType"] == "START" and job["retries"] == 0
    listed = pai.client.get("/api/v1/jobs", headers=_bearer(token)).json()
    assert [set(j) for j in listed if j["name"] == "exampleJob"] == [JOB_LIST_KEYS]
    mine = pai.client.get("/api/v1/jobs", params={"username": name}, headers=_bearer(token))
    assert {j["username"] for j in mine.json()} == {name}
    nobody = pai.client.get("/api/v1/jobs", params={"username": "nobody"}, headers=_bearer(token))
    assert nobody.json() == []
    r = pai.client.get("/api/v1/jobs/exampleJob/config", headers=_bearer(token))
    assert (r.status_code, r.json()) == (200, config)
    r = pai.client.get("/api/v1/jobs/noSuchJob", headers=_bearer(token))
    assert r.status_code == 404
    assert r.json() == {"error": "JobNotFound", "message": "could not find job noSuchJob"}
    for suffix in ("/config", "/ssh"):
        r = pai.client.get(f"/api/v1/jobs/noSuchJob{suffix}", headers=_bearer(token))
        assert r.json() == {"error": "JobNotFound", "message": "could not find job noSuchJob"}


def test_two_task_roles_start_as_one_gang(
    pai: Pai, vc: str, alice: tuple[str, str], tmp_path: Path
) -> None:
    _, token = alice
    # Each task waits until all three have started: the job can only succeed as a gang.
    barrier = (
        'mkdir -p "$BARRIER/up" "$BARRIER/env"; '
        'env | grep ^PAI_ | sort > "$BARRIER/env/$PAI_CURRENT_TASK_ROLE_NAME-$PAI_TASK_INDEX"; '
        'touch "$BARRIER/up/$PAI_CURRENT_TASK_ROLE_NAME-$PAI_TASK_INDEX"; '
        'for i in $(seq 1 400); do [ "$(ls "$BARRIER/up" | wc -l)" -ge 3 ] && exit 0; '
        "sleep 0.05; done; exit 9"
    )
    name = _unique("gang")
    config = _job(
        name,
        vc,
        {"name": "ps", "taskNumber": 1, "cpuNumber": 1, "command": barrier},
        {"name": "worker", "taskNumber": 2, "gpuNumber": 1, "command": barrier},
        jobEnvs={"BARRIER": str(tmp_path)},
    )
    pai.run(token, config)
    job = pai.wait(token, name)
    assert (job["state"], job["appExitCode"]) == ("SUCCEEDED", 0), job
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["ps-0", "worker-0", "worker-1"]
    env = dict(
        line.split("=", 1) for line in (tmp_path / "env" / "worker-1").read_text().splitlines()
    )
    assert env["PAI_JOB_NAME"] == name
    assert env["PAI_TASK_ROLE_LIST"] == "ps,worker"
    assert env["PAI_TASK_ROLE_COUNT"] == "2"
    assert env["PAI_TASK_ROLE_TASK_COUNT_worker"] == "2"
    assert env["PAI_CURRENT_TASK_ROLE_NAME"] == "worker"
    assert env["PAI_TASK_INDEX"] == env["PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX"] == "1"
    assert env["PAI_RESOURCE"] == "1,1,100,64"


@pytest.mark.parametrize(
    ("role", "state", "exit_code"),
    [
        # one failure of three tolerated: minFailedTaskCount is 2
        ({"minFailedTaskCount": 2, "command": '[ "$PAI_TASK_INDEX" = 0 ] && exit 3; exit 0'},
         "SUCCEEDED", 0),
        # the second failure fails the job at once; the task still running is stopped
        ({"minFailedTaskCount": 2,
          "command": '[ "$PAI_TASK_INDEX" -lt 2 ] && exit 3; sleep 60'}, "FAILED", 3),
        # the first success ends the job: minSucceededTaskCount is 1
        ({"minSucceededTaskCount": 1,
          "command": '[ "$PAI_TASK_INDEX" = 0 ] && exit 0; sleep 60'}, "SUCCEEDED", 0),
    ],
)  # fmt: skip
def test_min_failed_and_min_succeeded_decide_the_end(
    pai: Pai, vc: str, alice: tuple[str, str], role: dict[str, Any], state: str, exit_code: int
) -> None:
    _, token = alice
    name = _unique("counts")
    pai.run(token, _job(name, vc, {"name": "w", "taskNumber": 3, **role}))
    job = pai.wait(token, name, timeout=20)
    assert (job["state"], job["appExitCode"]) == (state, exit_code), job
    if state == "FAILED":
        assert "exited with code 3" in job["appExitDiagnostics"]


def test_exit_code_retries_and_diagnostics(pai: Pai, vc: str, alice: tuple[str, str]) -> None:
    _, token = alice
    name = _unique("fails")
    pai.run(token, _job(name, vc, {"name": "main", "command": "exit 7"}, retryCount=1))
    job = pai.wait(token, name, timeout=20)
    assert (job["state"], job["appExitCode"], job["retries"]) == ("FAILED", 7, 1), job
    assert "exited with code 7" in job["appExitDiagnostics"]
    assert job["appId"].endswith("_2")  # the second attempt


def test_stop_and_start_again(pai: Pai, vc: str, alice: tuple[str, str]) -> None:
    _, token = alice
    name = _unique("longrun")
    pai.run(token, _job(name, vc, {"name": "main", "command": "sleep 60"}))
    first = pai.wait(token, name, until=lambda j: j["state"] == "RUNNING")
    r = pai.execute(token, name, "STOP")
    assert (r.status_code, r.json()) == (200, {"message": f"execute job {name} successfully"})
    stopped = pai.wait(token, name)
    assert (stopped["state"], stopped["executionType"]) == ("STOPPED", "STOP")
    assert stopped["appExitCode"] is not None
    assert pai.execute(token, name, "STOP").status_code == 200  # already stopped: no-op
    r = pai.execute(token, name, "START")
    assert (r.status_code, r.json()) == (200, {"message": f"execute job {name} successfully"})
    again = pai.wait(token, name, until=lambda j: j["state"] == "RUNNING")
    assert again["createdTime"] > first["createdTime"]
    assert again["executionType"] == "START" and again["appExitCode"] is None
    listed = pai.client.get("/api/v1/jobs", headers=_bearer(token)).json()
    assert [j["name"] for j in listed].count(name) == 1
    assert pai.execute(token, name, "START").status_code == 200  # running: no-op
    assert pai.stop(token, name)["state"] == "STOPPED"
    r = pai.execute(token, name, "PAUSE")
    assert (r.status_code, r.json()["error"]) == (400, "InvalidParametersError")


def test_ssh_info(pai: Pai, vc: str, alice: tuple[str, str]) -> None:
    _, token = alice
    name = _unique("sshjob")
    role = {
        "name": "worker",
        "taskNumber": 2,
        "command": "sleep 60",
        "portList": [{"label": "ssh", "beginAt": 2222, "portNumber": 1}],
    }
    pai.run(token, _job(name, vc, role))
    pai.wait(token, name, until=lambda j: j["state"] == "RUNNING")
    r = pai.client.get(f"/api/v1/jobs/{name}/ssh", headers=_bearer(token))
    assert r.status_code == 200, r.text
    node = pai.client.get("/v1/nodes", headers=_bearer(pai.admin)).json()[0]["name"]
    containers = sorted(r.json()["containers"], key=lambda c: c["id"])
    assert [(c["sshIp"], c["sshPort"]) for c in containers] == [(node, "2222")] * 2
    assert [c["id"].rsplit("-", 2)[1:] for c in containers] == [["worker", "0"], ["worker", "1"]]
    assert r.json()["keyPair"] is None
    pai.stop(token, name)
    plain = _unique("nossh")
    pai.run(token, _job(plain, vc))
    r = pai.client.get(f"/api/v1/jobs/{plain}/ssh", headers=_bearer(token))
    assert r.status_code == 404
    assert r.json()["error"] == "NoJobSshInfoError"
    assert r.json()["message"].startswith(f"SSH is not available for job {plain}")


def test_virtual_cluster_figures_are_real(pai: Pai, server: Api) -> None:
    vc = _unique("vc")
    server.project(vc, gpu_quota=2, max_gpu=3)
    _, token = pai.member(vc)
    url = f"/api/v1/virtual-clusters/{vc}"
    empty = pai.client.get(url, headers=_bearer(token)).json()
    assert empty == {
        "capacity": 50,
        "maxCapacity": 75,
        "usedCapacity": 0,
        "numActiveJobs": 0,
        "numJobs": 0,
        "numPendingJobs": 0,
        "resourcesUsed": {"memory": 0, "vCores": 0, "GPUs": 0},
    }
    held = _unique("held")
    pai.run(
        token,
        _job(held, vc, {"name": "main", "taskNumber": 1, "cpuNumber": 2, "memoryMB": 512,
                        "gpuNumber": 1, "command": "sleep 60"}),
    )  # fmt: skip
    pai.wait(token, held, until=lambda j: j["state"] == "RUNNING")
    queued = _unique("queued")  # 1 + 3 GPUs is past the virtual cluster's limit of 3
    pai.run(token, _job(queued, vc, {"name": "main", "gpuNumber": 3, "command": "true"}))
    busy = pai.client.get(url, headers=_bearer(token)).json()
    assert busy == {
        "capacity": 50,
        "maxCapacity": 75,
        "usedCapacity": 25,
        "numActiveJobs": 1,
        "numJobs": 2,
        "numPendingJobs": 1,
        "resourcesUsed": {"memory": 512, "vCores": 2, "GPUs": 1},
    }
    listed = pai.client.get("/api/v1/virtual-clusters", headers=_bearer(token)).json()
    assert listed[vc] == busy
    pai.stop(token, held)
    assert pai.wait(token, queued)["state"] == "SUCCEEDED"  # runs once the GPU is back
    after = pai.client.get(url, headers=_bearer(token)).json()
    assert (after["usedCapacity"], after["numJobs"]) == (0, 0)


# -- bad input ------------------------------------------------------------------------------


def _without(config: dict[str, Any], *path: str | int) -> dict[str, Any]:
    copy: Any = _json_copy(config)
    target = copy
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    result: dict[str, Any] = copy
    return result


def _with(config: dict[str, Any], value: Any, *path: str | int) -> dict[str, Any]:
    copy: Any = _json_copy(config)
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    result: dict[str, Any] = copy
    return result


def _json_copy(value: Any) -> Any:
    return httpx.Response(200, content=_json(value)).json()


def test_bad_job_configs_name_the_problem_and_persist_nothing(
    pai: Pai, vc: str, alice: tuple[str, str], server: Api
) -> None:
    _, token = alice
    good = _job(_unique("bad"), vc, {"name": "main", "taskNumber": 1, "command": "true"})
    before = server.client.get("/v1/jobs", headers=_bearer(pai.admin)).json()["items"]
    cases: list[tuple[dict[str, Any], str]] = [
        (_without(good, "jobName"), '"jobName" is required'),
        (_without(good, "image"), '"image" is required'),
        (_without(good, "taskRoles"), '"taskRoles" is required'),
        (_without(good, "taskRoles", 0, "command"), '"taskRoles[0].command" is required'),
        (_without(good, "taskRoles", 0, "name"), '"taskRoles[0].name" is required'),
        (_with(good, -1, "taskRoles", 0, "gpuNumber"), "taskRoles[0].gpuNumber"),
        (_with(good, "lots", "taskRoles", 0, "gpuNumber"), 'must be an integer (got "lots")'),
        (_with(good, 1.5, "taskRoles", 0, "cpuNumber"), "taskRoles[0].cpuNumber"),
        (_with(good, True, "taskRoles", 0, "taskNumber"), "taskRoles[0].taskNumber"),
        (_with(good, 5, "image"), '"image"'),
        (_with(good, "x", "taskRoles"), '"taskRoles"'),
        (_with(good, [], "taskRoles"), '"taskRoles"'),
        (_with(good, "my job!", "jobName"), '"jobName"'),
        (_with(good, 200, "taskRoles", 0, "shmMB"), '"shmMB" (200) must not exceed'),
        (_with(good, 2, "taskRoles", 0, "minFailedTaskCount"), "minFailedTaskCount"),
        (_with(good, -2, "retryCount"), '"retryCount" -2'),
        (_with(good, {"A": {"b": 1}}, "jobEnvs"), "jobEnvs.A"),
        (_with(good, 1, "surprise"), '"surprise" is not allowed'),
        (_with(good, [{"label": "bad label"}], "taskRoles", 0, "portList"), "label"),
        (_with(good, 64, "taskRoles", 0, "gpuNumber"), "cannot be scheduled"),
    ]
    for config, problem in cases:
        r = pai.submit(token, config)
        assert r.status_code == 400, (config, r.text)
        assert r.json()["error"] == "InvalidParametersError", r.text
        assert problem in r.json()["message"], (problem, r.json())
    for raw in (b"{not json", b"[1, 2]"):
        r = pai.client.post(
            "/api/v1/jobs",
            content=raw,
            headers={"Content-Type": "application/json", **_bearer(token)},
        )
        assert (r.status_code, r.json()["error"]) == (400, "InvalidParametersError")
    after = server.client.get("/v1/jobs", headers=_bearer(pai.admin)).json()["items"]
    assert after == before
    assert (
        pai.client.get(f"/api/v1/jobs/{good['jobName']}", headers=_bearer(token)).status_code == 404
    )


# -- isolation ------------------------------------------------------------------------------


def test_a_user_of_one_virtual_cluster_gets_nothing_of_another(pai: Pai, server: Api) -> None:
    vca, vcb = _unique("vc"), _unique("vc")
    server.project(vca)
    server.project(vcb)
    a_name, a = pai.member(vca)
    b_name, b = pai.member(vcb)
    secret = _unique("secret")
    role = {"name": "main", "command": "sleep 60", "portList": [{"label": "ssh", "beginAt": 2200}]}
    pai.run(b, _job(secret, vcb, role))
    pai.wait(b, secret, until=lambda j: j["state"] == "RUNNING")
    not_found = {"error": "JobNotFound", "message": f"could not find job {secret}"}
    for method, suffix, body in (
        ("GET", "", None),
        ("GET", "/config", None),
        ("GET", "/ssh", None),
        ("PUT", "/executionType", {"value": "STOP"}),
        ("DELETE", "", None),
    ):
        r = pai.client.request(
            method, f"/api/v1/jobs/{secret}{suffix}", json=body, headers=_bearer(a)
        )
        assert (r.status_code, r.json()) == (404, not_found), (method, suffix, r.text)
    assert secret not in {
        j["name"] for j in pai.client.get("/api/v1/jobs", headers=_bearer(a)).json()
    }
    r = pai.client.get("/api/v1/jobs", params={"username": b_name}, headers=_bearer(a))
    assert r.json() == []
    assert vcb not in pai.client.get("/api/v1/virtual-clusters", headers=_bearer(a)).json()
    r = pai.client.get(f"/api/v1/virtual-clusters/{vcb}", headers=_bearer(a))
    assert (r.status_code, r.json()["error"]) == (404, "VirtualClusterNotFound")
    # submitting into B's virtual cluster, even under B's job name, is refused
    for name in (secret, _unique("mine")):
        r = pai.submit(a, _job(name, vcb))
        assert r.status_code == 403
        assert r.json() == {
            "error": "ForbiddenUserError",
            "message": f"User {a_name} is not allowed to do operation in {vcb}",
        }
    # the same job name in A's own virtual cluster is A's own job
    pai.run(a, _job(secret, vca))
    assert pai.wait(a, secret)["virtualCluster"] == vca
    assert pai.status(b, secret)["state"] == "RUNNING"  # B's job: untouched, still B's
    assert pai.status(b, secret)["virtualCluster"] == vcb
    pai.stop(b, secret)


def test_only_the_owner_or_an_admin_executes_a_job(pai: Pai, server: Api) -> None:
    vc = _unique("vc")
    server.project(vc)
    _, owner = pai.member(vc)
    _, colleague = pai.member(vc)
    name = _unique("owned")
    pai.run(owner, _job(name, vc, {"name": "main", "command": "sleep 60"}))
    r = pai.execute(colleague, name, "STOP")
    assert (r.status_code, r.json()["error"]) == (403, "ForbiddenUserError")
    assert pai.status(colleague, name)["executionType"] == "START"
    assert pai.stop(pai.admin, name)["state"] == "STOPPED"


def test_without_a_virtual_cluster_a_job_goes_to_default(pai: Pai, server: Api) -> None:
    vc = _unique("vc")
    server.project(vc)
    _, token = pai.member(vc)  # OpenPAI users can always use the default cluster
    config = _without(_job(_unique("dflt"), vc), "virtualCluster")
    pai.run(token, config)
    assert pai.wait(token, config["jobName"])["virtualCluster"] == "default"
    outsider = _unique("native")  # a pier user outside the default project
    outsider_token = server.user(outsider, vc)
    r = pai.submit(outsider_token, _without(_job(_unique("dflt"), vc), "virtualCluster"))
    assert r.status_code == 403
    assert r.json() == {
        "error": "ForbiddenUserError",
        "message": f"User {outsider} is not allowed to do operation in default",
    }


def test_admins_are_made_and_users_who_ran_jobs_removed(pai: Pai, server: Api) -> None:
    vc = _unique("vc")
    server.project(vc)
    name, token = pai.member(vc)
    job = _unique("kept")
    pai.run(token, _job(job, vc))
    pai.wait(token, job)
    body = {"username": name, "password": "", "admin": True, "modify": True}
    r = pai.client.put("/api/v1/user", json=body, headers=_bearer(pai.admin))
    assert (r.status_code, r.json()) == (201, {"message": "update successfully"})
    admin_view = pai.client.get("/api/v1/virtual-clusters", headers=_bearer(token)).json()
    assert admin_view.keys() >= {"default", vc}
    body["admin"] = False
    assert pai.client.put("/api/v1/user", json=body, headers=_bearer(pai.admin)).status_code == 201
    r = pai.client.request(
        "DELETE", "/api/v1/user", json={"username": name}, headers=_bearer(pai.admin)
    )
    assert (r.status_code, r.json()) == (200, {"message": "remove successfully"})
    assert pai.client.get("/api/v1/jobs", headers=_bearer(token)).status_code == 401
    kept = pai.status(pai.admin, job)  # the job stays, its owner's record disabled
    assert kept["state"] == "SUCCEEDED" and kept["username"].startswith(f"{name[:40]}.removed.")
    pai.add_user(name, "a-new-password")  # the name is free again
    assert pai.token(name, "a-new-password")
    assert (
        pai.client.get(
            f"/api/v1/jobs/{job}", headers=_bearer(pai.token(name, "a-new-password"))
        ).status_code
        == 404
    )


def test_names_differing_only_in_case_are_two_jobs(
    pai: Pai, vc: str, alice: tuple[str, str]
) -> None:
    _, token = alice
    base = _unique("Case")
    upper, lower = base.upper(), base.lower()
    for name in (upper, lower):
        pai.run(token, _job(name, vc, {"name": "main", "command": f"echo {name}"}))
    for name in (upper, lower):
        assert pai.wait(token, name)["name"] == name
        r = pai.client.get(f"/api/v1/jobs/{name}/config", headers=_bearer(token))
        assert r.json()["taskRoles"][0]["command"] == f"echo {name}"
    native = pai.client.get("/v1/jobs", params={"project": vc}, headers=_bearer(token)).json()
    pier_names = {j["name"] for j in native["items"] if j["name"].startswith(lower)}
    assert pier_names == {lower, f"{lower}-1"}


def test_concurrent_duplicates_make_one_job(pai: Pai, vc: str, alice: tuple[str, str]) -> None:
    _, token = alice
    name = _unique("race")
    config = _job(name, vc)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: pai.submit(token, config), range(6)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 400, 400, 400, 400, 400], [r.text for r in answers]
    assert {r.json()["error"] for r in answers if r.status_code == 400} == {"JobUpdateError"}
    listed = pai.client.get("/api/v1/jobs", headers=_bearer(token)).json()
    assert [j["name"] for j in listed].count(name) == 1
    pai.wait(token, name)


def test_a_body_over_the_size_limit_is_413_in_openpai_shape(
    pai: Pai, alice: tuple[str, str]
) -> None:
    _, token = alice
    huge = b'{"jobName": "' + b"a" * (2 << 20) + b'"}'
    headers = {"Content-Type": "application/json", **_bearer(token)}
    r = pai.client.post("/api/v1/jobs", content=huge, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"] == "RequestEntityTooLargeError"
    assert "larger than" in r.json()["message"]
