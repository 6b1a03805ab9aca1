"""Properties of one QuotaPolicy cycle over random clusters, quotas and job streams."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.scheduler.quota_builders import node, snapshot

from pier.scheduler.capacity import Capacity
from pier.scheduler.las import LasPolicy
from pier.scheduler.placement import place_job
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import (
    Decisions,
    JobRequest,
    NodeState,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)

GPU_SHAPES = [0, 0.25, 0.5, 1, 1, 1, 2, 4, 8]
PROJECTS = ["p", "q", "r"]
TOLERANCE = 1e-6


@st.composite
def clusters(draw: st.DrawFn) -> list[NodeState]:
    return [
        node(
            f"n{i}",
            draw(st.sampled_from([0, 2, 4, 8])),
            pool=draw(st.sampled_from(["a", "b"])),
            model=draw(st.sampled_from(["a100", "h100"])),
            cpus=float(draw(st.sampled_from([8, 32, 64]))),
            memory=draw(st.sampled_from([2**34, 2**36])),
        )
        for i in range(draw(st.integers(1, 5)))
    ]


@st.composite
def requests(draw: st.DrawFn, prefix: str, count: int) -> list[JobRequest]:
    result = []
    for j in range(count):
        gpu = draw(st.sampled_from(GPU_SHAPES))
        cpu = draw(st.sampled_from([0.0, 1.0, 8.0]))
        memory = draw(st.sampled_from([0, 2**30, 2**34]))
        pool = draw(st.none() | st.sampled_from(["a", "b"]))
        model = draw(st.none() | st.none() | st.sampled_from(["a100", "h100"]))
        replicas = tuple(
            ReplicaRequest("w", i, gpu, cpu, memory, model, pool)
            for i in range(draw(st.sampled_from([1, 1, 1, 2, 3])))
        )
        preemptible = draw(st.booleans())
        interactive = not preemptible and draw(st.booleans())
        result.append(
            JobRequest(
                id=f"{prefix}{j}",
                project=draw(st.sampled_from(PROJECTS)),
                created_at=float(draw(st.integers(0, 900))),
                replicas=replicas,
                priority=1 if interactive else 0,
                preemptible=preemptible,
                interactive=interactive,
                schedule_timeout=draw(st.none() | st.sampled_from([10.0, 600.0])),
                not_before=draw(st.none() | st.none() | st.sampled_from([500.0, 2000.0])),
            )
        )
    return result


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    nodes = draw(clusters())
    capacity = Capacity(nodes)
    running: list[RunningJob] = []
    for req in draw(requests("r", draw(st.integers(0, 10)))):
        placements = capacity.try_place(req)
        if placements is not None:
            running.append(
                RunningJob(
                    req.id,
                    req.project,
                    req.gpu,
                    req.preemptible,
                    float(draw(st.integers(0, 999))),
                    placements,
                    priority=req.priority,
                    terminating=draw(st.integers(0, 5)) == 0,
                )
            )
    projects = [
        ProjectState(
            name,
            gpu_quota=float(draw(st.sampled_from([0, 1, 2, 4, 8]))),
            max_gpu=draw(st.none() | st.sampled_from([2.0, 6.0])),
            weight=draw(st.none() | st.sampled_from([1.0, 3.0])),
            department=draw(st.none() | st.just("d")),
        )
        for name in PROJECTS
    ]
    pending = draw(requests("j", draw(st.integers(0, 15))))
    return snapshot(nodes, pending=pending, running_jobs=running, projects=projects, now=1000.0)


def _usage(snap: Snapshot, decisions: Decisions) -> dict[str, dict[str, float]]:
    by_id = {j.id: j for j in snap.pending}
    usage: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    victims = {f.job_id for f in decisions.preempt}
    for r in snap.running:
        if not r.terminating:
            usage[r.project]["before"] += r.gpu
            if r.id not in victims:  # what it keeps: stopping jobs and victims do not count
                usage[r.project]["kept"] += r.gpu
            if not r.preemptible:
                usage[r.project]["np_before"] += r.gpu
    for a in decisions.admit:
        j = by_id[a.job_id]
        usage[j.project]["admitted"] += j.gpu
        if not j.preemptible:
            usage[j.project]["np_admitted"] += j.gpu
    return usage


def _residual(snap: Snapshot, decisions: Decisions) -> list[NodeState]:
    """Free capacity once this cycle's admissions are placed; checks nothing overflows."""
    devices = {n.name: list(n.device_free) for n in snap.nodes}
    cpu = {n.name: n.cpu_free for n in snap.nodes}
    memory = {n.name: n.memory_free for n in snap.nodes}
    for a in decisions.admit:
        for p in a.placements:
            for d in p.devices:
                devices[p.node][d] -= p.gpu_fraction or 1.0
                assert devices[p.node][d] >= -TOLERANCE, (p.node, d)
            cpu[p.node] -= p.cpu
            memory[p.node] -= p.memory
            assert cpu[p.node] >= -TOLERANCE and memory[p.node] >= 0
    return [
        NodeState(
            n.name,
            n.pool,
            n.labels,
            n.gpu_model,
            n.cpus,
            n.memory,
            tuple(max(0.0, s) for s in devices[n.name]),
            cpu[n.name],
            memory[n.name],
        )
        for n in snap.nodes
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots(), reserve=st.sampled_from([None, 300.0]))
def test_one_cycle_keeps_every_invariant(snap: Snapshot, reserve: float | None) -> None:
    check_cycle(snap, QuotaPolicy(reserve_after=reserve).decide(snap))


