"""The quota scheduler: deserved quotas, over-quota borrowing, reclaim, fair share, backfill
with bounded reservations. Semantics in docs/scheduler.md; in short:

1. Each project has a queue: priority (interactive above training), then submission time.
2. Projects take turns by *tier* of their next job: 0 within deserved quota, 1 over quota but
   within the project's fair share of the cluster, 2 beyond it; within a tier the project
   using least GPUs per unit of weight goes first. So deserved quotas are served first, then
   idle capacity is shared by weight, and whatever is still free goes to whoever fits.
3. Non-preemptible jobs start only within deserved quota; preemptible ones may borrow.
4. A job within deserved quota that does not fit reclaims: over-quota preemptible jobs of
   other projects (and lower-ranked preemptible jobs of its own) are preempted, whole, the
   cheapest first (fewest GPU-seconds since they started). It starts once they are gone;
   meanwhile the nodes it will use are held.
5. A job that has waited longer than ``reserve_after`` holds nodes: nothing behind it starts
   on them, so it waits at most that long plus the remaining run time of what was already
   running there.
6. Unplaced beyond its schedule timeout, a job fails ``Unschedulable``.
"""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Mapping, Sequence
from itertools import islice
from operator import attrgetter, eq

from pier.scheduler.capacity import EPSILON, group_key
from pier.scheduler.cycle import (
    Cycle,
    Explained,
    Project,
    job_cpu,
    job_memory,
    no_capacity_message,
    queue_shapes,
    running_resources,
)
from pier.scheduler.fifo import unschedulable_message
from pier.scheduler.fragmentation import snapshot_workload
from pier.scheduler.reclaim import Eligible, choose_victims
from pier.scheduler.types import (
    Admission,
    Decisions,
    Failure,
    JobRequest,
    PendingInfo,
    Placement,
    RunningJob,
    Snapshot,
)

__all__ = ["DEFAULT_MAX_RECLAIMS", "DEFAULT_RESERVE_AFTER", "QuotaPolicy"]

DEFAULT_RESERVE_AFTER = 300.0
"""Seconds a blocked job waits before it holds nodes (the backfill bound B)."""

DEFAULT_MAX_RECLAIMS = 16
"""Victim searches per cycle. Victims free their capacity only in later cycles anyway, so a
burst of reclaims proceeds over a few cycles and one cycle stays short."""


_BY_SUBMISSION = attrgetter("created_at", "id")
_BY_CREATION = attrgetter("created_at")
_STABLE = frozenset(("NoCapacity", "Held", "ProjectLimit", "QuotaExceeded", "NoMatchingNode"))
"""Explanations that depend only on the job's kind while nothing changes."""
_BY_PRIORITY = attrgetter("priority")


