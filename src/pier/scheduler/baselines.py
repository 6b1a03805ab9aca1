"""Baseline policies for the trace simulator: strict FIFO, and the oracles SJF and SRTF that
know every job's duration (which pier never does). They place as pier does (consolidated
whole GPUs, gangs all-or-nothing) and explain nothing: they exist to be compared against.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter

from pier.scheduler.capacity import Capacity
from pier.scheduler.types import (
    Admission,
    Decisions,
    Failure,
    JobRequest,
    NodeState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)

__all__ = ["SjfPolicy", "SrtfPolicy", "StrictFifoPolicy"]

_BY_SUBMISSION = attrgetter("created_at", "id")


class StrictFifoPolicy:
    """Submission order, no backfill: the first job that does not fit blocks all behind it."""

    preemptive = False

    def decide(self, snapshot: Snapshot) -> Decisions:
        decisions = Decisions()
        capacity = Capacity(snapshot.nodes)
        for job in sorted(snapshot.pending, key=_BY_SUBMISSION):
            placements = capacity.try_place(job)
            if placements is None:
                break
            decisions.admit.append(Admission(job.id, placements))
        return decisions


class SjfPolicy:
    """Shortest job first by true duration (an oracle), non-preemptive, with backfill."""

    preemptive = False

    def __init__(self, durations: Mapping[str, float]) -> None:
        self.durations = durations

    def decide(self, snapshot: Snapshot) -> Decisions:
        decisions = Decisions()
        capacity = Capacity(snapshot.nodes)
        durations = self.durations
        for job in sorted(snapshot.pending, key=lambda j: (durations[j.id], j.created_at, j.id)):
            if capacity.gpu_exhausted():
                break
            placements = capacity.try_place(job)
            if placements is not None:
                decisions.admit.append(Admission(job.id, placements))
        return decisions


class SrtfPolicy:
    """Shortest remaining time first by true duration (an oracle), preemptive: the jobs with
    the least remaining run time that fit the cluster together run; any other running job is
    preempted. Remaining time is the duration less the time run so far
    (``attained_gpu_seconds / gpu``)."""

    preemptive = True

    def __init__(self, durations: Mapping[str, float]) -> None:
        self.durations = durations

    def decide(self, snapshot: Snapshot) -> Decisions:
        now = snapshot.now
        ranked: list[tuple[float, float, str, JobRequest | None]] = []
        for run in snapshot.running:
            done = run.attained_gpu_seconds / run.gpu + now - run.started_at
            ranked.append((self.durations[run.id] - done, -1.0, run.id, None))
        for waiting in snapshot.pending:
            done = waiting.attained_gpu_seconds / waiting.gpu if waiting.gpu else 0.0
            ranked.append(
                (self.durations[waiting.id] - done, waiting.created_at, waiting.id, waiting)
            )
        ranked.sort(key=lambda r: r[:3])
        # Which jobs would run on the whole cluster, shortest remaining first.
        ideal = Capacity(tuple(_idle(n) for n in snapshot.nodes))
        running = {r.id: r for r in snapshot.running}
        keep: set[str] = set()
        for _, _, job_id, job in ranked:
            if ideal.gpu_exhausted():
                break
            request = job if job is not None else _as_request(running[job_id])
            if ideal.try_place(request) is not None:
                keep.add(job_id)
        decisions = Decisions()
        capacity = Capacity(snapshot.nodes)
        for run in snapshot.running:
            if run.id not in keep:
                decisions.preempt.append(Failure(run.id, "Preempted", "shorter jobs wait"))
                capacity.vacate(run.placements)
        for _, _, job_id, job in ranked:
            if job is not None and job_id in keep:
                placements = capacity.try_place(job)
                if placements is not None:
                    decisions.admit.append(Admission(job_id, placements))
        return decisions


def _idle(node: NodeState) -> NodeState:
    return NodeState(
        node.name,
        node.pool,
        node.labels,
        node.gpu_model,
        node.cpus,
        node.memory,
        (1.0,) * len(node.device_free),
        node.cpus,
        node.memory,
    )


def _as_request(run: RunningJob) -> JobRequest:
    """A running job as the request it was admitted for (one replica per placement)."""
    replicas = tuple(
        ReplicaRequest(p.task, p.index, p.gpu_fraction or float(len(p.devices)), p.cpu, p.memory)
        for p in run.placements
    )
    return JobRequest(run.id, run.project, 0.0, replicas)
