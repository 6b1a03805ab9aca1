"""pier on a real Ray cluster (head + a second worker node on 127.0.0.1), driven over pier's
real HTTP API: inventory, success and logs, gangs, pools, fractions, stop, a job larger
than the cluster, failures, a pier restart, and the Ray head dying under a running job.

The cluster is module-scoped (starting Ray costs tens of seconds); the head-kill test runs
last because the worker node does not survive its head.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobSubmissionClient
from tests.conftest import fresh_database
from tests.integration.conftest import ADMIN_PASSWORD, Api, serving
from tests.integration.executors.ray_cluster import RayCluster, ray_cluster

from pier.config import Settings

pytestmark = pytest.mark.timeout(600)

RAY_WAIT = 120.0  # a Ray job on a loaded 2-core machine can take many seconds to start


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with ray_cluster(head_gpus=1, worker_gpus=2) as c:
        yield c


def ray_settings(home: Path, database_url: str, address: str) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        executor="ray",
        ray_address=address,
        admin_password=ADMIN_PASSWORD,
        scheduler_interval_seconds=0.2,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray-pier")


@pytest.fixture(scope="module")
def db_url(home: Path) -> Iterator[str]:
    with fresh_database("sqlite", home) as url:
        yield url


@pytest.fixture(scope="module")
def pier(cluster: RayCluster, home: Path, db_url: str) -> Iterator[Api]:
    with serving(ray_settings(home / "home", db_url, cluster.address)) as api:
        wait_for(lambda: len(nodes(api)) == 2, 60, "pier sees both Ray nodes")
        yield api


def nodes(api: Api) -> list[dict[str, Any]]:
    r = api.client.get("/v1/nodes", headers=api.headers())
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def logs(api: Api, ref: str, **params: str) -> str:
    r = api.client.get(f"/v1/jobs/{ref}/logs", params=params, headers=api.headers())
    assert r.status_code == 200, r.text
    return r.text


def history(api: Api, ref: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/v1/jobs/{ref}/history", headers=api.headers())
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()
    return entries


def ray_job(cluster: RayCluster, job: dict[str, Any], replica: str = "main-0") -> Any:
    client = JobSubmissionClient(cluster.address)
    return client.get_job_info(f"pier-{job['id']}-{job['attempt']}-{replica}")


def worker_node_id(cluster: RayCluster) -> str:
    (worker,) = [n for n in cluster.alive_nodes() if not n["is_head_node"]]
    return str(worker["node_id"])


def test_inventory_comes_from_ray(pier: Api) -> None:
    by_pool = {n["pool"]: n for n in nodes(pier)}
    assert set(by_pool) == {"head", "workers"}
    head, worker = by_pool["head"], by_pool["workers"]
    assert len(head["gpus"]) == 1 and len(worker["gpus"]) == 2
    assert head["cpus"] == 2 and worker["cpus"] == 2
    assert worker["labels"]["zone"] == "b"
    assert worker["memory_bytes"] > 0
    assert head["name"] != worker["name"]  # same IP, told apart by node id


def test_job_succeeds_and_its_logs_come_back(pier: Api, cluster: RayCluster) -> None:
    job = pier.submit(
        ["sh", "-c", 'echo "hello from $PIER_JOB_ID attempt $PIER_ATTEMPT"; echo "X=$X"'],
        task={"env": {"X": "forty-two"}, "resources": {"cpu": 0.5}},
    )
    followed = logs(pier, job["id"], follow="true")  # waits for the start, streams to the end
    done = pier.wait(job["id"], timeout=RAY_WAIT)
    assert done["status"] == "Succeeded", done
    assert done["exit_code"] == 0
    expected = f"hello from {job['id']} attempt 1"
    assert expected in followed and "X=forty-two" in followed
    assert expected in logs(pier, job["id"])
    info = ray_job(cluster, done)
    assert str(info.status.value) == "SUCCEEDED"
    assert info.metadata["pier_job_id"] == job["id"]


def test_failed_job_keeps_its_exit_code(pier: Api) -> None:
    job = pier.submit(["sh", "-c", "echo failing; exit 3"], lifecycle={"backoff_limit": 0})
    done = pier.wait(job["id"], timeout=RAY_WAIT)
    assert done["status"] == "Failed" and done["exit_code"] == 3, done
    assert "failing" in logs(pier, job["id"])


def test_gang_of_two_replicas_runs_together(pier: Api, cluster: RayCluster) -> None:
    job = pier.submit(
        ["sh", "-c", 'echo "replica $PIER_REPLICA_INDEX of $PIER_NUM_REPLICAS"'],
        task={"replicas": 2, "resources": {"gpu": 1}},
    )
    done = pier.wait(job["id"], timeout=RAY_WAIT)
    assert done["status"] == "Succeeded", done
    assert sorted(r["index"] for r in done["replicas"]) == [0, 1]
    for index in (0, 1):
        assert f"replica {index} of 2" in logs(pier, job["id"], replica=f"main-{index}")
        info = ray_job(cluster, done, f"main-{index}")
        assert str(info.status.value) == "SUCCEEDED"


def test_job_pinned_to_a_pool_lands_on_its_node(pier: Api, cluster: RayCluster) -> None:
    job = pier.submit(
        ["sh", "-c", 'echo "gpus=$CUDA_VISIBLE_DEVICES fraction=$PIER_GPU_FRACTION"'],
        task={"resources": {"node_pool": "workers", "gpu": 0.5, "custom": {"special": 1}}},
    )
    done = pier.wait(job["id"], timeout=RAY_WAIT)
    assert done["status"] == "Succeeded", done
    info = ray_job(cluster, done)
    assert info.driver_node_id == worker_node_id(cluster)
    (placed,) = done["replicas"]
    assert placed["node"] == next(n["name"] for n in nodes(pier) if n["pool"] == "workers")
    assert "fraction=0.5" in logs(pier, job["id"])


def test_stop_stops_the_ray_job(pier: Api, cluster: RayCluster) -> None:
    job = pier.submit(["sh", "-c", "echo started; sleep 300"])
    wait_for(lambda: "started" in logs(pier, job["id"]), RAY_WAIT, "the job runs")
    r = pier.client.post(f"/v1/jobs/{job['id']}/stop", headers=pier.headers())
    assert r.status_code == 200, r.text
    done = pier.wait(job["id"], timeout=RAY_WAIT)
    assert done["status"] == "Stopped", done
    assert str(ray_job(cluster, done).status.value) == "STOPPED"


def test_job_larger_than_the_cluster_stays_pending(pier: Api) -> None:
    job = pier.submit(["true"], task={"resources": {"gpu": 4}})
    time.sleep(3)  # several scheduler passes
    pending = pier.job(job["id"])
    assert pending["status"] == "Pending" and pending["attempt"] == 0, pending
    # QuotaPolicy's explanation: no node of the (elastic) cluster can hold it yet
    assert "asks for 4 GPUs" in (pending["pending_reason"] or "")
    assert "no node in the cluster has all of them" in pending["pending_reason"]
    r = pier.client.post(f"/v1/jobs/{job['id']}/stop", headers=pier.headers())
    assert r.status_code == 200, r.text
    assert pier.wait(job["id"])["status"] == "Stopped"


def test_pier_restart_reattaches_by_submission_id(cluster: RayCluster, home: Path) -> None:
    # Its own store and server, so the module's server is left alone.
    second_home = home / "second"
    second_home.mkdir()
    with fresh_database("sqlite", second_home) as url:
        settings = ray_settings(second_home / "home", url, cluster.address)
        with serving(settings) as first:
            job = first.submit(["sh", "-c", "echo begun; sleep 6; echo finished"])
            wait_for(lambda: "begun" in logs(first, job["id"]), RAY_WAIT, "the job runs")
            running = first.job(job["id"])
        assert running["status"] == "Running"
        # The first server is gone; the Ray job runs on. A new server re-attaches to it.
        with serving(settings) as second:
            done = second.wait(job["id"], timeout=RAY_WAIT)
            assert done["status"] == "Succeeded", done
            assert done["attempt"] == 1 and done["retries"] == 0  # the same run, watched again
            assert "finished" in logs(second, job["id"])
    assert str(ray_job(cluster, done).status.value) == "SUCCEEDED"
    client = JobSubmissionClient(cluster.address)
    mine = [j for j in client.list_jobs() if (j.metadata or {}).get("pier_job_id") == job["id"]]
    assert len(mine) == 1  # never submitted twice


def test_head_dies_under_a_running_job_which_is_requeued_and_completes(
    pier: Api, cluster: RayCluster
) -> None:
    """Runs last: the worker node does not survive its head."""
    job = pier.submit(
        [
            "sh",
            "-c",
            'echo "attempt $PIER_ATTEMPT"; if [ "$PIER_ATTEMPT" = 1 ]; then sleep 600; fi',
        ],
        lifecycle={"backoff_limit": 0},
    )
    wait_for(lambda: "attempt 1" in logs(pier, job["id"]), RAY_WAIT, "the job runs")
    cluster.kill_head()
    unknown = pier.wait(job["id"], lambda j: j["status"] == "Unknown", timeout=60)
    assert unknown["reason"] == "ExecutorUnreachable", unknown
    assert "unreachable" in unknown["message"]
    cluster.restart_head()
    wait_for(lambda: len(nodes(pier)) == 1, 60, "pier's inventory shrinks to the new head")
    done = pier.wait(job["id"], timeout=RAY_WAIT + 60)
    assert done["status"] == "Succeeded", done
    assert done["attempt"] == 2 and done["retries"] == 0  # not counted against backoff
    entries = history(pier, job["id"])
    reasons = [h["reason"] for h in entries]
    assert "PlatformFailure" in reasons, entries
    assert "attempt 2" in logs(pier, job["id"])
    # Nothing was lost from pier's record: every step is in the history.
    assert reasons[0] == "Submitted" and reasons.count("Started") == 2
