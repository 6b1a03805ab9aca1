"""Placement: fractions, whole GPUs, gangs, hard constraints, infeasibility messages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from pier.scheduler.placement import FreeState, explain_infeasible, place_job
from pier.scheduler.types import JobRequest, NodeState, Placement, ReplicaRequest

GiB = 1024**3


def node(
    name: str,
    gpus: int | Sequence[float] = 4,
    *,
    pool: str = "default",
    model: str | None = "a100",
    labels: Mapping[str, str] | None = None,
    cpus: float = 32.0,
    memory: int = 256 * GiB,
    cpu_free: float | None = None,
    memory_free: int | None = None,
) -> NodeState:
    free = tuple([1.0] * gpus) if isinstance(gpus, int) else tuple(gpus)
    return NodeState(
        name=name,
        pool=pool,
        labels=dict(labels or {}),
        gpu_model=model if free else None,
        cpus=cpus,
        memory=memory,
        device_free=free,
        cpu_free=cpus if cpu_free is None else cpu_free,
        memory_free=memory if memory_free is None else memory_free,
    )


def job(
    job_id: str = "j",
    gpu: float = 1,
    replicas: int = 1,
    *,
    cpu: float = 0.0,
    memory: int = 0,
    gpu_model: str | None = None,
    node_pool: str | None = None,
    node_selector: Mapping[str, str] | None = None,
) -> JobRequest:
    return JobRequest(
        id=job_id,
        project="p",
        created_at=0.0,
        replicas=tuple(
            ReplicaRequest(
                "main",
                i,
                gpu,
                cpu,
                memory,
                gpu_model=gpu_model,
                node_pool=node_pool,
                node_selector=dict(node_selector or {}),
            )
            for i in range(replicas)
        ),
    )


def only(placements: tuple[Placement, ...] | None) -> Placement:
    assert placements is not None
    (placement,) = placements
    return placement


# -- fractions ------------------------------------------------------------------------------


def test_two_halves_share_one_device() -> None:
    free = FreeState([node("n", 2)])
    a = only(free.try_place(job("a", 0.5)))
    b = only(free.try_place(job("b", 0.5)))
    assert a.devices == b.devices == (0,)
    assert a.gpu_fraction == b.gpu_fraction == 0.5
    c = only(free.try_place(job("c", 0.5)))
    assert c.devices == (1,)


def test_fractions_never_exceed_one_device() -> None:
    free = FreeState([node("n", 1)])
    assert free.try_place(job("a", 0.6)) is not None
    assert free.try_place(job("b", 0.6)) is None
    assert only(free.try_place(job("c", 0.4))).devices == (0,)
    assert free.try_place(job("d", 0.01)) is None


def test_fraction_is_best_fit_onto_the_fullest_device_that_fits() -> None:
    # device 0 has 0.5 free, device 1 has 0.3 free, device 2 is idle.
    free = FreeState([node("n", [0.5, 0.3, 1.0])])
    assert only(free.try_place(job("a", 0.25))).devices == (1,)
    assert only(free.try_place(job("b", 0.4))).devices == (0,)
    # nothing partly used fits 0.5 any more: the idle device is opened
    assert only(free.try_place(job("c", 0.5))).devices == (2,)


def test_fraction_prefers_partly_used_node_over_idle_node() -> None:
    nodes = [node("idle", 4), node("busy", [0.5, 1.0, 1.0, 1.0])]
    p = only(place_job(nodes, job("a", 0.5)))
    assert (p.node, p.devices) == ("busy", (0,))


def test_fraction_needs_a_device() -> None:
    assert place_job([node("cpu", 0)], job("a", 0.5)) is None


# -- whole GPUs -----------------------------------------------------------------------------


def test_whole_gpus_consolidate_on_the_fullest_node_that_fits() -> None:
    nodes = [
        node("empty", 8),
        node("half", [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]),
        node("almost", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
    ]
    assert only(place_job(nodes, job("a", 2))).node == "half"
    assert only(place_job(nodes, job("b", 1))).node == "almost"
    assert only(place_job(nodes, job("c", 5))).node == "empty"


def test_whole_gpus_take_idle_devices_only() -> None:
    p = only(place_job([node("n", [0.5, 1.0, 1.0, 0.9])], job("a", 2)))
    assert p.devices == (1, 2)
    assert p.gpu_fraction == 0.0
    assert place_job([node("n", [0.5, 1.0, 1.0, 0.9])], job("b", 3)) is None


def test_whole_gpus_never_span_nodes() -> None:
    assert place_job([node("a", 2), node("b", 2)], job("j", 3)) is None


def test_cpu_only_work_goes_to_gpu_less_nodes_first() -> None:
    nodes = [node("gpu", 8), node("cpu", 0)]
    assert only(place_job(nodes, job("a", 0, cpu=1))).node == "cpu"


def test_cpu_and_memory_are_hard_limits() -> None:
    nodes = [node("n", 4, cpus=8, memory=16 * GiB, cpu_free=2, memory_free=4 * GiB)]
    assert place_job(nodes, job("a", 1, cpu=3)) is None
    assert place_job(nodes, job("b", 1, memory=5 * GiB)) is None
    assert place_job(nodes, job("c", 1, cpu=2, memory=4 * GiB)) is not None


def test_state_is_updated_between_jobs() -> None:
    free = FreeState([node("n", 4, cpus=4)])
    assert free.try_place(job("a", 2, cpu=2)) is not None
    assert free.try_place(job("b", 2, cpu=3)) is None  # GPUs fit, CPUs do not
    assert free.try_place(job("c", 2, cpu=2)) is not None
    assert free.try_place(job("d", 1)) is None


# -- gangs ----------------------------------------------------------------------------------


def test_gang_replicas_spread_over_nodes() -> None:
    placements = place_job([node("a", 4), node("b", 4)], job("g", 4, replicas=2))
    assert placements is not None
    assert sorted(p.node for p in placements) == ["a", "b"]
    assert [p.index for p in placements] == [0, 1]


def test_gang_is_all_or_nothing_and_rolls_back() -> None:
    free = FreeState([node("a", 4), node("b", 2)])
    assert free.try_place(job("g", 3, replicas=2)) is None
    # nothing from the failed gang is held: a 4-GPU job still fits on "a"
    assert only(free.try_place(job("x", 4))).node == "a"
    assert only(free.try_place(job("y", 2))).node == "b"


def test_gang_rollback_restores_fractions_cpu_and_memory() -> None:
    free = FreeState([node("a", 1, cpus=4, memory=8 * GiB)])
    assert free.try_place(job("g", 0.5, replicas=3, cpu=1, memory=GiB)) is None
    placements = free.try_place(job("h", 0.5, replicas=2, cpu=2, memory=4 * GiB))
    assert placements is not None
    assert [p.devices for p in placements] == [(0,), (0,)]


# -- constraints ----------------------------------------------------------------------------


def test_node_pool_is_a_hard_constraint() -> None:
    nodes = [node("a", 4, pool="cheap"), node("b", 4, labels={"pool": "fast"})]
    assert only(place_job(nodes, job("x", 1, node_pool="cheap"))).node == "a"
    assert only(place_job(nodes, job("y", 1, node_pool="fast"))).node == "b"
    assert place_job(nodes, job("z", 1, node_pool="none")) is None


def test_gpu_model_is_matched_case_insensitively() -> None:
    nodes = [node("a", 4, model="A100"), node("h", 4, model="H100")]
    assert only(place_job(nodes, job("x", 1, gpu_model="h100"))).node == "h"
    assert place_job(nodes, job("y", 1, gpu_model="v100")) is None
    assert place_job([node("cpu", 0)], job("z", 0, gpu_model="a100")) is None


def test_node_selector_needs_every_label() -> None:
    nodes = [node("a", 4, labels={"zone": "x"}), node("b", 4, labels={"zone": "x", "ib": "yes"})]
    assert only(place_job(nodes, job("x", 1, node_selector={"zone": "x", "ib": "yes"}))).node == (
        "b"
    )
    assert place_job(nodes, job("y", 1, node_selector={"zone": "y"})) is None


def test_constraints_hold_even_when_only_wrong_nodes_have_room() -> None:
    nodes = [node("big", 8, pool="other"), node("small", [0.0, 0.0], pool="mine")]
    assert place_job(nodes, job("x", 1, node_pool="mine")) is None


# -- infeasibility --------------------------------------------------------------------------


def test_explain_too_many_gpus() -> None:
    message = explain_infeasible([node("a", 4), node("b", 2)], job("x", 16))
    assert message == "replica main-0 asks for 16 GPUs; the largest matching node has 4"


def test_explain_counts_devices_not_free_devices() -> None:
    busy = node("a", [0.0, 0.0, 0.0, 0.0])
    assert explain_infeasible([busy], job("x", 4)) is None


def test_explain_missing_pool_model_and_labels() -> None:
    nodes = [node("a", 4)]
    assert explain_infeasible(nodes, job("x", 1, node_pool="nope")) == (
        "no node has node pool 'nope'"
    )
    assert explain_infeasible(nodes, job("x", 1, gpu_model="v100")) == (
        "no node has GPU model 'v100'"
    )
    assert explain_infeasible(nodes, job("x", 1, node_pool="p", node_selector={"k": "v"})) == (
        "no node has node pool 'p' and labels {'k': 'v'}"
    )


def test_explain_fraction_without_gpus() -> None:
    assert explain_infeasible([node("cpu", 0)], job("x", 0.5)) == (
        "asks for a GPU fraction; no matching node has a GPU"
    )


def test_explain_cpu_and_memory() -> None:
    nodes = [node("a", 4, cpus=8, memory=16 * GiB)]
    assert explain_infeasible(nodes, job("x", 1, cpu=9)) == (
        "asks for 9 CPUs; the largest matching node has 8"
    )
    message = explain_infeasible(nodes, job("x", 1, memory=17 * GiB))
    assert message is not None and message.startswith(f"asks for {17 * GiB} bytes of memory")


@pytest.mark.parametrize("gpu", [0, 0.5, 1, 4])
def test_explain_feasible_is_none(gpu: float) -> None:
    nodes = [node("a", 4), node("b", 4), node("c", 4)]
    assert explain_infeasible(nodes, job("x", gpu, replicas=3)) is None


def test_explain_gang_that_fits_per_replica_but_not_together() -> None:
    message = explain_infeasible([node("a", 4)], job("g", 2, replicas=3))
    assert message == (
        "its 3 replicas together (6 GPUs) do not fit on the cluster even when it is idle"
    )
    assert explain_infeasible([node("a", 4), node("b", 2)], job("g", 2, replicas=3)) is None


def test_explain_judges_the_idle_cluster() -> None:
    busy = [node("a", [0.0, 0.0]), node("b", [0.0, 0.0])]
    assert explain_infeasible(busy, job("g", 2, replicas=2)) is None


def test_explain_needs_one_node_with_everything() -> None:
    nodes = [node("gpus", 4, cpus=4), node("cpus", 0, cpus=64)]
    assert explain_infeasible(nodes, job("x", 2, cpu=16)) == (
        "replica main-0 asks for 2 GPUs, 16 CPUs and 0 bytes of memory; no matching node has "
        "all of them"
    )
    assert explain_infeasible(nodes, job("x", 2, cpu=4)) is None
    assert explain_infeasible(nodes, job("x", 0, cpu=16)) is None
