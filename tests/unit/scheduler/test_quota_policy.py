"""QuotaPolicy scenarios: one rule each, with the exact decisions expected."""

from __future__ import annotations

from tests.unit.scheduler.quota_builders import (
    admitted,
    interactive,
    job,
    node,
    preempted,
    running,
    snapshot,
)

from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import Failure, PendingInfo, ProjectState, RunningJob

POLICY = QuotaPolicy()


def test_order_within_a_project_is_priority_then_submission_then_id() -> None:
    snap = snapshot(
        [node("n", 3)],
        pending=[
            job("late", created_at=3),
            job("b-early", created_at=1),
            job("a-early", created_at=1),
            interactive("chat", created_at=9),
        ],
        projects=[ProjectState("p", gpu_quota=3)],
        now=10,
    )
    d = POLICY.decide(snap)
    assert admitted(d) == ["chat", "a-early", "b-early"]
    assert d.pending == {
        "late": PendingInfo("NoCapacity", "waiting for 1 GPUs in the cluster; 0 idle", 3)
    }


def test_non_preemptible_jobs_run_only_within_deserved_quota() -> None:
    snap = snapshot(
        [node("n", 8)],
        pending=[interactive("i1", 2, created_at=1), interactive("i2", 2, created_at=2)],
        running_jobs=[running("train", "p", [("n", [0, 1, 2, 3])])],
        projects=[ProjectState("p", gpu_quota=3)],
    )
    d = POLICY.decide(snap)
    # i1 fits the quota counting only non-preemptible usage; the training job above it is
    # now over quota (and reclaimable), i2 would take non-preemptible usage to 4 > 3.
    assert admitted(d) == ["i1"]
    assert d.pending["i2"] == PendingInfo(
        "QuotaExceeded",
        "project p has a deserved quota of 3 GPUs and 2 in use by non-preemptible jobs; "
        "a non-preemptible job runs only within it",
        1,
    )


def test_preemptible_jobs_borrow_idle_capacity_beyond_quota() -> None:
    snap = snapshot(
        [node("n", 4)],
        pending=[job(f"t{i}", created_at=i) for i in range(5)],
        projects=[ProjectState("p", gpu_quota=1)],
    )
    d = POLICY.decide(snap)
    assert admitted(d) == ["t0", "t1", "t2", "t3"]
    assert d.pending["t4"].reason == "NoCapacity"


def test_max_gpu_is_a_hard_limit_even_for_preemptible_jobs() -> None:
    snap = snapshot(
        [node("n", 8)],
        pending=[job("a", 2, created_at=1), job("b", 2, created_at=2)],
        running_jobs=[running("r", "p", [("n", [0])])],
        projects=[ProjectState("p", gpu_quota=1, max_gpu=3)],
    )
    d = POLICY.decide(snap)
    assert admitted(d) == ["a"]
    assert d.pending["b"] == PendingInfo(
        "ProjectLimit", "project p would exceed its limit of 3 GPUs (3 in use)", 1
    )


def _borrowed_cluster() -> tuple[list[ProjectState], list[RunningJob]]:
    projects = [ProjectState("a", gpu_quota=4), ProjectState("b", gpu_quota=4)]
    # a holds all 8 GPUs: 4 within its quota, 4 borrowed.
    jobs = [
        running("a-old", "a", [("n", [0, 1, 2, 3])], started_at=0),
        running("a-mid", "a", [("n", [4, 5])], started_at=500),
        running("a-new", "a", [("n", [6, 7])], started_at=900),
    ]
    return projects, jobs


def test_reclaim_preempts_the_cheapest_over_quota_jobs_of_other_projects() -> None:
    projects, jobs = _borrowed_cluster()
    snap = snapshot(
        [node("n", 8)],
        pending=[job("b1", 2, project="b", created_at=950), job("a-more", 1, project="a")],
        running_jobs=jobs,
        projects=projects,
    )
    d = POLICY.decide(snap)
    assert d.admit == []
    # a-new lost 2 GPUs x 100 s = 200 GPU-s; a-mid 1000; a-old 4000.
    assert d.preempt == [
        Failure("a-new", "Preempted", "preempted to reclaim deserved quota of project b for job b1")
    ]
    assert d.pending["b1"] == PendingInfo(
        "Reclaiming", "preempting a-new to make room; starts once they have stopped", 0
    )
    assert d.pending["a-more"].reason == "NoCapacity"


