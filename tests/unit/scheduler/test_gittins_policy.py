"""GittinsPolicy: ranks learned from the project's finished jobs, on top of the LAS rules."""

from __future__ import annotations

import pytest
from tests.unit.scheduler.quota_builders import admitted, job, node, preempted, running, snapshot

from pier.scheduler.gittins import GittinsPolicy, gittins_ranks, grid
from pier.scheduler.las import LasPolicy
from pier.scheduler.simulate import TraceJob, replay
from pier.scheduler.types import ProjectState

EDGES = grid(1000.0, 2.0, 8)  # 0, 1000, 2000, 4000, ..., 64000
ALIKE = (10_000.0,) * 60
"""Every job of the project needed 10,000 GPU-seconds."""
HEAVY_TAIL = (500.0,) * 50 + (100_000.0,) * 10
"""Most jobs are short; the few that are not run very long."""


def gittins(**kwargs: object) -> GittinsPolicy:
    return GittinsPolicy(grid_start=1000.0, grid_ratio=2.0, grid_cells=8, **kwargs)  # type: ignore[arg-type]


def test_grid_and_ranks_of_alike_jobs_favour_the_nearly_done() -> None:
    assert EDGES == (0.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 64000.0)
    ranks = gittins_ranks(ALIKE, EDGES, 2.0)
    # G(a) = 1 / (10,000 - a): the more service a job has had, the better it ranks
    # (LAS would do the opposite); past every job of the history it ranks last.
    assert ranks[:5] == (13, 13, 12, 12, 10)
    assert ranks[5:] == (14, 14, 14)


def test_ranks_of_a_heavy_tail_favour_the_new() -> None:
    ranks = gittins_ranks(HEAVY_TAIL, EDGES, 2.0)
    # a new job finishes soon with probability 5/6; one past 1,000 GPU-s is a long one
    assert ranks[0] < ranks[1] == ranks[2] == ranks[3]
    assert ranks[0] == 9 and ranks[1] == 16


def test_jobs_past_every_sample_rank_last_and_no_history_ranks_zero() -> None:
    assert gittins_ranks((), EDGES, 2.0) == (1,) * 8
    assert gittins_ranks((0.5,) * 10, EDGES, 2.0)[0] == 0  # index above 1 per GPU-second


def test_a_nearly_done_job_is_not_preempted_for_a_new_one_where_jobs_are_alike() -> None:
    # "old" ran 1 GPU x 9,000 s: under LAS (queue 2 against 0) it would be preempted.
    projects = [ProjectState("p", gpu_quota=1, service_history=ALIKE)]
    snap = snapshot(
        [node("n", 1)],
        pending=[job("fresh", created_at=9000)],
        running_jobs=[running("old", "p", [("n", [0])], started_at=0)],
        projects=projects,
        now=9000,
    )
    las = LasPolicy(thresholds=(1000.0, 4000.0))
    assert preempted(las.decide(snap)) == ["old"]
    d = gittins().decide(snap)
    assert preempted(d) == [] and d.pending["fresh"].reason == "NoCapacity"


def test_a_new_job_preempts_a_long_one_where_the_tail_is_heavy() -> None:
    projects = [ProjectState("p", gpu_quota=1, service_history=HEAVY_TAIL)]
    snap = snapshot(
        [node("n", 1)],
        pending=[job("fresh", created_at=2500)],
        running_jobs=[running("long", "p", [("n", [0])], started_at=0)],
        projects=projects,
        now=2500,
    )
    d = gittins().decide(snap)
    assert preempted(d) == ["long"] and d.pending["fresh"].reason == "Reclaiming"
    assert "least-attained-service" in d.preempt[0].message


def test_pending_order_follows_the_ranks_then_fewer_gpus() -> None:
    projects = [ProjectState("p", gpu_quota=8, service_history=ALIKE)]
    snap = snapshot(
        [node("n", 2)],
        pending=[
            job("new", created_at=10),
            job("resumed", created_at=20, attained=8500),  # nearly done: ranks first
            job("new-2gpu", 2, created_at=5),
        ],
        projects=projects,
        now=100,
    )
    d = gittins().decide(snap)
    assert admitted(d) == ["resumed", "new"]
    assert d.pending["new-2gpu"].position == 2


