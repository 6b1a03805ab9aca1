"""The SDK (sync and async) against the real app: a wired server on a loopback port, and the
app in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from tests.integration.conftest import ADMIN_PASSWORD, Api

from pier.config import Settings
from pier.models import JobView
from pier.sdk import (
    ApiError,
    AsyncClient,
    Client,
    InvalidRequest,
    PierTimeoutError,
    load_credentials,
)
from pier.server import build
from pier.status import JobStatus


@pytest.fixture(autouse=True)
def client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The SDK's own PIER_HOME (credentials), apart from the server's, with no PIER_* leaks."""
    for key in list(os.environ):
        if key.startswith("PIER_"):
            monkeypatch.delenv(key)
    home = tmp_path / "client-home"
    monkeypatch.setenv("PIER_HOME", str(home))
    return home


def url_of(api: Api) -> str:
    return str(api.client.base_url).rstrip("/")


def admin(api: Api) -> Client:
    return Client(url_of(api), api.admin_token)


def sh(script: str, **spec: object) -> dict[str, object]:
    return {"tasks": [{"command": ["sh", "-c", script]}], **spec}


def wait_until_running(client: Client, ref: str, timeout: float = 15.0) -> JobView:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_job(ref)
        if job.status is JobStatus.RUNNING:
            return job
        assert time.monotonic() < deadline, f"{ref} still {job.status}"
        time.sleep(0.05)


def test_login_saves_credentials_that_the_next_client_uses(shared_api: Api) -> None:
    with Client(url_of(shared_api), token="") as client:
        view = client.login("admin", ADMIN_PASSWORD, expires_in=3600, name="sdk-test")
        assert view.token and view.user == "admin"
        assert view.expires_at - view.created_at == pytest.approx(3600, abs=5)
        path = client.save_credentials()
    assert load_credentials(path) is not None
    with Client(url_of(shared_api)) as again:
        assert again.token == view.token
        assert again.me().name == "admin"
        assert view.id in {t.id for t in again.list_tokens()}
        again.revoke_token()
        with pytest.raises(ApiError) as caught:
            again.me()
    assert caught.value.status_code == 401


def test_wrong_password(shared_api: Api) -> None:
    with Client(url_of(shared_api), token="") as client, pytest.raises(ApiError) as caught:
        client.login("admin", "wrong-password")
    assert caught.value.status_code == 401
    assert client.token == ""


def test_submit_wait_logs_history_delete(api: Api) -> None:
    with admin(api) as client:
        job = client.submit(sh("echo hello; echo world", name="sdk-hello"))
        assert (job.name, job.project, job.owner) == ("sdk-hello", "default", "admin")
        final = client.wait("sdk-hello", timeout=30)
        assert final.status is JobStatus.SUCCEEDED
        assert final.exit_code == 0
        assert b"".join(client.logs("sdk-hello")) == b"hello\nworld\n"
        assert b"".join(client.logs(job.id, replica="main-0", attempt=1)) == b"hello\nworld\n"
        history = client.job_history("sdk-hello", project="default")
        assert [h.status for h in history] == [
            JobStatus.PENDING,
            JobStatus.RUNNING,
            JobStatus.SUCCEEDED,
        ]
        described = client.get_job(job.id)
        assert described.history is not None and len(described.history) == 3
        client.delete_job("sdk-hello")
        with pytest.raises(ApiError) as caught:
            client.get_job("sdk-hello")
    assert caught.value.status_code == 404
    assert caught.value.code == "not_found"
    assert "sdk-hello" in str(caught.value)


def test_follow_streams_until_the_job_ends(api: Api) -> None:
    with admin(api) as client:
        job = client.submit(sh("for i in 1 2 3; do echo line $i; sleep 0.2; done"))
        out = b"".join(client.logs(job.id, follow=True))
        assert out == b"line 1\nline 2\nline 3\n"
        # The stream ends with the process's output; the runtime records the exit a moment
        # later (it reacts to the same exit record), so the status is waited for.
        assert client.wait(job.id, timeout=30).status is JobStatus.SUCCEEDED


def test_failure_stop_and_conflicts(api: Api) -> None:
    with admin(api) as client:
        failed = client.submit(sh("exit 3", lifecycle={"backoff_limit": 0}))
        final = client.wait(failed.id, timeout=30)
        assert (final.status, final.exit_code) == (JobStatus.FAILED, 3)

        sleeper = client.submit(sh("exec sleep 60", name="sdk-sleeper"))
        wait_until_running(client, sleeper.id)
        with pytest.raises(PierTimeoutError, match="sdk-sleeper is still Running"):
            client.wait(sleeper.id, timeout=0.3)
        assert client.stop_job("sdk-sleeper").stop_requested
        assert client.wait("sdk-sleeper", timeout=30).status is JobStatus.STOPPED
        with pytest.raises(ApiError) as caught:
            client.stop_job("sdk-sleeper")
    assert caught.value.status_code == 409