def test_reclaim_takes_as_few_victims_as_needed_and_gangs_go_whole() -> None:
    projects = [ProjectState("a", gpu_quota=0), ProjectState("b", gpu_quota=8)]
    jobs = [
        running("gang", "a", [("n1", [0, 1, 2, 3]), ("n2", [0, 1, 2, 3])], started_at=990),
        running("small", "a", [("n1", [4])], started_at=999),
        running("rest1", "a", [("n1", [5, 6, 7])], started_at=0),
        running("rest2", "a", [("n2", [4, 5, 6, 7])], started_at=0),
    ]
    snap = snapshot(
        [node("n1"), node("n2")],
        pending=[job("need4", 4, project="b")],
        running_jobs=jobs,
        projects=projects,
    )
    d = POLICY.decide(snap)
    # Cheapest first: small (1 GPU-s), then gang (80 GPU-s) which frees 4 on each node;
    # small is not needed once the gang is gone, so it is kept.
    assert preempted(d) == ["gang"]
    assert d.pending["need4"].reason == "Reclaiming"


def test_no_reclaim_from_projects_within_quota_or_of_non_preemptible_jobs() -> None:
    projects = [
        ProjectState("a", gpu_quota=4),
        ProjectState("b", gpu_quota=2),
        ProjectState("c", gpu_quota=2),
    ]
    jobs = [
        running("a-in", "a", [("n", [0, 1, 2, 3])]),
        running("b-np", "b", [("n", [4, 5, 6])], preemptible=False),
        running("b-over-np", "b", [("n", [7])], preemptible=False),
    ]
    snap = snapshot(
        [node("n", 8)],
        pending=[job("c1", 1, project="c")],
        running_jobs=jobs,
        projects=projects,
    )
    d = POLICY.decide(snap)
    assert d.preempt == [] and d.admit == []
    assert d.pending["c1"].reason == "NoCapacity"


def test_own_lower_priority_jobs_make_room_for_an_interactive_job() -> None:
    snap = snapshot(
        [node("n", 4)],
        pending=[interactive("chat", 1)],
        running_jobs=[running("train", "p", [("n", [0, 1, 2, 3])], started_at=10)],
        projects=[ProjectState("p", gpu_quota=4)],
    )
    d = POLICY.decide(snap)
    assert d.preempt == [
        Failure("train", "Preempted", "preempted by job chat of project p, which ranks higher")
    ]


def test_terminating_victims_are_awaited_not_preempted_again() -> None:
    projects, jobs = _borrowed_cluster()
    stopping = [
        j if j.id != "a-new" else running("a-new", "a", [("n", [6, 7])], terminating=True)
        for j in jobs
    ]
    snap = snapshot(
        [node("n", 8)],
        pending=[job("b1", 2, project="b"), job("a-more", 2, project="a")],
        running_jobs=stopping,
        projects=projects,
    )
    d = POLICY.decide(snap)
    assert d.preempt == [] and d.admit == []
    assert d.pending["b1"] == PendingInfo(
        "Reclaiming", "waiting for stopping jobs to release the capacity it needs", 0
    )


def test_reclaimed_capacity_is_held_for_the_beneficiary() -> None:
    projects = [ProjectState("a", gpu_quota=0), ProjectState("b", gpu_quota=8)]
    snap = snapshot(
        [node("n1", 4), node("n2", 4)],
        pending=[job("b1", 4, project="b"), job("a2", 1, project="a", created_at=5)],
        running_jobs=[
            running("a1", "a", [("n1", [0, 1])], started_at=900),
            running("a0", "a", [("n2", [0, 1, 2])], started_at=0),
        ],
        projects=projects,
    )
    d = POLICY.decide(snap)
    assert preempted(d) == ["a1"]
    # n1 is held for b1, so a2 (borrowing) goes to n2.
    assert [(a.job_id, a.placements[0].node) for a in d.admit] == [("a2", "n2")]


