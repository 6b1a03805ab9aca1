"""Seed 003: the Neuro SDK's Jobs API, called as a researcher writes it, against a live
server running real jobs (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.integration.conftest import Api
from tests.integration.conftest import shared_api as shared_api
from yarl import URL

import pier
from pier.sdk import InvalidRequest
from pier.sdk.neuro import (
    Container,
    HTTPPort,
    JobDescription,
    JobStatus,
    JobStatusHistory,
    JobTelemetry,
    RemoteImage,
    Resources,
)

PY = sys.executable


@pytest.fixture
def neuro_env(shared_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A researcher's shell: PIER_URL and their token, their own PIER_HOME; their project."""
    project = f"nr-{uuid.uuid4().hex[:8]}"
    shared_api.project(project, gpu_quota=4)
    token = shared_api.user(f"res-{uuid.uuid4().hex[:8]}", project)
    monkeypatch.setenv("PIER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIER_URL", str(shared_api.client.base_url))
    monkeypatch.setenv("PIER_TOKEN", token)
    yield token


def _container(command: str, **kwargs: object) -> Container:
    return Container(
        image=RemoteImage("python", "3.11"),
        resources=Resources(memory_mb=256, cpu=0.5),
        command=command,
        **kwargs,  # type: ignore[arg-type]
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait(client: pier.sdk.neuro.Client, job_id: str, *states: JobStatus) -> JobDescription:
    for _ in range(300):
        job = await client.jobs.status(job_id)
        if job.status in states:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job.status}")


async def test_run_status_monitor_list_as_in_the_seed(neuro_env: str) -> None:
    async with pier.sdk.get() as client:
        job = await client.jobs.run(
            _container(f"{PY} -c 'print(\"hello\", 6 * 7)'", env={"GREETING": "hi"}),
            description="answer",
        )
        assert isinstance(job, JobDescription)
        assert job.status is JobStatus.PENDING
        assert job.name is None and job.description == "answer"
        assert job.is_preemptible is False
        assert job.http_url == URL() and job.ssh_server == URL()
        assert job.container.image == RemoteImage("python", "3.11")
        assert job.container.resources == Resources(memory_mb=256, cpu=0.5, shm=False)
        assert job.container.command == f"{PY} -c 'print(\"hello\", 6 * 7)'"
        assert job.container.entrypoint is None
        assert dict(job.container.env) == {"GREETING": "hi"}
        assert isinstance(job.history, JobStatusHistory)
        assert job.history.created_at is not None and job.history.created_at.tzinfo is UTC

        output = b"".join([chunk async for chunk in client.jobs.monitor(job.id)])
        assert output == b"hello 42\n"
        done = await _wait(client, job.id, JobStatus.SUCCEEDED)
        assert done.history.exit_code == 0
        assert done.history.status is JobStatus.SUCCEEDED
        assert done.history.reason == "Completed"
        assert done.history.started_at is not None and done.history.finished_at is not None
        assert done.history.started_at <= done.history.finished_at <= datetime.now(UTC)

        failing = await client.jobs.run(
            _container("false"), name=f"bad-{uuid.uuid4().hex[:6]}", is_preemptible=True
        )
        assert failing.name is not None and failing.name.startswith("bad-")
        assert failing.is_preemptible is True
        failed = await _wait(client, failing.id, JobStatus.FAILED)
        assert failed.history.exit_code == 1

        every = await client.jobs.list()
        assert {j.id for j in every} >= {job.id, failing.id}
        only_failed = await client.jobs.list(statuses={JobStatus.FAILED})
        assert [j.id for j in only_failed] == [failing.id]
        by_name = await client.jobs.list(name=failing.name)
        assert [j.id for j in by_name] == [failing.id]
        none = await client.jobs.list(statuses={JobStatus.RUNNING, JobStatus.PENDING})
        assert none == []


async def test_entrypoint_and_command_make_the_argv(neuro_env: str) -> None:
    client = await pier.sdk.get()
    try:
        job = await client.jobs.run(
            Container(
                image=RemoteImage.parse("ubuntu:22.04"),
                resources=Resources(memory_mb=128, cpu=0.1),
                entrypoint="bash -c",
                command="'echo \"$0 and $X\"' first",
                env={"X": "env"},
            )
        )
        assert b"".join([c async for c in client.jobs.monitor(job.id)]) == b"first and env\n"
        back = await client.jobs.status(job.id)
        assert back.container.entrypoint == "bash -c"
        assert back.container.command == "'echo \"$0 and $X\"' first"
    finally:
        await client.close()


