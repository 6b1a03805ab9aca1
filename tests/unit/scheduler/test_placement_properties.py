"""Property: whatever the nodes and jobs, FreeState never over-allocates anything and
admits gangs whole."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pier.scheduler.fifo import FifoPolicy
from pier.scheduler.placement import EPSILON, FreeState
from pier.scheduler.types import JobRequest, NodeState, Placement, ReplicaRequest, Snapshot

Admitted = dict[str, tuple[Placement, ...]]
GPU_SHAPES = [0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 1, 2, 3, 4, 8]
POOLS = ["a", "b"]
MODELS = ["a100", "h100"]


@st.composite
def nodes(draw: st.DrawFn) -> list[NodeState]:
    count = draw(st.integers(1, 5))
    result = []
    for i in range(count):
        devices = draw(st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.75, 1.0]), max_size=8))
        cpus = float(draw(st.integers(1, 64)))
        memory = draw(st.integers(1, 64)) * 2**30
        result.append(
            NodeState(
                name=f"n{i}",
                pool=draw(st.sampled_from(POOLS)),
                labels={"rack": draw(st.sampled_from(["r1", "r2"]))},
                gpu_model=draw(st.sampled_from(MODELS)) if devices else None,
                cpus=cpus,
                memory=memory,
                device_free=tuple(devices),
                cpu_free=draw(st.floats(0, cpus)),
                memory_free=draw(st.integers(0, memory)),
            )
        )
    return result


@st.composite
def jobs(draw: st.DrawFn) -> list[JobRequest]:
    result = []
    for j in range(draw(st.integers(1, 25))):
        gpu = draw(st.sampled_from(GPU_SHAPES))
        cpu = draw(st.sampled_from([0.0, 0.5, 1.0, 4.0, 16.0]))
        memory = draw(st.sampled_from([0, 2**28, 2**31, 2**34]))
        pool = draw(st.none() | st.sampled_from(POOLS))
        model = draw(st.none() | st.sampled_from(MODELS))
        selector = draw(st.sampled_from([{}, {"rack": "r1"}]))
        replicas = tuple(
            ReplicaRequest("w", i, gpu, cpu, memory, model, pool, selector)
            for i in range(draw(st.integers(1, 4)))
        )
        result.append(JobRequest(f"j{j}", "p", float(j), replicas))
    return result


def _check(all_nodes: list[NodeState], pending: list[JobRequest], admitted: Admitted) -> None:
    """Placements respect constraints, and their sum fits what was free on every node."""
    by_name = {n.name: n for n in all_nodes}
    requests = {(j.id, r.task, r.index): r for j in pending for r in j.replicas}
    device_use: dict[tuple[str, int], float] = defaultdict(float)
    cpu_use: dict[str, float] = defaultdict(float)
    mem_use: dict[str, int] = defaultdict(int)
    for job_id, placements in admitted.items():
        for p in placements:
            node = by_name[p.node]
            request = requests[(job_id, p.task, p.index)]
            assert node.pool == request.node_pool or request.node_pool is None
            assert request.gpu_model is None or request.gpu_model == node.gpu_model
            assert all(node.labels.get(k) == v for k, v in request.node_selector.items())
            if 0 < request.gpu < 1:
                assert len(p.devices) == 1 and p.gpu_fraction == request.gpu
            else:
                assert len(p.devices) == int(request.gpu) and p.gpu_fraction == 0.0
                assert len(set(p.devices)) == len(p.devices)
            for d in p.devices:
                device_use[(p.node, d)] += p.gpu_fraction or 1.0
            cpu_use[p.node] += request.cpu
            mem_use[p.node] += request.memory
    for (name, d), used in device_use.items():
        assert used <= by_name[name].device_free[d] + 1e-6, (name, d, used)
    for name, used_cpu in cpu_use.items():
        assert used_cpu <= by_name[name].cpu_free + 1e-6
    for name, used_mem in mem_use.items():
        assert used_mem <= by_name[name].memory_free


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(all_nodes=nodes(), pending=jobs())
def test_free_state_never_over_allocates(
    all_nodes: list[NodeState], pending: list[JobRequest]
) -> None:
    free = FreeState(all_nodes)
    admitted: Admitted = {}
    for job in pending:
        placements = free.try_place(job)
        if placements is None:
            continue
        # an admitted gang is placed whole: one placement per replica, in order
        assert [(p.task, p.index) for p in placements] == [(r.task, r.index) for r in job.replicas]
        admitted[job.id] = placements
    _check(all_nodes, pending, admitted)
    for n in free._nodes:  # the working copy itself: no share, CPU or memory below zero
        assert all(-EPSILON <= share <= 1.0 + EPSILON for share in n.devices)
        assert n.cpu >= -1e-6
        assert n.memory >= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(all_nodes=nodes(), pending=jobs())
def test_policy_admissions_fit_together(
    all_nodes: list[NodeState], pending: list[JobRequest]
) -> None:
    snapshot = Snapshot(now=1000.0, nodes=tuple(all_nodes), projects={}, pending=tuple(pending))
    decisions = FifoPolicy().decide(snapshot)
    admitted = {a.job_id: a.placements for a in decisions.admit}
    assert set(admitted) | set(decisions.pending) == {j.id for j in pending}
    assert not set(admitted) & set(decisions.pending)
    for job in pending:
        if job.id in admitted:
            assert len(admitted[job.id]) == len(job.replicas)
    _check(all_nodes, pending, admitted)
