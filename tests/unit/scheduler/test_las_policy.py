"""LasPolicy: discretized least-attained-service queues on top of the quota rules."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from tests.unit.scheduler.quota_builders import (
    admitted,
    interactive,
    job,
    node,
    preempted,
    running,
    snapshot,
)
from tests.unit.scheduler.test_quota_properties import check_cycle, snapshots

from pier.scheduler.las import LasPolicy
from pier.scheduler.types import Failure, ProjectState, Snapshot

LAS = LasPolicy(thresholds=(3600.0, 36000.0), preempt_gap=1, smallest_first=False)
"""Tiresias' rules: any lower queue preempts; FIFO within a queue."""
PROJECT = [ProjectState("p", gpu_quota=4)]


def test_queue_by_attained_service_then_fifo() -> None:
    las = LasPolicy(thresholds=(3600.0, 36000.0))
    assert [las.queue_of(job("j", attained=a), 0.0) for a in (0, 3599, 3600, 40000)] == [
        0,
        0,
        1,
        2,
    ]
    snap = snapshot(
        [node("n", 2)],
        pending=[
            job("long", created_at=0, attained=5000),
            job("new-late", created_at=20),
            job("new-early", created_at=10),
            interactive("chat", created_at=30),
        ],
        projects=PROJECT,
        now=40,
    )
    d = LAS.decide(snap)
    assert admitted(d) == ["chat", "new-early"]
    assert [d.pending[j].position for j in ("new-late", "long")] == [2, 3]


def test_a_job_with_less_service_preempts_one_that_crossed_a_threshold() -> None:
    # "old" has run 1 GPU x 4000 s: queue 1. "fresh" (queue 0) fits only if it goes.
    snap = snapshot(
        [node("n", 1)],
        pending=[job("fresh", created_at=4500)],
        running_jobs=[running("old", "p", [("n", [0])], started_at=1000)],
        projects=PROJECT,
        now=5000,
    )
    d = LAS.decide(snap)
    assert d.preempt == [
        Failure(
            "old",
            "Preempted",
            "preempted by job fresh, which has attained less service "
            "(least-attained-service policy)",
        )
    ]
    assert d.pending["fresh"].reason == "Reclaiming"


def test_no_preemption_within_the_same_queue_or_of_non_preemptible_jobs() -> None:
    snap = snapshot(
        [node("n", 2)],
        pending=[job("fresh", created_at=4500)],
        running_jobs=[
            running("young", "p", [("n", [0])], started_at=4000),
            running("pinned", "p", [("n", [1])], started_at=0, preemptible=False),
        ],
        projects=PROJECT,
        now=5000,
    )
    d = LAS.decide(snap)
    assert d.preempt == [] and d.pending["fresh"].reason == "NoCapacity"


def test_attained_service_of_earlier_attempts_counts() -> None:
    snap = snapshot(
        [node("n", 1)],
        pending=[job("fresh", created_at=90)],
        running_jobs=[running("resumed", "p", [("n", [0])], started_at=90, attained=3590)],
        projects=PROJECT,
        now=100,
    )
    assert preempted(LAS.decide(snap)) == ["resumed"]


def test_with_a_gap_of_two_only_jobs_two_queues_up_are_preempted() -> None:
    las = LasPolicy(thresholds=(3600.0, 36000.0), preempt_gap=2)
    one_up = running("one-up", "p", [("n", [0])], started_at=1000)  # 4000 GPU-s: queue 1
    two_up = running("two-up", "p", [("n", [0])], started_at=1000, attained=40000)
    fresh = job("fresh", created_at=4500)
    for victim, expected in ((one_up, []), (two_up, ["two-up"])):
        snap = snapshot(
            [node("n", 1)], pending=[fresh], running_jobs=[victim], projects=PROJECT, now=5000
        )
        assert preempted(las.decide(snap)) == expected
    # a job in queue 1 preempts nothing in queue 2 either
    middle = job("middle", created_at=4500, attained=4000)
    snap = snapshot(
        [node("n", 1)], pending=[middle], running_jobs=[two_up], projects=PROJECT, now=5000
    )
    assert preempted(las.decide(snap)) == []
    try:
        LasPolicy(preempt_gap=0)
    except ValueError as exc:
        assert "preempt_gap" in str(exc)
    else:
        raise AssertionError("a gap of 0 was accepted")


def test_smallest_first_within_a_queue() -> None:
    pending = [
        job("wide-early", 2.0, created_at=0),
        job("narrow-late", 1.0, created_at=10),
        job("served", 1.0, created_at=5, attained=5000),
    ]
    smallest = LasPolicy(smallest_first=True).order(list(pending), 20.0)
    assert [j.id for j in smallest] == ["narrow-late", "wide-early", "served"]
    fifo = LasPolicy(smallest_first=False).order(list(pending), 20.0)
    assert [j.id for j in fifo] == ["wide-early", "narrow-late", "served"]


def test_starving_jobs_are_promoted_to_the_first_queue() -> None:
    las = LasPolicy(thresholds=(3600.0,), starvation_factor=2.0)
    starving = job("starving", attained=4000, created_at=0, pending_since=1000)
    assert las.queue_of(starving, now=1000 + 7999) == 1
    assert las.queue_of(starving, now=1000 + 8000) == 0


def test_quota_rules_still_apply_across_projects() -> None:
    # Project a borrows; b's in-quota job reclaims as under QuotaPolicy, while a's own LAS
    # preemption never touches b.
    projects = [ProjectState("a", gpu_quota=1), ProjectState("b", gpu_quota=1)]
    snap = snapshot(
        [node("n", 2)],
        pending=[job("b1", project="b", created_at=50), job("a-new", project="a")],
        running_jobs=[
            running("a-old", "a", [("n", [0])], started_at=0),
            running("a-young", "a", [("n", [1])], started_at=40),
        ],
        projects=projects,
        now=60,
    )
    d = LAS.decide(snap)
    assert preempted(d) == ["a-young"]
    assert d.pending["b1"].reason == "Reclaiming"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots())
def test_las_cycles_keep_every_invariant(snap: Snapshot) -> None:
    check_cycle(snap, LasPolicy(thresholds=(100.0, 1000.0)).decide(snap), own_victims=True)