def test_idle_capacity_is_shared_by_weight() -> None:
    projects = [ProjectState("a", weight=3), ProjectState("b", weight=1)]
    snap = snapshot(
        [node("n", 8)],
        pending=[job(f"{p}{i}", project=p, created_at=i) for p in "ab" for i in range(8)],
        projects=projects,
    )
    d = POLICY.decide(snap)
    assert sorted(admitted(d)) == ["a0", "a1", "a2", "a3", "a4", "a5", "b0", "b1"]


def test_idle_quota_is_lent_within_the_department_first() -> None:
    def projects(dept: str | None) -> list[ProjectState]:
        return [
            ProjectState("a", gpu_quota=4, department=dept),
            ProjectState("b", gpu_quota=0, weight=1, department=dept),
            ProjectState("c", gpu_quota=4, weight=1),
        ]

    pending = [job(f"{p}{i}", project=p, created_at=i) for p in "bc" for i in range(4)]
    used = [running(f"c-run{i}", "c", [("n", [i])]) for i in range(4)]
    shared = snapshot([node("n", 8)], pending=pending, running_jobs=used, projects=projects("d"))
    assert sorted(admitted(POLICY.decide(shared))) == ["b0", "b1", "b2", "b3"]
    alone = snapshot([node("n", 8)], pending=pending, running_jobs=used, projects=projects(None))
    assert sorted(admitted(POLICY.decide(alone))) == ["b0", "b1", "c0", "c1"]


def test_backfill_until_the_head_has_waited_the_bound_then_it_holds_a_node() -> None:
    pending = [job("big", 4, created_at=0), job("small", 1, created_at=1)]
    used = [running("r", "p", [("n1", [0, 1])]), running("r2", "p", [("n2", [0, 1, 2])])]
    nodes = [node("n1", 4), node("n2", 4)]
    early = POLICY.decide(snapshot(nodes, pending=pending, running_jobs=used, now=100))
    assert [(a.job_id, a.placements[0].node) for a in early.admit] == [("small", "n2")]
    late = POLICY.decide(snapshot(nodes, pending=pending, running_jobs=used, now=400))
    # big waited 400 s >= 300 s: it holds n1 (most idle); small still backfills on n2.
    assert [(a.job_id, a.placements[0].node) for a in late.admit] == [("small", "n2")]
    assert late.pending["big"].message.endswith(
        "waiting 400s, so it holds capacity: nothing behind it starts there"
    )
    only_n1 = [running("r", "p", [("n1", [0, 1])]), running("r2", "p", [("n2", [0, 1, 2, 3])])]
    held = POLICY.decide(snapshot(nodes, pending=pending, running_jobs=only_n1, now=400))
    assert held.admit == []
    assert held.pending["small"] == PendingInfo(
        "Held", "capacity it fits is held for job big, which comes first", 1
    )


def test_without_a_bound_backfill_never_holds() -> None:
    pending = [job("big", 4, created_at=0), job("small", 1, created_at=1)]
    used = [running("r", "p", [("n1", [0, 1])])]
    d = QuotaPolicy(reserve_after=None).decide(
        snapshot([node("n1", 4)], pending=pending, running_jobs=used, now=10**6)
    )
    assert admitted(d) == ["small"]


def test_schedule_timeout_fails_unschedulable_from_when_it_last_became_pending() -> None:
    stuck = job("stuck", 8, created_at=10.0, schedule_timeout=5.0)
    failed = POLICY.decide(snapshot([node("n", 4)], pending=[stuck], now=15.0))
    assert failed.fail == [
        Failure(
            "stuck",
            "Unschedulable",
            "job stuck cannot be scheduled within 5000 ms: no available resource that meets "
            "the request requirements (gpu=8, replicas=1)",
        )
    ]
    back = job("back", 8, created_at=0.0, schedule_timeout=5.0, pending_since=12.0)
    waiting = POLICY.decide(snapshot([node("n", 4)], pending=[back], now=15.0))
    assert waiting.fail == [] and "back" in waiting.pending