def check_cycle(snap: Snapshot, decisions: Decisions, *, own_victims: bool = False) -> None:
    """Every per-cycle invariant; ``own_victims``: a job may preempt jobs of its own project
    that it outranks whatever the quota (least attained service)."""
    by_id = {j.id: j for j in snap.pending}
    admitted = {a.job_id: a for a in decisions.admit}
    failed = {f.job_id for f in decisions.fail}
    # every pending job gets exactly one outcome
    assert len(admitted) + len(failed) + len(decisions.pending) == len(by_id)
    assert set(admitted) | failed | set(decisions.pending) == set(by_id)
    # gangs all-or-nothing, one placement per replica
    for job_id, a in admitted.items():
        replicas = by_id[job_id].replicas
        assert [(p.task, p.index) for p in a.placements] == [(r.task, r.index) for r in replicas]
    residual = _residual(snap, decisions)  # no device over 1.0, no node over CPU/memory
    quotas = dict(snap.projects)
    usage = _usage(snap, decisions)
    for name, u in usage.items():
        quota = quotas[name].gpu_quota
        if u["np_admitted"]:
            assert u["np_before"] + u["np_admitted"] <= quota + TOLERANCE
        limit = quotas[name].max_gpu
        if limit is not None and u["admitted"]:
            assert u["kept"] + u["admitted"] <= limit + TOLERANCE
    # victims: preemptible, running, not already stopping, and of a project over its
    # deserved quota (counting, for a job that reclaims within its own project, what the
    # project was admitted this cycle and the reclaiming job itself)
    running = {r.id: r for r in snap.running}
    reclaiming: dict[str, float] = defaultdict(float)
    for job_id, info in decisions.pending.items():
        if info.reason == "Reclaiming":
            reclaiming[by_id[job_id].project] += by_id[job_id].gpu
    assert len({f.job_id for f in decisions.preempt}) == len(decisions.preempt)
    for f in decisions.preempt:
        victim = running[f.job_id]
        assert f.reason == "Preempted" and victim.preemptible and not victim.terminating
        owner = victim.project
        if own_victims and owner in reclaiming:
            continue
        own = usage[owner]["admitted"] + reclaiming[owner]  # reclaim within its own project
        assert usage[owner]["before"] + own > quotas[owner].gpu_quota
    if decisions.preempt:
        assert reclaiming
    # work conservation: a job left waiting for capacity does not fit what is left
    for job_id, info in decisions.pending.items():
        if info.reason != "NoCapacity":
            continue
        job = by_id[job_id]
        if len(job.replicas) == 1:
            assert place_job(residual, job) is None, job_id
        else:
            assert not Capacity(residual).fits(job), job_id


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots())
def test_decisions_depend_only_on_the_snapshot(snap: Snapshot) -> None:
    shuffled = Snapshot(
        snap.now,
        snap.nodes,
        snap.projects,
        tuple(reversed(snap.pending)),
        tuple(reversed(snap.running)),
    )
    first = QuotaPolicy().decide(snap)
    assert first == QuotaPolicy().decide(snap)
    again = QuotaPolicy().decide(shuffled)
    assert [a.job_id for a in again.admit] == [a.job_id for a in first.admit]
    assert again.pending == first.pending


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    snap=snapshots(),
    reserve=st.sampled_from([None, 300.0]),
    las=st.booleans(),
    budget=st.sampled_from([1, 16]),
)
def test_without_explanations_the_decisions_are_the_same(
    snap: Snapshot, reserve: float | None, las: bool, budget: int
) -> None:
    def policy(explain: bool) -> QuotaPolicy:
        if las:
            return LasPolicy(
                thresholds=(100.0, 1000.0),
                reserve_after=reserve,
                max_reclaims=budget,
                explain=explain,
            )
        return QuotaPolicy(reserve_after=reserve, max_reclaims=budget, explain=explain)

    full, quiet = policy(True).decide(snap), policy(False).decide(snap)
    assert (quiet.admit, quiet.preempt, quiet.fail) == (full.admit, full.preempt, full.fail)
    assert quiet.pending == {}