class QuotaPolicy:
    """Quota + fair share + FIFO-within-priority; see the module docstring."""

    def __init__(
        self,
        *,
        reserve_after: float | None = DEFAULT_RESERVE_AFTER,
        max_reclaims: int = DEFAULT_MAX_RECLAIMS,
        explain: bool = True,
        fragmentation_aware: bool = False,
    ) -> None:
        self.reserve_after = reserve_after
        self.max_reclaims = max_reclaims
        self.explain = explain
        """Without explanations (the simulator), no PendingInfo is produced and, once no GPU
        is free, jobs that can neither fail nor preempt are not looked at: the admissions,
        preemptions and failures are the same."""
        self.fragmentation_aware = fragmentation_aware
        """Place GPU fractions where they add least fragmentation for the snapshot's mix of
        replica shapes (FGD, :mod:`pier.scheduler.fragmentation`) instead of best-fit."""

    # -- hooks a policy may override --

    def order(self, jobs: list[JobRequest], now: float) -> list[JobRequest]:
        """A project's queue: priority, then submission time, then id."""
        # Comparing floats is much cheaper than comparing (time, id) pairs; ids only
        # break ties of submission time, so they are looked at only where there are some.
        jobs.sort(key=_BY_CREATION)
        times = list(map(_BY_CREATION, jobs))
        if any(map(eq, times, islice(times, 1, None))):
            jobs.sort(key=_BY_SUBMISSION)
        jobs.sort(key=_BY_PRIORITY, reverse=True)  # stable: ties keep submission order
        return jobs

    def own_summary(
        self, running: Sequence[RunningJob], now: float
    ) -> tuple[int | None, dict[int, int]]:
        """Of a project's running preemptible jobs: the lowest priority, and by priority the
        highest ``running_rank`` (what a pending job must be below to preempt one)."""
        lowest: int | None = None
        top: dict[int, int] = {}
        for v in running:
            if v.preemptible:
                lowest = v.priority if lowest is None else min(lowest, v.priority)
                rank = self.running_rank(v, now)
                if rank > top.get(v.priority, -1):
                    top[v.priority] = rank
        return lowest, top

    def service_rank(self, job: JobRequest, now: float) -> int:
        """Among preemptible jobs of one project and priority, a pending job may preempt a
        running one of a higher rank; all ranks are equal by default."""
        return 0

    def running_rank(self, job: RunningJob, now: float) -> int:
        return 0

    def own_preemption_needs_quota(self) -> bool:
        """Whether a job must be within deserved quota to preempt its own project's jobs."""
        return True

    def rank_class(self, job: JobRequest, now: float) -> object:
        """Jobs of one class may preempt the same running jobs (a cache key)."""
        return (
            job.preemptible,
            job.priority,
            self.service_rank(job, now) if job.preemptible else 0,
        )

    def victim_message(self, job: JobRequest, victim: RunningJob) -> str:
        if victim.project == job.project:
            return f"preempted by job {job.id} of project {job.project}, which ranks higher"
        return f"preempted to reclaim deserved quota of project {job.project} for job {job.id}"

    # -- the cycle --

    def decide(self, snapshot: Snapshot) -> Decisions:
        # A cycle allocates tens of thousands of short-lived objects and creates no
        # reference cycles; collections triggered meanwhile would only rescan the snapshot
        # (the slowest cycles were those). Collection resumes when the cycle returns.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._decide(snapshot)
        finally:
            if collecting:
                gc.enable()

    def _decide(self, snapshot: Snapshot) -> Decisions:
        c = Cycle(snapshot, snapshot_workload(snapshot) if self.fragmentation_aware else None)
        now = snapshot.now
        for p in c.projects.values():
            if p.queue:
                p.queue = self.order(p.queue, now)
                p.gpus, p.shapes = queue_shapes(p.queue)
                c.cpu_only = c.cpu_only or min(p.gpus) <= 0
        c.share_fairly()
        turns: list[tuple[int, float, str]] = []
        for p in c.projects.values():
            if p.queue:
                turns.append(self._turn(p, p.queue[0], p.gpus[0]))
        heapq.heapify(turns)
        capacity = c.capacity
        while turns:
            _, _, name = heapq.heappop(turns)
            p = c.projects[name]
            if capacity.gpu_exhausted():
                # Nothing more starts on a GPU in this cycle, so the order among projects no
                # longer matters for admission: finish this project's queue in one go.
                if not self.explain and not c.cpu_only:
                    self._drain_quietly(c, p)
                else:
                    self._drain(c, p)
                continue
            position = p.head
            p.head += 1
            self._consider(c, p, p.queue[position], p.gpus[position], position)
            if p.head < len(p.queue):
                heapq.heappush(turns, self._turn(p, p.queue[p.head], p.gpus[p.head]))
        return c.decisions

    def _drain(self, c: Cycle, p: Project) -> None:
        """The rest of a project's queue once no GPU is free. Jobs alike (shape, priority,
        rank) get the same explanation as long as nothing changes in between (no hold, no
        victim, nothing placed), so it is worked out once per kind of job; for most jobs
        (:meth:`_plain`) more cheaply than by :meth:`_consider`. Called only once no GPU is
        free, which stays so for the rest of the cycle (free capacity only shrinks)."""
        queue, gpus, shapes, now = p.queue, p.gpus, p.shapes, c.now
        pending = c.decisions.pending
        known: dict[object, Explained] = {}
        state = self._state(c, p)
        # Locals: this loop runs once per pending job of a busy cluster.
        ranked = type(self).service_rank is not QuotaPolicy.service_rank
        service_rank, waiting = self.service_rank, PendingInfo
        for position in range(p.head, len(queue)):
            job, gpu = queue[position], gpus[position]
            key: tuple[object, bool, int, int] | None = None
            if (
                gpu > 0
                and job.schedule_timeout is None
                and (job.not_before is None or job.not_before <= now)
            ):
                preemptible = job.preemptible
                rank = service_rank(job, now) if ranked and preemptible else 0
                sig = shapes[position]
                key = (sig, preemptible, job.priority, rank)
                outcome = known.get(key)
                if outcome is None and self._plain(c, p, job, gpu, sig):
                    outcome = known[key] = c.explained(*self._waiting(c, job, sig))
                if outcome is not None:
                    # Explanations are immutable: jobs at the same position of different
                    # projects' queues that wait for the same reason share one.
                    info = outcome[2].get(position)
                    if info is None:
                        info = outcome[2][position] = waiting(outcome[0], outcome[1], position)
                    pending[job.id] = info
                    continue
            self._consider(c, p, job, gpu, position)
            after = self._state(c, p)
            if after != state:
                known.clear()
                state = after
            elif key is not None:
                info = pending.get(job.id)
                if info is not None and info.reason in _STABLE:
                    known[key] = c.explained(info.reason, info.message)

    def _plain(self, c: Cycle, p: Project, job: JobRequest, gpu: float, signature: object) -> bool:
        """Whether, once no GPU is free, :meth:`_consider` would only explain why ``job``
        (which asks for GPUs and has no timeout and no back-off) waits (see
        :meth:`_waiting`): it is within its project's limit, will not hold nodes, and is
        not refused for quota; and it reclaims nothing, as it may not (it is over its
        deserved quota) or can not (it is known not to fit once the stopping jobs and the
        victims are gone, and no victim search is left or no victim can exist)."""
        if not self.explain:
            return False
        if p.max_gpu is not None and p.used + gpu > p.max_gpu + EPSILON:
            return False
        if (
            not p.holding
            and self.reserve_after is not None
            and c.now - self._since(job) >= self.reserve_after
        ):
            return False
        in_quota = self._in_quota(p, job, gpu)
        if not in_quota and not job.preemptible:
            return False
        if not in_quota and self.own_preemption_needs_quota():
            return True
        if (c.stopping or c.victims) and not c.shadow_rejected(signature):
            return False
        return c.searches >= self.max_reclaims or not self._victims_possible(c, p, job, in_quota)

    def _waiting(self, c: Cycle, job: JobRequest, signature: object) -> tuple[str, str]:
        """Why a job that does not fit and reclaims nothing waits (what :meth:`_consider`
        records for it, holds aside)."""
        why = self._infeasible(c, job, signature)
        if why is not None:
            return "NoMatchingNode", why
        if c.holders and c.capacity.fits_ignoring_holds(job, signature):
            return "Held", self._held(c, job)
        return "NoCapacity", self._no_capacity(c, job, signature)

    @staticmethod
    def _state(c: Cycle, p: Project) -> tuple[int, int, int, bool]:
        return (len(c.decisions.preempt), len(c.holders), c.capacity.version, p.holding)

    def _drain_quietly(self, c: Cycle, p: Project) -> None:
        """The rest of a project's queue once no GPU is free, without explanations: only jobs
        that may fail or preempt are considered. While every remaining job is preemptible
        and has no timeout, the queue order (priority, then rank) means that after one job
        that cannot preempt, no other of the same priority can."""
        queue, gpus = p.queue, p.gpus
        simple = not any(
            j.schedule_timeout is not None or not j.preemptible for j in queue[p.head :]
        )
        position = p.head
        while position < len(queue):
            job, gpu = queue[position], gpus[position]
            if self._may_act(c, p, job, gpu):
                self._consider(c, p, job, gpu, position)
            elif simple and not (c.stopping or c.victims):
                if c.searches >= self.max_reclaims:
                    return
                lowest = self._summary(c, p)[0]
                if lowest is None and not c.over_quota:
                    return
                if not c.over_quota and lowest is not None and job.priority <= lowest:
                    priority = job.priority
                    while position < len(queue) and queue[position].priority == priority:
                        position += 1
                    continue
            position += 1

    def _summary(self, c: Cycle, p: Project) -> tuple[int | None, dict[int, int]]:
        summary = c.summaries.get(p.name)
        if summary is None:
            summary = c.summaries[p.name] = self.own_summary(c.running.get(p.name, ()), c.now)
        return summary

    def _may_act(self, c: Cycle, p: Project, job: JobRequest, gpu: float) -> bool:
        """Whether a job may still fail or preempt once no GPU is free."""
        if job.schedule_timeout is not None:
            return True
        in_quota = self._in_quota(p, job, gpu)
        if (c.stopping or c.victims) and (in_quota or not self.own_preemption_needs_quota()):
            return True  # it may be promised capacity being freed, ahead of those behind it
        if c.searches >= self.max_reclaims:
            return False
        return self._victims_possible(c, p, job, in_quota)

    def _victims_possible(self, c: Cycle, p: Project, job: JobRequest, in_quota: bool) -> bool:
        """A cheap necessary condition for finding victims: another project is over quota
        (and ``job`` within its own), or its own project runs a job it outranks."""
        if in_quota and c.over_quota:
            return True
        if self.own_preemption_needs_quota() and not in_quota:
            return False
        lowest, top = self._summary(c, p)
        if lowest is None:
            return False
        if not job.preemptible or job.priority > lowest:
            return True
        return self.service_rank(job, c.now) < top.get(job.priority, -1)

    def _turn(self, p: Project, job: JobRequest, gpu: float) -> tuple[int, float, str]:
        used = p.used + gpu
        if self._in_quota(p, job, gpu):
            tier = 0
        elif used <= p.fair + EPSILON:
            tier = 1
        else:
            tier = 2
        return (tier, used / p.weight if p.weight > EPSILON else math.inf, p.name)

    @staticmethod
    def _in_quota(p: Project, job: JobRequest, gpu: float) -> bool:
        """Within deserved quota, counting only what ranks at or above ``job``: every
        non-preemptible job, and for a preemptible one, preemptible jobs of no lower
        priority."""
        if job.preemptible:
            ranked = p.np_used
            priority = job.priority
            for k, v in p.by_priority.items():
                if k >= priority:
                    ranked += v
            cpu, memory = p.cpu, p.memory
        else:
            ranked, cpu, memory = p.np_used, p.np_cpu, p.np_memory
        if ranked + gpu > p.quota + EPSILON:
            return False
        if p.cpu_quota is not None and cpu + job_cpu(job) > p.cpu_quota + EPSILON:
            return False
        return p.memory_quota is None or memory + job_memory(job) <= p.memory_quota

    def _consider(self, c: Cycle, p: Project, job: JobRequest, gpu: float, position: int) -> None:
        now = c.now
        if job.not_before is not None and job.not_before > now:
            if self.explain:
                c.decisions.pending[job.id] = PendingInfo(
                    "BackoffRetry", "waiting before the next retry", position
                )
            return
        if p.max_gpu is not None and p.used + gpu > p.max_gpu + EPSILON:
            message = (
                f"project {p.name} would exceed its limit of {p.max_gpu:g} GPUs ({p.used:g} in use)"
            )
            self._wait_or_fail(c, job, position, "ProjectLimit", message)
            return
        # (a preemptible job's quota matters only once it does not fit)
        in_quota = job.preemptible or self._in_quota(p, job, gpu)
        if not in_quota:
            message = (
                f"project {p.name} has a deserved quota of {p.quota:g} GPUs and "
                f"{p.np_used:g} in use by non-preemptible jobs; a non-preemptible job runs "
                "only within it"
            )
            self._wait_or_fail(c, job, position, "QuotaExceeded", message)
            return
        signature = p.shapes[position]  # job_signature(job), worked out once
        why = self._infeasible(c, job, signature)
        if why is not None:
            self._wait_or_fail(c, job, position, "NoMatchingNode", why)
            return
        placements = c.capacity.try_place(job, signature)
        if placements is not None:
            self._admit(c, p, job, gpu, placements)
            return
        if job.preemptible:
            in_quota = self._in_quota(p, job, gpu)
        timed_out = job.schedule_timeout is not None and self._timed_out(job, now)
        if (in_quota or not self.own_preemption_needs_quota()) and self._reclaim(
            c, p, job, gpu, in_quota, position, signature, not timed_out
        ):
            return
        if timed_out:
            self._fail(c, job)
            return
        if c.holders and c.capacity.fits_ignoring_holds(job, signature):
            if self.explain:  # it waits for the holder and holds nothing itself
                message = self._held(c, job)
                c.decisions.pending[job.id] = PendingInfo("Held", message, position)
            return
        message = self._no_capacity(c, job, signature) if self.explain else ""
        if not p.holding and self.reserve_after is not None:
            waited = now - self._since(job)
            if waited >= self.reserve_after:
                p.holding = True
                c.hold(c.capacity.hold_for(job), job.id)
                message += (
                    f"; waiting {waited:.0f}s, so it holds capacity: nothing behind it starts there"
                )
        if self.explain:
            c.decisions.pending[job.id] = PendingInfo("NoCapacity", message, position)

    @staticmethod
    def _held(c: Cycle, job: JobRequest) -> str:
        """Why ``job`` waits when it fits only on held capacity: the first job holding a node
        that it could use."""
        group = c.capacity.group(group_key(job.replicas[0]))
        holder = "another job"
        for bucket in group.held_buckets:
            if bucket:
                holder = c.holders.get(next(iter(bucket)), holder)
                break
        return f"capacity it fits is held for job {holder}, which comes first"

    @staticmethod
    def _infeasible(c: Cycle, job: JobRequest, signature: object) -> str | None:
        """Why ``job`` fits on no node even of an idle cluster (None if it does)."""
        try:
            return c.infeasible[signature]
        except KeyError:  # once per signature and cycle
            why = c.infeasible[signature] = c.capacity.infeasible(job)
            return why

    def _admit(
        self,
        c: Cycle,
        p: Project,
        job: JobRequest,
        gpu: float,
        placements: tuple[Placement, ...],
    ) -> None:
        c.decisions.admit.append(Admission(job.id, placements))
        if p.counts_resources:
            p.add(gpu, job_cpu(job), job_memory(job), job.preemptible, job.priority)
        else:  # CPUs and memory in use matter only against a CPU or memory quota
            p.add(gpu, 0.0, 0, job.preemptible, job.priority)
        c.admitted.extend(placements)
        if c._shadow is not None:
            c._shadow.occupy(placements)

    @staticmethod
    def _no_capacity(c: Cycle, job: JobRequest, signature: object) -> str:
        group = c.groups.get(signature)
        if group is None:
            group = c.groups[signature] = c.capacity.group(group_key(job.replicas[0]))
        key = (signature, group.idle_total)
        message = c.messages.get(key)
        if message is None:
            message = c.messages[key] = no_capacity_message(group, job)
        return message

    # -- reclaim --

    def _reclaim(
        self,
        c: Cycle,
        p: Project,
        job: JobRequest,
        gpu: float,
        in_quota: bool,
        position: int,
        signature: object,
        search: bool,
    ) -> bool:
        """Wait for stopping jobs, or (if ``search``) choose victims; False if neither helps."""
        if c.holders and c.capacity.fits_ignoring_holds(job, signature):
            return False  # what blocks it is a hold, not a lack of capacity
        # With nothing stopping and no victim chosen yet, the shadow is the free capacity
        # without holds, where the job was just found not to fit.
        placements = c.shadow().try_place(job, signature) if c.stopping or c.victims else None
        victims: list[RunningJob] = []
        if placements is None:
            if not search:
                return False
            if c.searches >= self.max_reclaims:
                return False
            failed = (p.name, signature, self.rank_class(job, c.now), in_quota)
            if failed in c.reclaim_failed:
                return False
            if not self._victims_possible(c, p, job, in_quota):
                return False
            c.searches += 1
            alike = type(self).running_rank is QuotaPolicy.running_rank
            index = c.victim_index(None if alike else self.running_rank)
            givers: set[str] | None = None
            if not (in_quota and c.over_quota):
                index = index.of_project(p.name)  # no other project can give victims
            else:  # those over quota now (see _eligibility), and its own
                givers = {q.name for q in c.projects.values() if q.running > q.quota + EPSILON}
                givers.add(p.name)
            eligible = self._eligibility(c, p, job, gpu, in_quota, index.ranks)
            chosen = choose_victims(c.shadow(), job, index, eligible, c.victims, givers)
            if chosen is None:
                c.reclaim_failed.add(failed)
                return False
            victims, placements = chosen
        c.hold(sorted({c.capacity.index[pl.node] for pl in placements}), job.id)
        for victim in victims:
            c.victims.add(victim.id)
            owner = c.projects[victim.project]
            cpu, memory = running_resources(victim)
            owner.add(-victim.gpu, -cpu, -memory, victim.preemptible, victim.priority)
            owner.running -= victim.gpu
            c.decisions.preempt.append(
                Failure(victim.id, "Preempted", self.victim_message(job, victim))
            )
        if victims:
            names = ", ".join(v.id for v in victims)
            message = f"preempting {names} to make room; starts once they have stopped"
        else:
            message = "waiting for stopping jobs to release the capacity it needs"
        if self.explain:
            c.decisions.pending[job.id] = PendingInfo("Reclaiming", message, position)
        return True

    def _eligibility(
        self,
        c: Cycle,
        p: Project,
        job: JobRequest,
        gpu: float,
        in_quota: bool,
        ranks: Mapping[str, int],
    ) -> Eligible:
        """Who may be preempted for ``job``: a job of another project while that project is
        over its deserved quota (and ``job`` within its own); a job of the same project that
        ``job`` outranks (it is non-preemptible, or of higher priority, or of the same
        priority and a lower rank), while the project is over quota counting ``job`` (unless
        the policy reorders its own project's jobs freely)."""
        name, projects = p.name, c.projects
        preemptible, priority = job.preemptible, job.priority
        rank = self.service_rank(job, c.now) if preemptible else 0
        needs_quota = self.own_preemption_needs_quota()

        def eligible(victim: RunningJob, taken: Mapping[str, float]) -> bool:
            if victim.project == name:
                outranked = not preemptible or victim.priority < priority
                if not outranked and (victim.priority > priority or rank >= ranks[victim.id]):
                    return False
                if not needs_quota:
                    return True
                return p.used - taken.get(name, 0.0) + gpu > p.quota + EPSILON
            owner = projects[victim.project]
            return in_quota and owner.running - taken.get(owner.name, 0.0) > owner.quota + EPSILON

        return eligible

    # -- timeouts --

    @staticmethod
    def _since(job: JobRequest) -> float:
        """When the job last became schedulable: submission, end of a retry back-off, or its
        return to Pending after a preemption."""
        return max(job.created_at, job.not_before or 0.0, job.pending_since or 0.0)

    def _timed_out(self, job: JobRequest, now: float) -> bool:
        timeout = job.schedule_timeout
        return timeout is not None and now - self._since(job) >= timeout

    def _fail(self, c: Cycle, job: JobRequest) -> None:
        timeout = job.schedule_timeout
        assert timeout is not None
        c.decisions.fail.append(
            Failure(job.id, "Unschedulable", unschedulable_message(job, timeout))
        )

    def _wait_or_fail(
        self, c: Cycle, job: JobRequest, position: int, reason: str, message: str
    ) -> None:
        if self._timed_out(job, c.now):
            self._fail(c, job)
        elif self.explain:
            c.decisions.pending[job.id] = PendingInfo(reason, message, position)
