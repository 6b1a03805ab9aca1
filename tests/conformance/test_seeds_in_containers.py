"""Seeds 000 and 001 as written, on a pier whose local executor runs images (podman): the
Run:AI "Basic job" JSON (an image, no command) and the seed's two Kubernetes manifests with
their placeholders filled in run their image to the end, with their output in the logs.
Skipped where no podman can run a container (``tests/containers.py`` says why); the image is
the seeds' own name, built locally from a static busybox, whose CMD prints a greeting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conformance.conftest import Tenant, new_tenant, unique
from tests.conformance.test_seed_000_runai import SEED_BASIC_JOB, _with_project, post, wait_info
from tests.conftest import BACKENDS, fresh_database
from tests.containers import GREETING, Podman
from tests.integration.conftest import Api, make_settings, serving
from tests.seed_examples import SEED_BUILD, SEED_TRAIN

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, podman: Podman
) -> Iterator[Api]:
    home = tmp_path_factory.mktemp("containers")
    with fresh_database(request.param, home) as url:
        settings = make_settings(home / "home", url).model_copy(
            update={"container_runtime": "podman"}
        )
        with serving(settings) as served:
            yield served


@pytest.fixture
def tenant(server: Api) -> Tenant:
    return new_tenant(server, "boxed", gpu_quota=4)


def fill(template: str, name: str, user: str) -> str:
    return (
        template.replace("<JOB-NAME>", name)
        .replace("<USER-NAME>", user)
        .replace("<IMAGE-NAME>", "gcr.io/run-ai-demo/quickstart")
        .replace("<REQUESTED-GPUs>", "1")
    )


def logs(server: Api, tenant: Tenant, job_id: str) -> str:
    r = server.client.get(f"/v1/jobs/{job_id}/logs", headers=tenant.auth)
    assert r.status_code == 200, r.text
    return r.text


def apply(server: Api, tenant: Tenant, text: str) -> dict[str, Any]:
    r = server.client.post(
        "/v1/manifests",
        content=text.encode(),
        params={"project": tenant.project},
        headers={**YAML, **tenant.auth},
    )
    assert r.status_code == 201, r.text
    job: dict[str, Any] = r.json()["items"][0]["job"]
    return job


def test_the_seed_basic_job_runs_its_image(server: Api, tenant: Tenant) -> None:
    r = post(server, _with_project(SEED_BASIC_JOB, tenant.project), tenant.auth)
    assert r.status_code == 200, r.text
    name = r.json()["name"]
    job = wait_info(server, tenant, name, timeout=120)
    assert job["status"] == "Succeeded", job
    assert job["images"] == "gcr.io/run-ai-demo/quickstart"
    assert logs(server, tenant, job["id"]).strip() == GREETING


def test_the_seed_train_manifest_as_it_stands_runs_its_image(server: Api, tenant: Tenant) -> None:
    job = apply(server, tenant, fill(SEED_TRAIN, unique("train"), tenant.user))
    done = server.wait(job["id"], timeout=120)
    assert done["status"] == "Succeeded", done
    assert logs(server, tenant, job["id"]).strip() == GREETING


def test_the_seed_build_statefulset_sleeps_in_its_image_until_stopped(
    server: Api, tenant: Tenant, podman: Podman
) -> None:
    job = apply(server, tenant, fill(SEED_BUILD, unique("build"), tenant.user))
    running = server.wait(job["id"], until=lambda j: j["status"] == "Running", timeout=120)
    name = f"pier-{job['id']}-{running['attempt']}-{running['replicas'][0]['task']}-0"
    deadline = time.monotonic() + 60
    while name not in podman.containers():  # `sleep infinity` inside the image
        assert time.monotonic() < deadline, f"no container {name}"
        time.sleep(0.2)
    r = server.client.post(f"/v1/jobs/{job['id']}/stop", headers=tenant.auth)
    assert r.status_code == 200, r.text
    # sleep is PID 1 and ignores SIGTERM: killed after the stop grace period (10 s)
    stopped = server.wait(job["id"], timeout=120)
    assert stopped["status"] == "Stopped", stopped
    deadline = time.monotonic() + 60
    while name in podman.containers():
        assert time.monotonic() < deadline, f"container {name} left behind"
        time.sleep(0.2)


def test_an_image_without_a_command_is_still_refused_where_no_runtime_runs_it(
    shared_api_without_runtime: Api,
) -> None:
    tenant = new_tenant(shared_api_without_runtime, "host", gpu_quota=1)
    r = post(shared_api_without_runtime, _with_project(SEED_BASIC_JOB, tenant.project), tenant.auth)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "job.command"
    assert "container runtime" in r.json()["message"]


@pytest.fixture(scope="module")
def shared_api_without_runtime(
    tmp_path_factory: pytest.TempPathFactory, podman: Podman
) -> Iterator[Api]:
    """podman works here, and yet: ``container_runtime = "none"`` keeps images recorded."""
    home = tmp_path_factory.mktemp("no-runtime")
    with fresh_database("sqlite", home) as url, serving(make_settings(home / "home", url)) as api:
        yield api


def test_a_job_with_neither_image_nor_command_is_refused_even_here(
    server: Api, tenant: Tenant
) -> None:
    body = {"project": tenant.project, "tasks": [{}]}
    r = server.client.post("/v1/jobs", json=body, headers=tenant.auth)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["message"].startswith("a job without a command cannot run: give a command")
    assert error["details"][0]["loc"] == ["body", "tasks", 0, "command"]