def test_explanations() -> None:
    nodes = [node("n1", 4), node("n2", 4), node("cpu", 0, pool="cpu")]
    used = [running("r1", "p", [("n1", [0, 1])]), running("r2", "p", [("n2", [0, 1])])]
    pending = [
        job("pool", 1, pool="tpu"),
        job("huge", 16),
        job("gang", 4, replicas=3),
        job("frag", 3, created_at=1),
        job("retry", 1, not_before=5000.0, created_at=2),
    ]
    d = QuotaPolicy(reserve_after=None).decide(
        snapshot(nodes, pending=pending, running_jobs=used, projects=[ProjectState("p")])
    )
    assert d.pending["pool"].message == "no node has node pool 'tpu'"
    assert d.pending["pool"].reason == "NoMatchingNode"
    assert d.pending["huge"].message == (
        "asks for 16 GPUs, 0 CPUs and 0 bytes of memory per replica; no node in the "
        "cluster has all of them"
    )
    assert d.pending["gang"].message == (
        "its 3 replicas together (12 GPUs) do not fit on the cluster even when it is idle"
    )
    assert d.pending["frag"] == PendingInfo(
        "NoCapacity",
        "fragmentation: 4 idle GPUs in the cluster, but no node has 3 of them together with "
        "the CPU and memory asked",
        3,
    )
    assert d.pending["retry"].reason == "BackoffRetry"


def test_a_project_missing_from_the_snapshot_has_no_quota() -> None:
    d = POLICY.decide(
        snapshot([node("n", 2)], pending=[interactive("chat"), job("train", created_at=1)])
    )
    assert admitted(d) == ["train"]
    assert d.pending["chat"].reason == "QuotaExceeded"


def test_decisions_are_deterministic() -> None:
    projects, jobs = _borrowed_cluster()
    snap = snapshot(
        [node("n", 8)],
        pending=[job(f"b{i}", 1, project="b", created_at=i) for i in range(6)],
        running_jobs=jobs,
        projects=projects,
    )
    assert POLICY.decide(snap) == POLICY.decide(snap)


def test_past_its_timeout_a_job_waits_for_stopping_victims_but_preempts_no_more() -> None:
    projects, jobs = _borrowed_cluster()
    stopping = [
        running("a-new", "a", [("n", [6, 7])], terminating=True) if j.id == "a-new" else j
        for j in jobs
    ]
    waits = job("b1", 2, project="b", schedule_timeout=10.0)
    d = POLICY.decide(
        snapshot([node("n", 8)], pending=[waits], running_jobs=stopping, projects=projects)
    )
    assert d.fail == [] and d.pending["b1"].reason == "Reclaiming"
    more = job("b2", 4, project="b", schedule_timeout=10.0)
    d = POLICY.decide(
        snapshot([node("n", 8)], pending=[more], running_jobs=stopping, projects=projects)
    )
    assert d.preempt == [] and [f.reason for f in d.fail] == ["Unschedulable"]


def test_victim_searches_per_cycle_are_bounded() -> None:
    projects = [ProjectState("a", gpu_quota=0), ProjectState("b", gpu_quota=8)]
    jobs = [running(f"a{i}", "a", [("n", [i])], started_at=float(i)) for i in range(8)]
    pending = [job(f"b{i}", 1, project="b", created_at=float(i)) for i in range(3)]
    snap = snapshot([node("n", 8)], pending=pending, running_jobs=jobs, projects=projects)
    assert len(QuotaPolicy().decide(snap).preempt) == 3
    limited = QuotaPolicy(max_reclaims=2).decide(snap)
    assert preempted(limited) == ["a7", "a6"]
    assert limited.pending["b2"].reason == "NoCapacity"
