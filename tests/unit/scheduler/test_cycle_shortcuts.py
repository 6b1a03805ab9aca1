"""The shortcuts that keep one cycle short decide as the long way round would:

- the free-capacity index (idle devices per node, nodes bucketed by idle devices per group,
  partly used nodes, holds) agrees with a recomputation from the devices after any sequence
  of placements, releases and holds;
- the victim search, which skips nodes by cost and GPU-share bounds, finds the same node and
  victims as a search that tries every node;
- explaining a waiting job directly (``QuotaPolicy._plain`` / ``_waiting``) gives what a
  full consideration of the job gives;
- queues ordered by submission time alone (no ties) or with ids (ties) come out alike.
"""

from __future__ import annotations

import random

import pytest
from tests.unit.scheduler.random_snapshots import _request, digest, random_snapshot

from pier.scheduler.capacity import EPSILON, IDLE, Capacity, group_key, job_signature
from pier.scheduler.cycle import Cycle, Project, queue_shapes
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.reclaim import VictimIndex, _cheapest_node, _free_node
from pier.scheduler.types import (
    JobRequest,
    NodeState,
    Placement,
    ReplicaRequest,
    RunningJob,
)

SEEDS = range(30)


# -- the free-capacity index --


def _check_index(capacity: Capacity) -> None:
    for i, free in enumerate(capacity.devices):
        assert capacity.idle[i] == sum(1 for s in free if s >= IDLE)
        assert (i in capacity.partial) == any(EPSILON < s < IDLE for s in free)
    unheld = [i for i in range(len(capacity.nodes)) if not capacity.held[i]]
    assert capacity.free_idle == sum(capacity.idle[i] for i in unheld)
    for key in list(capacity._groups):
        group = capacity.group(key)
        for count, bucket in enumerate(group.buckets):
            assert set(bucket) == {
                i for i in group.members if not capacity.held[i] and capacity.idle[i] == count
            }
        for count, bucket in enumerate(group.held_buckets):
            assert set(bucket) == {
                i for i in group.members if capacity.held[i] and capacity.idle[i] == count
            }
        assert group.idle_total == sum(capacity.idle[i] for i in group.members if i in unheld)


def _random_nodes(rng: random.Random) -> list[NodeState]:
    nodes = []
    for i in range(rng.choice([3, 8, 20])):
        devices = tuple(rng.choice([1.0, 1.0, 1.0, 0.0, 0.5, 0.25]) for _ in range(8))
        nodes.append(
            NodeState(
                f"n{i}",
                rng.choice(["a", "b"]),
                {"zone": rng.choice(["z1", "z2"])},
                rng.choice(["a100", "h100"]),
                64.0,
                2**38,
                devices,
                rng.choice([8.0, 64.0]),
                2**38,
            )
        )
    return nodes


@pytest.mark.parametrize("seed", SEEDS)
def test_capacity_index_agrees_with_a_recomputation(seed: int) -> None:
    rng = random.Random(seed)
    nodes = _random_nodes(rng)
    capacity = Capacity(nodes)
    names = ["p0", "p1"]
    for replica in (_request(rng, "warm", names, 0.0).replicas[0], ReplicaRequest("w", 0, 1.0)):
        capacity.group(group_key(replica))  # groups built before the changes are kept too
    _check_index(capacity)
    placed: list[tuple[Placement, ...]] = []
    for step in range(60):
        action = rng.random()
        if action < 0.6:
            found = capacity.try_place(_request(rng, f"j{step}", names, 0.0))
            if found is not None:
                placed.append(found)
        elif action < 0.85 and placed:
            capacity.vacate(placed.pop(rng.randrange(len(placed))))
        else:
            capacity.hold(rng.randrange(len(nodes)))
        _check_index(capacity)


# -- the victim search --


