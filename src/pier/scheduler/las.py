"""Least attained service for preemptible training jobs (Tiresias' discretized 2D-LAS).

Tiresias (Gu et al., NSDI'19) orders jobs by the service they have received so far, in
GPU-seconds (GPUs x time run: the "2D" of 2D-LAS), without knowing how long they will run.
Discretized into a few queues by thresholds: a job starts in queue 0 and moves down a queue
each time its attained service crosses a threshold. Lower queues go first; within a queue,
fewer GPUs first (``smallest_first``), then submission order (FIFO). A pending job may
preempt a running job of its own project that sits at least ``preempt_gap`` queues higher
(Tiresias: 1; default 2, which stops time-slicing among long jobs of similar length), so
short jobs overtake long ones and long ones are paused, not starved: a pending job whose wait
exceeds ``starvation_factor`` x its run time so far goes back to queue 0 (Tiresias'
STARVE_LIMIT).

Everything else is :class:`~pier.scheduler.quota.QuotaPolicy`: quotas, over-quota borrowing,
reclaim across projects, fair share, placement, timeouts, explanations. Non-preemptible and
interactive jobs keep their priority ahead of the training queues and are never reordered
by service. LAS reorders only within a project; across projects quotas decide.

The runtime provides attained service: ``JobRequest.attained_gpu_seconds`` and
``RunningJob.attained_gpu_seconds`` hold the GPU-seconds of earlier attempts; a running job
adds ``gpu x (now - started_at)`` for the current one.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from pier.scheduler.quota import DEFAULT_MAX_RECLAIMS, DEFAULT_RESERVE_AFTER, QuotaPolicy
from pier.scheduler.types import JobRequest, RunningJob

__all__ = ["DEFAULT_PREEMPT_GAP", "DEFAULT_THRESHOLDS", "LasPolicy"]

DEFAULT_THRESHOLDS = (3_600.0, 36_000.0)
"""GPU-seconds at which a job moves to the next queue: 1 GPU-hour, 10 GPU-hours."""

DEFAULT_PREEMPT_GAP = 2
"""Queues between a pending job and a victim of its own project (see docs/scheduler.md)."""


def _gpus(job: JobRequest) -> float:
    replicas = job.replicas
    return replicas[0].gpu if len(replicas) == 1 else sum(r.gpu for r in replicas)


class LasPolicy(QuotaPolicy):
    def __init__(
        self,
        *,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        starvation_factor: float | None = None,
        reserve_after: float | None = DEFAULT_RESERVE_AFTER,
        max_reclaims: int = DEFAULT_MAX_RECLAIMS,
        explain: bool = True,
        fragmentation_aware: bool = False,
        preempt_gap: int = DEFAULT_PREEMPT_GAP,
        smallest_first: bool = True,
    ) -> None:
        if preempt_gap < 1:
            raise ValueError("preempt_gap must be at least 1")
        super().__init__(
            reserve_after=reserve_after,
            max_reclaims=max_reclaims,
            explain=explain,
            fragmentation_aware=fragmentation_aware,
        )
        self.thresholds = tuple(sorted(thresholds))
        self.starvation_factor = starvation_factor
        self.preempt_gap = preempt_gap
        """A pending job preempts a running one of its own project only if the victim sits
        at least this many queues higher (Tiresias: 1)."""
        self.smallest_first = smallest_first
        """Within a queue, fewer GPUs first, then submission order (else FIFO only)."""

    @property
    def service_points(self) -> tuple[float, ...]:
        """Attained service (GPU-seconds) at which a running job's rank may change."""
        return self.thresholds

    def rank_points(self, project: str) -> tuple[float, ...]:
        """Attained service (GPU-seconds, ascending) at which a running job of ``project``
        moves to a worse rank, as of the last decision. Only there can it become a victim
        it was not, so only there need a simulator (or a server) decide again: a job moving
        to a better rank makes no new victim."""
        return self.thresholds

    def queue_of(self, job: JobRequest, now: float) -> int:
        """The LAS queue of a pending job: thresholds crossed by its attained service."""
        attained = job.attained_gpu_seconds
        if self.starvation_factor is not None and attained > 0 and job.gpu > 0:
            since = max(job.created_at, job.not_before or 0.0, job.pending_since or 0.0)
            if now - since >= self.starvation_factor * attained / job.gpu:
                return 0
        return bisect_right(self.thresholds, attained)

    def running_queue(self, job: RunningJob, now: float) -> int:
        attained = job.attained_gpu_seconds + job.gpu * max(0.0, now - job.started_at)
        return bisect_right(self.thresholds, attained)

    def order(self, jobs: list[JobRequest], now: float) -> list[JobRequest]:
        """Priority first (interactive above training); then non-preemptible jobs, then the
        LAS queues from the lowest; within each, fewer GPUs first (``smallest_first``), then
        FIFO."""
        thresholds = self.thresholds
        queues = (
            # queue_of without starvation, inline: this runs for every pending job
            [
                bisect_right(thresholds, j.attained_gpu_seconds) if j.preemptible else -1
                for j in jobs
            ]
            if self.starvation_factor is None
            else [self.queue_of(j, now) if j.preemptible else -1 for j in jobs]
        )
        keys: list[tuple[int, int, float, float, str]]
        if self.smallest_first:
            keys = [
                (-j.priority, q, _gpus(j) if q >= 0 else 0.0, j.created_at, j.id)
                for j, q in zip(jobs, queues, strict=True)
            ]
        else:
            keys = [
                (-j.priority, q, 0.0, j.created_at, j.id) for j, q in zip(jobs, queues, strict=True)
            ]
        # ids are unique within a snapshot, so no two keys tie
        return [jobs[i] for i in sorted(range(len(jobs)), key=keys.__getitem__)]

    def own_summary(
        self, running: Sequence[RunningJob], now: float
    ) -> tuple[int | None, dict[int, int]]:
        lowest: int | None = None
        most: dict[int, float] = {}
        for v in running:
            if v.preemptible:
                lowest = v.priority if lowest is None else min(lowest, v.priority)
                attained = v.attained_gpu_seconds + v.gpu * (now - v.started_at)
                if attained > most.get(v.priority, -1.0):
                    most[v.priority] = attained
        return lowest, {k: bisect_right(self.thresholds, a) for k, a in most.items()}

    def service_rank(self, job: JobRequest, now: float) -> int:
        # a victim's rank is its queue: the pending job's queue plus the gap less one must
        # be below it
        return self.queue_of(job, now) + self.preempt_gap - 1

    def running_rank(self, job: RunningJob, now: float) -> int:
        return self.running_queue(job, now)

    def own_preemption_needs_quota(self) -> bool:
        return False

    def victim_message(self, job: JobRequest, victim: RunningJob) -> str:
        if victim.project == job.project and job.preemptible and victim.priority == job.priority:
            return (
                f"preempted by job {job.id}, which has attained less service "
                "(least-attained-service policy)"
            )
        return super().victim_message(job, victim)