def test_list_jobs_follows_cursors(api: Api) -> None:
    with admin(api) as client:
        submitted = [client.submit(sh("true", name=f"sdk-page-{i}")).id for i in range(5)]
        page = client.list_jobs_page(project="default", limit=2)
        assert len(page.items) == 2 and page.next_cursor
        every = list(client.list_jobs(project="default"))
        assert [j.id for j in every] == list(reversed(submitted))  # newest first
        assert len(list(client.list_jobs(limit=3))) == 3
        assert [j.name for j in client.list_jobs(name="sdk-page-2")] == ["sdk-page-2"]
        for ref in submitted:
            client.wait(ref, timeout=30)
        done = list(client.list_jobs(status=["succeeded", JobStatus.FAILED], owner="admin"))
        assert {j.id for j in done} == set(submitted)
        assert list(client.list_jobs(status="running")) == []


def test_projects_users_and_members(shared_api: Api) -> None:
    with admin(shared_api) as root:
        project = root.create_project("sdk-vision", gpu_quota=2, memory_quota="64Gi")
        assert (project.gpu_quota, project.memory_quota) == (2, 64 * 2**30)
        updated = root.update_project("sdk-vision", gpu_quota=3, weight=2)
        assert (updated.gpu_quota, updated.weight, updated.memory_quota) == (3, 2, 64 * 2**30)
        user = root.create_user("sdk-ana", password="ana-password", projects=["sdk-vision"])
        assert user.projects == ["sdk-vision"]
        assert "sdk-ana" in {u.name for u in root.list_users()}
        root.create_project("sdk-audio")
        assert "sdk-ana" in root.add_member("sdk-audio", "sdk-ana").members
        assert "sdk-audio" in {p.name for p in root.list_projects()}

    with Client(url_of(shared_api), token="") as ana:
        ana.login("sdk-ana", "ana-password")
        assert {p.name for p in ana.list_projects()} == {"sdk-vision", "sdk-audio"}
        assert ana.get_project("sdk-vision").gpu_quota == 3
        with pytest.raises(ApiError) as caught:
            ana.create_project("sdk-mine")
        assert caught.value.status_code == 403
        job = ana.submit(sh("true", project="sdk-vision", name="sdk-ana-job"))
        assert job.owner == "sdk-ana"
        assert ana.get_job("sdk-ana-job", project="sdk-vision").id == job.id

    with admin(shared_api) as root:
        assert "sdk-ana" not in root.remove_member("sdk-audio", "sdk-ana").members


def test_server_side_validation_names_the_field(shared_api: Api) -> None:
    with admin(shared_api) as client:
        with pytest.raises(ApiError) as caught:
            client.submit(sh("true", project="sdk-no-such-project"))
        assert caught.value.status_code == 404
        assert "sdk-no-such-project" in str(caught.value)
        with pytest.raises(ApiError) as caught:
            client.submit({"tasks": [{"command": ["true"], "resources": {"gpu": 64}}]})
        assert caught.value.status_code == 422
        with pytest.raises(InvalidRequest):
            client.submit({"tasks": [{"command": ["true"]}], "unknown": 1})


def test_nodes_and_health(shared_api: Api) -> None:
    with admin(shared_api) as client:
        assert client.health() == {"status": "ok", "version": "0.1.0"}
        (node,) = client.nodes()
        assert [d.model for d in node.gpus] == ["sim-a100"] * 4
    with Client(url_of(shared_api), token="") as anonymous:
        assert anonymous.health()["status"] == "ok"
        with pytest.raises(ApiError) as caught:
            anonymous.nodes()
        assert caught.value.status_code == 401


async def test_async_client_end_to_end(api: Api) -> None:
    async with AsyncClient(url_of(api), token="") as client:
        await client.login("admin", ADMIN_PASSWORD)
        assert (await client.me()).is_admin
        job = await client.submit(sh("echo async", name="sdk-async"))
        final = await client.wait(job.id, timeout=30)
        assert final.status is JobStatus.SUCCEEDED
        chunks = [chunk async for chunk in client.logs("sdk-async", follow=True)]
        assert b"".join(chunks) == b"async\n"
        names = [j.name async for j in client.list_jobs(project="default", limit=10)]
        assert names == ["sdk-async"]
        assert [h.status for h in await client.job_history(job.id)][-1] is JobStatus.SUCCEEDED
        await client.delete_job(job.id)
        with pytest.raises(ApiError):
            await client.get_job(job.id)
        assert len(await client.nodes()) == 1


async def test_async_client_in_process(tmp_path: Path) -> None:
    """The app driven without a socket, through ``httpx.ASGITransport``."""
    settings = Settings(
        home=tmp_path / "server-home",
        local_gpus=1,
        admin_password=ADMIN_PASSWORD,
        container_runtime="none",
    )
    server = build(settings)
    try:
        transport = httpx.ASGITransport(app=server.app)
        async with AsyncClient("http://pier.test", token="", transport=transport) as client:
            assert (await client.health())["status"] == "ok"
            await client.login("admin", ADMIN_PASSWORD)
            assert (await client.me()).name == "admin"
            created = await client.create_project("inproc", gpu_quota=1)
            assert created.name == "inproc"
            assert {p.name for p in await client.list_projects()} == {"default", "inproc"}
            with pytest.raises(ApiError) as caught:
                await client.get_project("nope")
            assert caught.value.code == "not_found"
    finally:
        server.db.dispose()
