"""A fully wired pier server (real store, real runtime, real local executor) listening on
127.0.0.1 in a background thread, driven over real HTTP, on every backend in ``BACKENDS``."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from tests.conftest import BACKENDS, fresh_database, kill_run_leftovers

from pier.config import Settings
from pier.server import Server, build

ADMIN_PASSWORD = "admin-password-123"


@dataclass
class Api:
    """An HTTP client on the running server, and the admin's token."""

    client: httpx.Client
    server: Server
    admin_token: str

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}

    def login(self, username: str, password: str) -> str:
        r = self.client.post("/v1/tokens", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    def user(self, name: str, *projects: str, admin: bool = False) -> str:
        """Create a user in ``projects`` and return their token."""
        password = f"{name}-password"
        r = self.client.post(
            "/v1/users",
            json={
                "name": name,
                "password": password,
                "projects": list(projects),
                "is_admin": admin,
            },
            headers=self.headers(),
        )
        assert r.status_code == 201, r.text
        return self.login(name, password)

    def project(self, name: str, **fields: Any) -> dict[str, Any]:
        r = self.client.post("/v1/projects", json={"name": name, **fields}, headers=self.headers())
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def submit(self, command: list[str], token: str | None = None, **spec: Any) -> dict[str, Any]:
        task = spec.pop("task", {})
        body = {"tasks": [{"command": command, **task}], **spec}
        r = self.client.post("/v1/jobs", json=body, headers=self.headers(token))
        assert r.status_code == 201, r.text
        job: dict[str, Any] = r.json()
        return job

    def job(self, ref: str, token: str | None = None, **params: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/jobs/{ref}", params=params, headers=self.headers(token))
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        return job

    def wait(
        self,
        ref: str,
        until: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 15.0,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Poll until ``until(job)`` (default: a terminal status)."""
        done = until or (lambda j: j["status"] in ("Succeeded", "Failed", "Stopped"))
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(ref, token)
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {ref} still {job['status']}: {job}")
            time.sleep(0.02)


def make_settings(home: Path, database_url: str) -> Settings:
    """The test cluster: one simulated node with 4 GPUs, 8 CPUs and 32 GiB."""
    return Settings(
        home=home,
        database_url=database_url,
        local_gpus=4,
        local_gpu_model="sim-a100",
        local_cpus=8,
        local_memory=32 * 1024**3,
        admin_password=ADMIN_PASSWORD,
        scheduler_interval_seconds=0.2,
        # Host processes only, podman or not on this machine (container mode has its own
        # tests: tests/integration/executors/test_container_executor.py and the seeds').
        container_runtime="none",
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path / "home", database_url)


@contextmanager
def running(server: Server) -> Iterator[str]:
    """Serve ``server.app`` on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.app, log_level="warning", access_log=False, lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serving(settings: Settings) -> Iterator[Api]:
    server = build(settings)
    try:
        with running(server) as url, httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v1/tokens", json={"username": "admin", "password": ADMIN_PASSWORD})
            assert r.status_code == 201, r.text
            yield Api(client, server, r.json()["token"])
    finally:
        kill_run_leftovers(settings.runs_dir)
        server.db.dispose()


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with serving(settings) as served:
        yield served


@pytest.fixture(scope="module", params=BACKENDS)
def shared_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One server for a whole module, for tests that leave the cluster as they found it
    (each uses its own users, projects and job names)."""
    home = tmp_path_factory.mktemp("shared")
    with (
        fresh_database(request.param, home) as url,
        serving(make_settings(home / "home", url)) as served,
    ):
        yield served
