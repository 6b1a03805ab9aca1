"""Greedy FIFO admission: the policy pier runs until the quota-aware scheduler replaces it.

Pending jobs are taken in order (priority, then submission time, then id) and each is
placed if it fits now; one that does not fit does not block those behind it. A project's
hard GPU limit (``max_gpu``) is respected. A job that stays unplaced beyond its schedule
timeout fails with reason ``Unschedulable``.
"""

from __future__ import annotations

from collections import defaultdict

from pier.scheduler.placement import FreeState
from pier.scheduler.types import (
    Admission,
    Decisions,
    Failure,
    JobRequest,
    PendingInfo,
    Snapshot,
)

__all__ = ["FifoPolicy", "pending_order", "request_shape", "unschedulable_message"]


def pending_order(job: JobRequest) -> tuple[int, float, str]:
    return (-job.priority, job.created_at, job.id)


def request_shape(job: JobRequest) -> tuple[object, ...]:
    """What placement depends on: two jobs of one shape fit or fail alike."""
    return tuple(
        (
            r.gpu,
            r.cpu,
            r.memory,
            r.gpu_model,
            r.node_pool,
            tuple(sorted(r.node_selector.items())),
        )
        for r in job.replicas
    )


def unschedulable_message(job: JobRequest, timeout: float) -> str:
    """Worded as the tenant API of seed 002 words it."""
    return (
        f"job {job.id} cannot be scheduled within {int(timeout * 1000)} ms: "
        "no available resource that meets the request requirements "
        f"(gpu={job.gpu:g}, replicas={len(job.replicas)})"
    )


class FifoPolicy:
    def decide(self, snapshot: Snapshot) -> Decisions:
        decisions = Decisions()
        free = FreeState(snapshot.nodes)
        used: dict[str, float] = defaultdict(float)
        for running in snapshot.running:
            used[running.project] += running.gpu
        position = 0
        # Free capacity only shrinks within a pass, so a request shape that did not fit will
        # not fit later in the same pass: 10,000 identical queued jobs cost one attempt.
        no_fit: set[tuple[object, ...]] = set()
        for job in sorted(snapshot.pending, key=pending_order):
            if job.not_before is not None and job.not_before > snapshot.now:
                decisions.pending[job.id] = PendingInfo(
                    "BackoffRetry", "waiting before the next retry", position
                )
                position += 1
                continue
            project = snapshot.projects.get(job.project)
            limit = project.max_gpu if project is not None else None
            if limit is not None and used[job.project] + job.gpu > limit + 1e-9:
                self._wait_or_fail(
                    decisions,
                    snapshot,
                    job,
                    position,
                    "ProjectLimit",
                    f"project {job.project} would exceed its limit of {limit:g} GPUs "
                    f"({used[job.project]:g} in use)",
                )
                position += 1
                continue
            shape = request_shape(job)
            placements = None if shape in no_fit else free.try_place(job)
            if placements is None:
                no_fit.add(shape)
                self._wait_or_fail(
                    decisions,
                    snapshot,
                    job,
                    position,
                    "NoCapacity",
                    f"waiting for free capacity (needs {job.gpu:g} GPUs over "
                    f"{len(job.replicas)} replica(s)); {position} job(s) ahead",
                )
                position += 1
                continue
            used[job.project] += job.gpu
            decisions.admit.append(Admission(job.id, placements))
        return decisions

    @staticmethod
    def _wait_or_fail(
        decisions: Decisions,
        snapshot: Snapshot,
        job: JobRequest,
        position: int,
        reason: str,
        message: str,
    ) -> None:
        timeout = job.schedule_timeout
        # The window opens when the job last became schedulable: at submission, or when its
        # retry back-off ended (a retry must not fail at once for its first attempt's age).
        since = max(job.created_at, job.not_before or job.created_at)
        if timeout is not None and snapshot.now - since >= timeout:
            decisions.fail.append(
                Failure(job.id, "Unschedulable", unschedulable_message(job, timeout))
            )
        else:
            decisions.pending[job.id] = PendingInfo(reason, message, position)