async def test_kill_and_top_of_a_running_job(neuro_env: str) -> None:
    burn = "x = b'\\x01' * (48 * 2**20)\nwhile True: pass"
    async with pier.sdk.get() as client:
        job = await client.jobs.run(_container(f'{PY} -c "{burn}"'))
        await _wait(client, job.id, JobStatus.RUNNING)
        samples: list[JobTelemetry] = []
        async with contextlib.aclosing(client.jobs.top(job.id, interval=0.3)) as stream:
            async for sample in stream:
                samples.append(sample)
                if len(samples) == 2:
                    break
        assert all(isinstance(s, JobTelemetry) for s in samples)
        # a busy loop: clearly more than nothing, even on a crowded machine
        assert samples[-1].cpu > 0.05 and samples[-1].memory >= 48
        assert samples[-1].gpu_duty_cycle is None and samples[-1].gpu_memory is None
        with pytest.raises(dataclasses.FrozenInstanceError):
            samples[0].cpu = 0  # type: ignore[misc]

        await client.jobs.kill(job.id)
        killed = await _wait(client, job.id, JobStatus.SUCCEEDED, JobStatus.FAILED)
        assert killed.status is JobStatus.SUCCEEDED
        assert killed.history.reason == "StoppedByUser"
        await client.jobs.kill(job.id)  # already ended: nothing to do, no error
        # top of an ended job: nothing
        assert [s async for s in client.jobs.top(job.id)] == []


async def test_schedule_timeout_fails_a_job_that_cannot_be_placed(neuro_env: str) -> None:
    async with pier.sdk.get() as client:
        hog = await client.jobs.run(
            Container(RemoteImage("x"), Resources(128, 0.1, gpu=4), command="sleep 30")
        )
        await _wait(client, hog.id, JobStatus.RUNNING)
        job = await client.jobs.run(
            Container(RemoteImage("x"), Resources(128, 0.1, gpu=1), command="true"),
            schedule_timeout=0.5,
        )
        waiting = await client.jobs.status(job.id)
        assert waiting.status is JobStatus.PENDING
        failed = await _wait(client, job.id, JobStatus.FAILED)
        assert failed.history.reason == "Unschedulable"
        assert failed.history.description
        await client.jobs.kill(hog.id)


async def test_http_url_reaches_the_job_through_the_proxy(neuro_env: str) -> None:
    port = _free_port()
    async with pier.sdk.get() as client:
        job = await client.jobs.run(
            _container(
                f"bash -c 'echo served > index.html && exec {PY} -m http.server {port} "
                "--bind 127.0.0.1'",
                http=HTTPPort(port=port, requires_auth=True),
            )
        )
        assert job.http_url == URL(f"{client.url}/v1/jobs/{job.id}/http/")
        assert job.container.http == HTTPPort(port, True)
        await _wait(client, job.id, JobStatus.RUNNING)
        async with httpx.AsyncClient() as http:
            for _ in range(150):
                r = await http.get(
                    str(job.http_url), headers={"Authorization": f"Bearer {neuro_env}"}
                )
                if r.status_code != 502:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200 and r.text == "served\n"
            assert (await http.get(str(job.http_url))).status_code == 401
        await client.jobs.kill(job.id)


def test_the_synchronous_wrapper(neuro_env: str) -> None:
    with pier.sdk.get_sync() as client:
        job = client.jobs.run(_container("echo sync"), name=f"sync-{uuid.uuid4().hex[:6]}")
        assert b"".join(client.jobs.monitor(job.id)) == b"sync\n"
        for _ in range(300):  # the log ends as the process exits; the status follows
            if client.jobs.status(job.id).status is JobStatus.SUCCEEDED:
                break
            time.sleep(0.05)
        assert client.jobs.status(job.id).status is JobStatus.SUCCEEDED
        assert [j.id for j in client.jobs.list(name=job.name)] == [job.id]
        client.jobs.kill(job.id)


async def test_bad_containers_are_refused_naming_the_field(neuro_env: str) -> None:
    async with pier.sdk.get() as client:
        with pytest.raises(InvalidRequest) as exc:
            await client.jobs.run(
                Container(RemoteImage("x"), Resources(memory_mb=0, cpu=1), command="true")
            )
        assert "memory_mb" in str(exc.value)
        with pytest.raises(InvalidRequest) as exc:
            await client.jobs.run(_container("true"), name="Not A Name")
        assert exc.value.details[0].loc == ["name"]
        with pytest.raises(InvalidRequest) as exc:
            await client.jobs.run(_container("echo 'unclosed"))
        assert "command" in str(exc.value)
        with pytest.raises(pier.ApiError) as api_exc:
            await client.jobs.run(Container(RemoteImage("x"), Resources(128, 0.1)))
        assert api_exc.value.status_code == 422
        assert api_exc.value.details[0].loc[-1] == "command"
        with pytest.raises(pier.ApiError) as api_exc:
            await client.jobs.status(str(uuid.uuid4()))
        assert api_exc.value.status_code == 404


async def test_get_uses_the_cli_login_when_given_nothing(
    shared_api: Api, neuro_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(shared_api.client.base_url).rstrip("/")
    pier.sdk.save_credentials(pier.sdk.Credentials(url=url, token=neuro_env, user="res"))
    monkeypatch.delenv("PIER_URL")
    monkeypatch.delenv("PIER_TOKEN")
    async with pier.sdk.get() as client:
        assert client.url == url
        job = await client.jobs.run(_container("true"))
        assert job.owner.startswith("res-")
    # explicit arguments win over the stored login
    async with pier.sdk.get(url, "pier_" + "x" * 43) as client:
        with pytest.raises(pier.ApiError) as exc:
            await client.jobs.list()
        assert exc.value.status_code == 401
