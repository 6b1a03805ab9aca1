"""Fragmentation-aware placement of GPU fractions (FGD)."""

from __future__ import annotations

import pytest
from tests.unit.scheduler.quota_builders import job, node, running, snapshot

from pier.scheduler.capacity import Capacity
from pier.scheduler.fragmentation import Workload, fragmentation, snapshot_workload
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import NodeState, ProjectState

HALVES = Workload.of([(0.5, 0.0, 0)])


def test_fragment_is_what_a_task_cannot_use() -> None:
    # a 0.3 sliver cannot hold a 0.5 task; the idle device can
    assert fragmentation((1.0, 0.3), 8.0, 2**30, HALVES) == pytest.approx(0.3)
    # a whole-GPU task cannot use any partly used device
    whole = Workload.of([(1.0, 0.0, 0)])
    assert fragmentation((1.0, 0.7), 8.0, 2**30, whole) == pytest.approx(0.7)
    # two GPUs needed, one idle: everything free is a fragment
    assert fragmentation((1.0, 0.7), 8.0, 2**30, Workload.of([(2.0, 0.0, 0)])) == pytest.approx(1.7)
    # short of CPU: all free GPU is a fragment; CPU-only tasks that fit strand nothing
    assert fragmentation((1.0,), 1.0, 2**30, Workload.of([(0.5, 4.0, 0)])) == 1.0
    assert fragmentation((1.0,), 8.0, 2**30, Workload.of([(0.0, 4.0, 0)])) == 0.0
    # weighted by how common each task is
    mixed = Workload.of([(0.5, 0.0, 0), (1.0, 0.0, 0), (1.0, 0.0, 0), (1.0, 0.0, 0)])
    assert fragmentation((1.0, 0.3), 8.0, 0, mixed) == pytest.approx(0.3)
    assert fragmentation((0.0, 0.0), 8.0, 0, mixed) == 0.0


def test_workload_keeps_the_most_common_shapes() -> None:
    workload = Workload.of([(1.0, 0.0, 0)] * 3 + [(0.5, 0.0, 0)] * 2 + [(0.1, 0.0, 0)], top=2)
    assert workload.shapes == (((1.0, 0.0, 0), 0.6), ((0.5, 0.0, 0), 0.4))
    assert not Workload.of([])


def _half_used() -> NodeState:
    n = node("n0", 2)
    return NodeState(n.name, n.pool, n.labels, n.gpu_model, n.cpus, n.memory, (0.6, 1.0), 64, 2**40)


def test_best_fit_strands_a_sliver_that_fgd_avoids() -> None:
    request = job("small", 0.4)
    best_fit = Capacity([_half_used()]).try_place(request)
    assert best_fit is not None and best_fit[0].devices == (0,)  # leaves 0.2 there
    fgd = Capacity([_half_used()], HALVES).try_place(request)
    assert fgd is not None and fgd[0].devices == (1,)  # 0.6 and 0.6 both still hold a half
    assert fgd[0].gpu_fraction == pytest.approx(0.4)


def test_fragmentation_aware_policy_admits_what_best_fit_strands() -> None:
    # 0.6 and 1.0 free; 0.4, then 0.6, then 0.5 arrive. Best-fit puts 0.4 on the 0.6 device
    # (0.2 left, useless), 0.6 on the idle one, and 0.5 no longer fits anywhere.
    snap = snapshot(
        [node("n0", 2)],
        running_jobs=[running("r", "p", [("n0", [0])], fraction=0.4)],
        pending=[
            job("small", 0.4),
            job("big", 0.6, created_at=1.0),
            job("half", 0.5, created_at=2.0),
        ],
        projects=[ProjectState("p", gpu_quota=2.0)],
    )
    assert [a.job_id for a in QuotaPolicy().decide(snap).admit] == ["small", "big"]
    decisions = QuotaPolicy(fragmentation_aware=True).decide(snap)
    where = {a.job_id: a.placements[0].devices for a in decisions.admit}
    assert where == {"small": (1,), "big": (0,), "half": (1,)}


def test_snapshot_workload_counts_pending_and_running_replicas() -> None:
    snap = snapshot(
        [node("n0", 2)],
        running_jobs=[running("r", "p", [("n0", [0])], fraction=0.5)],
        pending=[job("a", 1.0, replicas=2), job("b", 0.5)],
    )
    shapes = dict(snapshot_workload(snap).shapes)
    assert shapes == {(1.0, 0.0, 0): 0.5, (0.5, 0.0, 0): 0.5}


def test_fragmentation_aware_policy_decides_like_best_fit_for_whole_gpus() -> None:
    nodes = [node(f"n{i}", 8) for i in range(3)]
    pending = [job(f"j{i}", float(1 + i % 4), created_at=float(i)) for i in range(12)]
    snap = snapshot(nodes, pending=pending, projects=[ProjectState("p", gpu_quota=24.0)])
    plain = QuotaPolicy().decide(snap)
    aware = QuotaPolicy(fragmentation_aware=True).decide(snap)
    assert plain.admit == aware.admit