def _exhaustive(
    shadow: Capacity,
    replica: ReplicaRequest,
    index: VictimIndex,
    eligible: object,
    taken: set[str],
) -> tuple[int, list[RunningJob]] | None:
    """Every node with candidates tried, no bound: the plan of least (cost, victims, node)."""
    members = shadow.group(group_key(replica)).member_set
    plans = []
    for node, candidates in index.by_node.items():
        if node in members:
            plan = _free_node(shadow, node, replica, candidates, eligible, taken, {}, None)  # type: ignore[arg-type]
            if plan is not None:
                plans.append((plan[0], len(plan[1]), node, plan[1]))
    if not plans:
        return None
    _, _, node, chosen = min(plans, key=lambda p: p[:3])
    return node, chosen


def test_bounded_victim_search_finds_what_trying_every_node_finds() -> None:
    found_some = 0
    for seed in SEEDS:
        snap = random_snapshot(seed, nodes=16, pending=60)
        rng = random.Random(seed)
        capacity = Capacity(snap.nodes)
        for job in snap.running:
            if job.terminating:
                capacity.vacate(job.placements)
        index = VictimIndex(snap.running, snap.now, capacity.index, None)
        givers = {f"p{i}" for i in range(6) if rng.random() < 0.7}

        def eligible(victim: RunningJob, taken: object, givers: set[str] = givers) -> bool:
            return victim.project in givers

        for job in snap.pending:
            for replica in job.replicas:
                expected = _exhaustive(capacity, replica, index, eligible, set())
                for bound_by in (None, givers, givers | {"p0"}):
                    found = _cheapest_node(capacity, replica, index, eligible, set(), {}, bound_by)
                    assert found == expected
                found_some += expected is not None
    assert found_some > 100


# -- explaining waiting jobs directly --


class _QuotaLongWay(QuotaPolicy):
    def _plain(self, c: Cycle, p: Project, job: JobRequest, gpu: float, signature: object) -> bool:
        return False


class _LasLongWay(LasPolicy):
    def _plain(self, c: Cycle, p: Project, job: JobRequest, gpu: float, signature: object) -> bool:
        return False


@pytest.mark.parametrize(
    ("short", "long"),
    [
        (QuotaPolicy(), _QuotaLongWay()),
        (QuotaPolicy(max_reclaims=1), _QuotaLongWay(max_reclaims=1)),
        (QuotaPolicy(reserve_after=None), _QuotaLongWay(reserve_after=None)),
        (LasPolicy(max_reclaims=2), _LasLongWay(max_reclaims=2)),
    ],
    ids=["quota", "quota-one-search", "quota-no-holds", "las-two-searches"],
)
def test_waiting_jobs_explained_directly_as_by_a_full_consideration(
    short: QuotaPolicy, long: QuotaPolicy
) -> None:
    plain = 0
    for seed in SEEDS:
        for snap in (random_snapshot(seed), random_snapshot(seed, nodes=4, pending=300)):
            assert digest(short.decide(snap)) == digest(long.decide(snap))
            plain += len(short.decide(snap).pending)
    assert plain > 0


# -- queue order --


def test_queue_shapes_are_the_job_signatures() -> None:
    for seed in SEEDS:
        queue = list(random_snapshot(seed).pending)
        gpus, shapes = queue_shapes(queue)
        assert shapes == [job_signature(j) for j in queue]
        assert gpus == [sum(r.gpu for r in j.replicas) for j in queue]


def test_queue_order_is_priority_then_submission_then_id() -> None:
    replicas = (ReplicaRequest("w", 0, 1.0),)
    jobs = [
        JobRequest(f"j{i:02d}", "p", float(created), replicas, priority=priority)
        for i, (created, priority) in enumerate(
            [(5, 0), (3, 0), (5, 0), (3, 1), (1, 0), (3, 1), (5, 0), (2, 1)]
        )
    ]
    expected = sorted(jobs, key=lambda j: (-j.priority, j.created_at, j.id))
    for seed in range(5):
        shuffled = list(jobs)
        random.Random(seed).shuffle(shuffled)
        assert QuotaPolicy().order(shuffled, 0.0) == expected  # ties of time: by id
        distinct = [j for j in shuffled if j.id in {"j00", "j01", "j04", "j07"}]
        assert QuotaPolicy().order(distinct, 0.0) == [j for j in expected if j in distinct]
