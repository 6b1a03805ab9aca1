"""The quota scheduler in the running server: real server, real processes, a simulated node
of 4 GPUs (``make_settings``), on every backend.

Deserved quotas, over-quota borrowing by training jobs, reclaim by preemption (SIGTERM, back
to Pending with reason ``Preempted``, completed after requeue), non-preemptible jobs held to
their quota, and gangs placed all-or-nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pier.config import Settings
from pier.scheduler.fifo import FifoPolicy
from pier.scheduler.gittins import GittinsPolicy
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.server import build, make_policy
from pier.services.snapshot import service_histories

from .conftest import ADMIN_PASSWORD, Api, running, serving
from .test_cli_against_server import Pier, cli_home

__all__ = ["cli_home"]  # the CLI's own PIER_HOME, a fixture

HOLD = 'while [ ! -e "$0" ]; do sleep 0.05; done'
"""Runs until the file named by its first argument exists."""


def _hold(gate: Path, *, ignore_term: bool = False) -> list[str]:
    script = f'trap "" TERM; {HOLD}' if ignore_term else HOLD
    return ["sh", "-c", script, str(gate)]


def _is(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda job: job["status"] == status


def _history(api: Api, ref: str, token: str | None = None) -> list[dict[str, Any]]:
    job = api.job(ref, token)
    entries: list[dict[str, Any]] = job["history"]
    return entries


def _gpus_allocated(api: Api) -> float:
    node = api.client.get("/v1/nodes", headers=api.headers()).json()[0]
    allocated: float = node["gpu_allocated"]
    return allocated


def _borrow_all(api: Api, token: str, gate: Path, **task: Any) -> list[dict[str, Any]]:
    """Project b fills the 4 GPUs with 1-GPU training jobs, started one after the other
    (the last started loses the least work, so it is the one a reclaim picks)."""
    jobs = []
    ignore_term = task.pop("ignore_term", False)
    for i in range(4):
        job = api.submit(
            _hold(gate, ignore_term=ignore_term),
            token,
            name=f"borrow-{i}",
            project="b",
            task={"resources": {"gpu": 1}},
            **task,
        )
        api.wait(job["id"], _is("Running"), token=token)
        jobs.append(job)
    return jobs


def test_policy_is_chosen_by_settings(settings: Settings) -> None:
    assert isinstance(make_policy(settings), QuotaPolicy)
    las = make_policy(settings.model_copy(update={"scheduler_policy": "las"}))
    assert isinstance(las, LasPolicy)
    fifo = make_policy(settings.model_copy(update={"scheduler_policy": "fifo"}))
    assert isinstance(fifo, FifoPolicy)
    gittins = make_policy(settings.model_copy(update={"scheduler_policy": "gittins"}))
    assert isinstance(gittins, GittinsPolicy)


def test_gittins_policy_runs_jobs_and_learns_from_the_finished_ones(settings: Settings) -> None:
    with serving(settings.model_copy(update={"scheduler_policy": "gittins"})) as api:
        done = []
        for i, gpus in enumerate((1, 2, 1)):
            job = api.submit(["sleep", "0.3"], name=f"short-{i}", task={"resources": {"gpu": gpus}})
            done.append(api.wait(job["id"], _is("Succeeded")))
        api.submit(["true"], name="cpu-only")  # no GPU: no service to learn from
        interactive = api.submit(
            ["true"], name="chat", kind="interactive", task={"resources": {"gpu": 1}}
        )
        api.wait(interactive["id"], _is("Succeeded"))
        with api.server.db.read() as conn:
            history = service_histories(conn, 1000)["default"]
            last_two = service_histories(conn, 2)["default"]
        # the training GPU jobs, oldest first: GPUs x run time (at least 0.3 s)
        assert len(history) == 3 and last_two == history[-2:]
        assert 0.3 <= history[0] < 30 and 0.6 <= history[1] < 60 and 0.3 <= history[2] < 30


def test_owner_reclaims_over_quota_training_which_completes_after_requeue(
    api: Api, tmp_path: Path
) -> None:
    api.project("a", gpu_quota=2)
    api.project("b", gpu_quota=2)
    alice = api.user("alice", "a")
    bob = api.user("bob", "b")
    b_gate, a_gate = tmp_path / "b-gate", tmp_path / "a-gate"
    borrowers = _borrow_all(api, bob, b_gate)
    assert _gpus_allocated(api) == 4.0

    owner = api.submit(_hold(a_gate), alice, name="own", task={"resources": {"gpu": 1}})
    owner = api.wait(owner["id"], _is("Running"), token=alice)

    # The borrower started last lost the least work: it was preempted, and is queued again.
    victim = api.job(borrowers[-1]["id"], bob)
    assert victim["status"] == "Pending"
    assert victim["reason"] == "Preempted"
    assert victim["message"] == (
        f"preempted to reclaim deserved quota of project a for job {owner['id']}"
    )
    assert victim["retries"] == 0 and victim["attempt"] == 1
    assert victim["replicas"] == []
    preempted = victim["history"][-1]
    assert (preempted["status"], preempted["reason"]) == ("Pending", "Preempted")
    assert preempted["exit_code"] is not None  # it ended on SIGTERM
    # The owner's job started only once the victim's capacity was free.
    assert owner["started_at"] >= preempted["created_at"]
    for other in borrowers[:-1]:
        assert api.job(other["id"], bob)["status"] == "Running"
    assert _gpus_allocated(api) == 4.0

    # Queued behind the full cluster, it says why and where it stands.
    waiting = api.wait(victim["id"], lambda j: j["pending_reason"] is not None, token=bob)
    assert waiting["queue_position"] == 0
    assert "GPU" in waiting["pending_reason"]

    b_gate.touch()
    done = api.wait(victim["id"], timeout=30, token=bob)
    assert done["status"] == "Succeeded"
    assert done["attempt"] == 2 and done["retries"] == 0
    assert [(h["status"], h["reason"]) for h in _history(api, victim["id"], bob)] == [
        ("Pending", "Submitted"),
        ("Running", "Started"),
        ("Pending", "Preempted"),
        ("Running", "Started"),
        ("Succeeded", "Completed"),
    ]
    assert api.job(owner["id"], alice)["status"] == "Running"  # within quota: never preempted
    a_gate.touch()
    assert api.wait(owner["id"], token=alice)["status"] == "Succeeded"


def test_stop_during_preemption_ends_stopped(api: Api, tmp_path: Path) -> None:
    api.project("a", gpu_quota=2)
    api.project("b", gpu_quota=2)
    gate = tmp_path / "gate"
    borrowers = _borrow_all(
        api, api.admin_token, gate, ignore_term=True, lifecycle={"stop_grace_period": "60s"}
    )
    owner = api.submit(["true"], name="own", project="a", task={"resources": {"gpu": 1}})
    api.wait(
        owner["id"],
        lambda j: j["pending_reason"] is not None and "stop" in j["pending_reason"],
    )
    victim = borrowers[-1]["id"]
    # It ignores SIGTERM, so it is still running out its grace period.
    assert api.job(victim)["status"] == "Running"
    r = api.client.post(f"/v1/jobs/{victim}/stop", headers=api.headers())
    assert r.status_code == 200, r.text
    gate.touch()  # it exits (0) while being preempted and stopped
    done = api.wait(victim, timeout=20)
    assert (done["status"], done["reason"]) == ("Stopped", "StoppedByUser")
    assert "Preempted" not in [h["reason"] for h in _history(api, victim)]
    assert api.wait(owner["id"], timeout=20)["status"] == "Succeeded"


def test_non_preemptible_jobs_stay_within_deserved_quota(
    api: Api, tmp_path: Path, cli_home: Path
) -> None:
    api.project("c", gpu_quota=2)
    gate = tmp_path / "gate"
    shells = [
        api.submit(
            _hold(gate),
            name=f"shell-{i}",
            project="c",
            kind="interactive",
            task={"resources": {"gpu": 1}},
        )
        for i in range(3)
    ]
    for shell in shells[:2]:
        api.wait(shell["id"], _is("Running"))
    third = api.wait(shells[2]["id"], lambda j: j["pending_reason"] is not None)
    assert third["status"] == "Pending"
    assert "deserved quota of 2 GPUs" in third["pending_reason"]
    # Two GPUs are idle: a training job of the same project borrows one at once ...
    train = api.submit(_hold(gate), name="train", project="c", task={"resources": {"gpu": 1}})
    api.wait(train["id"], _is("Running"))
    # ... but the interactive one is still not admitted beyond the quota.
    time.sleep(1.0)
    third = api.job(shells[2]["id"])
    assert third["status"] == "Pending" and third["replicas"] == []
    assert "deserved quota" in third["pending_reason"]
    assert _gpus_allocated(api) == 3.0
    # The CLI shows why it waits and where it stands.
    pier = Pier(api, api.admin_token)
    listed = pier("list", "-p", "c").stdout
    (line,) = [row for row in listed.splitlines() if row.startswith("shell-2")]
    assert "#0 project c has a deserved quota of 2 GPUs" in line
    described = pier("describe", "shell-2", "-p", "c").stdout
    assert "deserved quota of 2 GPUs" in described and "Queue position" in described
    gate.touch()
    for job in [*shells, train]:
        assert api.wait(job["id"], timeout=20)["status"] == "Succeeded"


def test_default_project_runs_interactive_gpu_jobs_out_of_the_box(api: Api) -> None:
    job = api.submit(["true"], name="notebook", kind="interactive", task={"resources": {"gpu": 4}})
    assert api.wait(job["id"])["status"] == "Succeeded"


def test_gang_starts_all_or_nothing(api: Api, tmp_path: Path) -> None:
    hold_gate, gang_gate = tmp_path / "hold", tmp_path / "gang"
    holder = api.submit(_hold(hold_gate), name="holder", task={"resources": {"gpu": 1}})
    api.wait(holder["id"], _is("Running"))
    gang = api.submit(_hold(gang_gate), name="gang", task={"replicas": 2, "resources": {"gpu": 2}})
    waiting = api.wait(gang["id"], lambda j: j["pending_reason"] is not None)
    assert waiting["pending_reason"].startswith("gang of 2 replicas needs 4 GPUs at once")
    time.sleep(0.5)
    waiting = api.job(gang["id"])
    assert waiting["status"] == "Pending" and waiting["replicas"] == []
    assert [h["status"] for h in waiting["history"]] == ["Pending"]
    assert _gpus_allocated(api) == 1.0  # no replica holds a GPU while the gang waits
    hold_gate.touch()
    running = api.wait(gang["id"], _is("Running"))
    assert sorted(r["index"] for r in running["replicas"]) == [0, 1]
    assert _gpus_allocated(api) == 4.0
    gang_gate.touch()
    assert api.wait(gang["id"])["status"] == "Succeeded"


def test_a_borrowing_gang_is_preempted_whole(api: Api, tmp_path: Path) -> None:
    api.project("a", gpu_quota=2)
    api.project("b", gpu_quota=2)
    gate = tmp_path / "gate"
    gang = api.submit(
        _hold(gate), name="gang", project="b", task={"replicas": 2, "resources": {"gpu": 2}}
    )
    api.wait(gang["id"], _is("Running"))
    owner = api.submit(["true"], name="own", project="a", task={"resources": {"gpu": 2}})
    assert api.wait(owner["id"], timeout=20)["status"] == "Succeeded"
    victim = api.job(gang["id"])
    reasons = [(h["status"], h["reason"]) for h in victim["history"]]
    assert reasons[:3] == [
        ("Pending", "Submitted"),
        ("Running", "Started"),
        ("Pending", "Preempted"),
    ]
    owner = api.job(owner["id"])
    assert owner["started_at"] >= victim["history"][2]["created_at"]
    # Requeued whole; it runs again once the owner's job is done.
    again = api.wait(gang["id"], _is("Running"))
    assert again["attempt"] == 2 and sorted(r["index"] for r in again["replicas"]) == [0, 1]
    gate.touch()
    assert api.wait(gang["id"])["status"] == "Succeeded"


def test_a_preemption_survives_a_server_restart(settings: Settings, tmp_path: Path) -> None:
    """The preemption is recorded before the server goes down; the restarted server sends
    the stop again and requeues the victim once it has exited."""
    gate = tmp_path / "gate"
    first = build(settings)
    try:
        with running(first) as url, httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/v1/tokens", json={"username": "admin", "password": ADMIN_PASSWORD})
            api = Api(client, first, r.json()["token"])
            api.project("a", gpu_quota=2)
            api.project("b", gpu_quota=2)
            borrowers = _borrow_all(
                api, api.admin_token, gate, ignore_term=True, lifecycle={"stop_grace_period": "60s"}
            )
            owner = api.submit(_hold(gate), name="own", project="a", task={"resources": {"gpu": 1}})
            api.wait(
                owner["id"],
                lambda j: j["pending_reason"] is not None and "stop" in j["pending_reason"],
            )
    finally:
        first.db.dispose()
    victim = borrowers[-1]["id"]
    with serving(settings) as api:
        assert api.job(victim)["status"] == "Running"  # re-attached, still in its grace period
        assert api.job(owner["id"])["status"] == "Pending"
        gate.touch()
        assert api.wait(owner["id"], timeout=30)["status"] == "Succeeded"
        done = api.wait(victim, timeout=30)
        assert done["status"] == "Succeeded" and done["attempt"] == 2
        assert ("Pending", "Preempted") in [(h["status"], h["reason"]) for h in done["history"]]