def test_too_little_history_decides_as_las() -> None:
    projects = [ProjectState("p", gpu_quota=1, service_history=ALIKE[:10])]
    snap = snapshot(
        [node("n", 1)],
        pending=[job("fresh", created_at=9000)],
        running_jobs=[running("old", "p", [("n", [0])], started_at=0)],
        projects=projects,
        now=9000,
    )
    policy = gittins(min_history=50, thresholds=(1000.0, 4000.0))
    assert preempted(policy.decide(snap)) == ["old"]
    assert policy.service_points == (*EDGES[1:], 1000.0, 4000.0)


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="grid_ratio"):
        GittinsPolicy(grid_ratio=1.0)


def test_the_simulator_hands_the_policy_finished_jobs_service() -> None:
    # 60 alike jobs of 8 GPUs x 100 s fill the history; then "long" runs alone for a while
    # and a new job arrives: with alike history (800 GPU-s), "long" is past every sample and
    # ranks last, so the new job preempts it.
    jobs = [TraceJob(f"a{i}", float(i * 100), 100.0, 8) for i in range(60)]
    jobs += [TraceJob("long", 6000.0, 1000.0, 8), TraceJob("new", 6500.0, 100.0, 8)]
    policy = GittinsPolicy(
        grid_start=50.0, grid_ratio=2.0, grid_cells=10, explain=False, preempt_gap=1
    )
    result = replay(jobs, 1, policy, preemptive=True, thresholds=policy.service_points)
    assert result.preemptions == 1
    assert sorted(result.jct)[-2:] == [100.0, 1000.0 + 100.0 + 30.0]


def test_rank_points_are_the_edges_where_the_rank_gets_worse() -> None:
    policy = gittins(thresholds=(1000.0, 4000.0))
    assert policy.rank_points("p") == (1000.0, 4000.0)  # no history seen yet: LAS's
    for history, points in [(ALIKE, (16000.0,)), (HEAVY_TAIL, (1000.0,))]:
        policy.decide(
            snapshot([node("n", 1)], projects=[ProjectState("p", 1, service_history=history)])
        )
        ranks = gittins_ranks(history, EDGES, 2.0)
        assert policy.rank_points("p") == points
        assert all((e in points) == (ranks[k] > ranks[k - 1]) for k, e in enumerate(EDGES) if k)
    assert LasPolicy(thresholds=(5.0, 1.0)).rank_points("p") == (1.0, 5.0)


def test_the_simulator_wakes_where_a_running_job_becomes_a_victim() -> None:
    # 60 alike jobs of 8 GPUs x 125 s (1,000 GPU-s); "long" starts at 7,500 and "new" arrives
    # at 7,650, when "long" (1,200 GPU-s, nearly done by the history) ranks ahead of it.
    # At 7,700 "long" passes 1,600 GPU-s, beyond every sample: it ranks last, and a decision
    # there lets "new" preempt it.
    jobs = [TraceJob(f"a{i}", i * 125.0, 125.0, 8) for i in range(60)]
    jobs += [TraceJob("long", 7500.0, 1000.0, 8), TraceJob("new", 7650.0, 125.0, 8)]

    def policy() -> GittinsPolicy:
        return GittinsPolicy(
            grid_start=50.0, grid_ratio=2.0, grid_cells=10, explain=False, preempt_gap=1
        )

    woken = policy()
    result = replay(jobs, 1, woken, preemptive=True, wake_points=woken.rank_points)
    assert woken.rank_points("vc") == (1600.0,)
    assert result.preemptions == 1
    assert sorted(result.jct)[-2:] == [175.0, 200.0 + 830.0 + 125.0]
    # waking at every edge decides the same, more often; never waking, "new" waits
    every = policy()
    edges = replay(jobs, 1, every, preemptive=True, thresholds=every.service_points)
    assert edges.jct == result.jct and edges.decisions > result.decisions
    late = replay(jobs, 1, policy(), preemptive=True)
    assert late.preemptions == 0 and sorted(late.jct)[-2:] == [850.0 + 125.0, 1000.0]
