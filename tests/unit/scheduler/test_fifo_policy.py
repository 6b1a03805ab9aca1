"""FifoPolicy: order, project limits, schedule timeouts and retry back-off."""

from __future__ import annotations

from collections.abc import Sequence

from pier.scheduler.fifo import FifoPolicy, pending_order, unschedulable_message
from pier.scheduler.types import (
    Decisions,
    JobRequest,
    NodeState,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)


def _node(gpus: int = 4, name: str = "n") -> NodeState:
    return NodeState(
        name=name,
        pool="default",
        labels={},
        gpu_model="a100",
        cpus=64,
        memory=2**40,
        device_free=(1.0,) * gpus,
        cpu_free=64,
        memory_free=2**40,
    )


def _job(
    job_id: str,
    gpu: float = 1,
    *,
    created_at: float = 0.0,
    priority: int = 0,
    project: str = "p",
    replicas: int = 1,
    schedule_timeout: float | None = None,
    not_before: float | None = None,
) -> JobRequest:
    return JobRequest(
        id=job_id,
        project=project,
        created_at=created_at,
        replicas=tuple(ReplicaRequest("main", i, gpu) for i in range(replicas)),
        priority=priority,
        schedule_timeout=schedule_timeout,
        not_before=not_before,
    )


def _decide(
    pending: Sequence[JobRequest],
    *,
    now: float = 100.0,
    gpus: int = 4,
    projects: Sequence[ProjectState] = (),
    running: Sequence[RunningJob] = (),
) -> Decisions:
    snapshot = Snapshot(
        now=now,
        nodes=(_node(gpus),),
        projects={p.name: p for p in projects},
        pending=tuple(pending),
        running=tuple(running),
    )
    return FifoPolicy().decide(snapshot)


def _admitted(decisions: Decisions) -> list[str]:
    return [a.job_id for a in decisions.admit]


def test_order_is_priority_then_submission_time_then_id() -> None:
    jobs = [
        _job("late", created_at=3),
        _job("b-early", created_at=1),
        _job("a-early", created_at=1),
        _job("interactive", created_at=9, priority=1),
    ]
    assert [j.id for j in sorted(jobs, key=pending_order)] == [
        "interactive",
        "a-early",
        "b-early",
        "late",
    ]
    decisions = _decide(jobs, gpus=2)
    assert _admitted(decisions) == ["interactive", "a-early"]
    assert decisions.pending["b-early"].position == 0
    assert decisions.pending["late"].position == 1
    assert decisions.pending["late"].reason == "NoCapacity"
    assert "1 job(s) ahead" in decisions.pending["late"].message


def test_a_job_that_does_not_fit_does_not_block_smaller_ones() -> None:
    decisions = _decide([_job("big", 3, created_at=0), _job("small", 1, created_at=1)], gpus=2)
    assert _admitted(decisions) == ["small"]
    assert decisions.pending["big"].reason == "NoCapacity"


def test_admissions_in_one_cycle_never_overcommit() -> None:
    decisions = _decide([_job(f"j{i}", 0.5, created_at=i) for i in range(10)], gpus=2)
    assert len(decisions.admit) == 4
    devices = [p.devices for a in decisions.admit for p in a.placements]
    assert sorted(devices) == [(0,), (0,), (1,), (1,)]


def test_max_gpu_is_a_hard_project_limit() -> None:
    projects = [ProjectState("p", max_gpu=2), ProjectState("q")]
    running = [RunningJob("r", "p", 1.0, True, 0.0)]
    decisions = _decide(
        [
            _job("a", 1, created_at=1),
            _job("b", 1, created_at=2),
            _job("c", 1, created_at=3, project="q"),
        ],
        projects=projects,
        running=running,
    )
    assert _admitted(decisions) == ["a", "c"]
    info = decisions.pending["b"]
    assert info.reason == "ProjectLimit"
    assert info.message == "project p would exceed its limit of 2 GPUs (2 in use)"


def test_max_gpu_allows_fractions_up_to_the_limit() -> None:
    decisions = _decide(
        [_job(str(i), 0.5, created_at=i) for i in range(3)],
        projects=[ProjectState("p", max_gpu=1)],
    )
    assert _admitted(decisions) == ["0", "1"]


def test_zero_max_gpu_still_runs_cpu_jobs() -> None:
    decisions = _decide(
        [_job("cpu", 0), _job("gpu", 1, created_at=1)], projects=[ProjectState("p", max_gpu=0)]
    )
    assert _admitted(decisions) == ["cpu"]


def test_schedule_timeout_fails_with_the_tenant_api_wording() -> None:
    job = _job("stuck", 8, created_at=10.0, schedule_timeout=5.0)
    waiting = _decide([job], now=14.9)
    assert not waiting.fail and waiting.pending["stuck"].reason == "NoCapacity"
    failed = _decide([job], now=15.0)
    (failure,) = failed.fail
    assert failure.job_id == "stuck"
    assert failure.reason == "Unschedulable"
    assert failure.message == (
        "job stuck cannot be scheduled within 5000 ms: no available resource that meets the "
        "request requirements (gpu=8, replicas=1)"
    )
    assert "stuck" not in failed.pending


def test_schedule_timeout_applies_to_project_limits_too() -> None:
    decisions = _decide(
        [_job("a", 2, created_at=0, schedule_timeout=1)],
        projects=[ProjectState("p", max_gpu=1)],
        now=2,
    )
    assert [f.job_id for f in decisions.fail] == ["a"]


def test_a_job_that_fits_is_admitted_even_past_its_timeout() -> None:
    decisions = _decide([_job("a", 1, created_at=0, schedule_timeout=1)], now=50)
    assert _admitted(decisions) == ["a"] and not decisions.fail


def test_unschedulable_message_rounds_to_milliseconds() -> None:
    job = _job("x", 0.5, replicas=2)
    assert "within 1500 ms" in unschedulable_message(job, 1.5)
    assert "(gpu=1, replicas=2)" in unschedulable_message(job, 1.5)


def test_not_before_is_respected() -> None:
    job = _job("retry", 1, not_before=105.0)
    early = _decide([job], now=104.0)
    assert not early.admit
    assert early.pending["retry"].reason == "BackoffRetry"
    assert _admitted(_decide([job], now=105.0)) == ["retry"]


def test_waiting_for_back_off_does_not_hold_capacity() -> None:
    decisions = _decide(
        [_job("retry", 4, created_at=0, not_before=200), _job("next", 4, created_at=1)]
    )
    assert _admitted(decisions) == ["next"]


def test_gang_admitted_whole_or_not_at_all() -> None:
    decisions = _decide([_job("gang", 2, replicas=3), _job("one", 2, created_at=1)], gpus=4)
    assert _admitted(decisions) == ["one"]
    assert decisions.pending["gang"].message.startswith("waiting for free capacity (needs 6 GPUs")


def test_empty_snapshot() -> None:
    decisions = _decide([])
    assert decisions.admit == [] and decisions.fail == [] and decisions.pending == {}


def test_schedule_timeout_restarts_after_a_retry_back_off() -> None:
    retried = _job("retried", 8, created_at=0.0, schedule_timeout=5.0, not_before=100.0)
    waiting = _decide([retried], now=102.0)
    assert not waiting.fail and waiting.pending["retried"].reason == "NoCapacity"
    assert [f.job_id for f in _decide([retried], now=105.0).fail] == ["retried"]
