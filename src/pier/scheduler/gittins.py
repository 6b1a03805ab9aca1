"""Gittins-index order for preemptible training jobs, learned from finished jobs.

Least attained service (:mod:`pier.scheduler.las`) assumes that a job which has run longer
will run longer still. That holds for heavy tails, not for a project whose jobs cluster
around typical sizes. The Gittins index (Gittins 1979; Tiresias' "Gittins" variant, Gu et
al. NSDI'19; Scully et al. SIGMETRICS'21 on its optimality for mean response time among
policies that know no job's size) ranks a job by its chance of finishing soon per unit of
service still to spend, given only the service it has attained::

    G(a) = max over b > a of  P(S <= b | S > a) / E[min(S, b) - a | S > a]

for S the service (GPU-seconds) a job of the project needs in all, whose distribution is
taken from the project's finished jobs (``ProjectState.service_history``): history the
scheduler has seen, no job's own duration.

Discretized as LAS is: attained service is looked at on a geometric grid (cell k holds
``[edge_k, edge_k+1)``; a job's index is that of its cell's lower edge), and the index is
banded by factors of ``index_step`` into integer ranks (rank r: ``1/G`` in
``[step^r, step^(r+1))`` GPU-seconds, the lower the better). Ranks replace LAS's queues:
order by rank, then fewer GPUs, then submission; a pending job preempts a running job of its
own project whose rank is at least ``preempt_gap`` higher. A cell above every job of the
history gets the worst rank. With fewer than ``min_history`` finished jobs in a project,
the policy is plain :class:`~pier.scheduler.las.LasPolicy` for it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence

from pier.scheduler.las import DEFAULT_THRESHOLDS, LasPolicy, _gpus
from pier.scheduler.quota import DEFAULT_MAX_RECLAIMS, DEFAULT_RESERVE_AFTER
from pier.scheduler.types import Decisions, JobRequest, ProjectState, RunningJob, Snapshot

__all__ = ["SIZE_CLASSES", "GittinsPolicy", "gittins_ranks", "grid", "size_class"]

DEFAULT_GRID_START = 360.0
DEFAULT_GRID_RATIO = 2.0
DEFAULT_GRID_CELLS = 20
DEFAULT_INDEX_STEP = 2.0
DEFAULT_MIN_HISTORY = 50
SIZE_CLASSES = (1.0, 4.0, 8.0)
"""Upper bounds of the GPU-request classes a history may be split by: 1, 2-4, 5-8, > 8."""
_CLASSES = len(SIZE_CLASSES) + 1
_POOLED = _CLASSES
"""Index of the pooled history among a table's bins."""


def size_class(gpu: float) -> int:
    """The class of a job asking for ``gpu`` GPUs (0: up to 1, 1: 2-4, 2: 5-8, 3: more)."""
    return bisect_left(SIZE_CLASSES, gpu)


def grid(start: float, ratio: float, cells: int) -> tuple[float, ...]:
    """Cell edges: 0, start, start x ratio, ... (``cells`` cells, the last unbounded)."""
    return (0.0, *(start * ratio**k for k in range(cells - 1)))


def gittins_ranks(history: Sequence[float], edges: Sequence[float], step: float) -> tuple[int, ...]:
    """The rank of each cell of ``edges`` for the service distribution ``history``."""
    counts = [0] * len(edges)
    sums = [0] * len(edges)
    _bin(history, edges, counts, sums, 1)
    return _ranks(counts, sums, edges, step)


def _bin(
    values: Iterable[float], edges: Sequence[float], counts: list[int], sums: list[int], sign: int
) -> None:
    """Add (``sign`` 1) or remove (-1) values to the per-cell counts and sums (of whole
    GPU-seconds: integers, so that removing is exact)."""
    for s in values:
        i = bisect_right(edges, s) - 1
        counts[i] += sign
        sums[i] += sign * round(s)


def _ranks(
    counts: Sequence[int], sums: Sequence[int], edges: Sequence[float], step: float
) -> tuple[int, ...]:
    cells = len(edges)
    log_step = math.log(step)
    ranks: list[int | None] = []
    above = sum(counts)
    for k in range(cells):
        a = edges[k]
        best = 0.0
        done = 0
        spent = 0.0
        for j in range(k, cells):
            n = counts[j]
            done += n
            spent += sums[j] - n * a
            if done == 0:
                continue
            rest = above - done
            cost = spent + rest * (edges[j + 1] - a) if rest else spent
            if cost <= 0.0:
                best = math.inf
                break
            if done > best * cost:  # done / cost > best
                best = done / cost
        if best == 0.0:
            ranks.append(None)
        else:
            ranks.append(0 if best >= 1.0 else math.floor(-math.log(best) / log_step))
        above -= counts[k]
    worst = max((r for r in ranks if r is not None), default=0) + 1
    return tuple(worst if r is None else r for r in ranks)


class GittinsPolicy(LasPolicy):
    def __init__(
        self,
        *,
        grid_start: float = DEFAULT_GRID_START,
        grid_ratio: float = DEFAULT_GRID_RATIO,
        grid_cells: int = DEFAULT_GRID_CELLS,
        index_step: float = DEFAULT_INDEX_STEP,
        min_history: int = DEFAULT_MIN_HISTORY,
        by_size: bool = False,
        time_service: bool = False,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        reserve_after: float | None = DEFAULT_RESERVE_AFTER,
        max_reclaims: int = DEFAULT_MAX_RECLAIMS,
        explain: bool = True,
        fragmentation_aware: bool = False,
        preempt_gap: int = 1,
        smallest_first: bool = True,
    ) -> None:
        if grid_start <= 0 or grid_ratio <= 1 or grid_cells < 2 or index_step <= 1:
            raise ValueError("grid_start > 0, grid_ratio > 1, grid_cells >= 2, index_step > 1")
        super().__init__(
            thresholds=thresholds,
            reserve_after=reserve_after,
            max_reclaims=max_reclaims,
            explain=explain,
            fragmentation_aware=fragmentation_aware,
            preempt_gap=preempt_gap,
            smallest_first=smallest_first,
        )
        self.edges = grid(grid_start, grid_ratio, grid_cells)
        self.index_step = index_step
        self.min_history = min_history
        self.by_size = by_size
        """Learn each GPU-request class (:data:`SIZE_CLASSES`) from its own finished jobs,
        where it has ``min_history`` of them (else from all the project's)."""
        self.time_service = time_service
        """Measure service in seconds run (GPU-seconds / GPUs), not GPU-seconds."""
        self._cache: dict[str, _Table] = {}
        self._ranks: dict[str, tuple[tuple[int, ...], ...]] = {}

    learns_from_history = True
    """Needs ``ProjectState.service_history`` (and ``history_gpus``) in the snapshot."""

    @property
    def service_points(self) -> tuple[float, ...]:
        return (*self.edges[1:], *self.thresholds)

    def decide(self, snapshot: Snapshot) -> Decisions:
        self._tables(snapshot.projects)
        return super().decide(snapshot)

    def rank_points(self, project: str, gpu: float = 1.0) -> tuple[float, ...]:
        """The grid edges where the rank of a job of ``gpu`` GPUs gets worse, in its
        attained GPU-seconds (LAS's thresholds for a project without enough history)."""
        table = self._cache.get(project)
        if table is None or project not in self._ranks:
            return super().rank_points(project, gpu)
        points = table.points[size_class(gpu)]
        return tuple(gpu * p for p in points) if self.time_service else points

    def _tables(self, projects: Mapping[str, ProjectState]) -> None:
        """Each project's ranks per size class and cell, for those with enough history
        (memoized by the history, and updated in place when it only slid on: a pure
        function of the snapshot)."""
        tables: dict[str, tuple[tuple[int, ...], ...]] = {}
        for name, state in projects.items():
            history = state.service_history
            if len(history) < self.min_history:
                continue
            gpus = state.history_gpus
            if len(gpus) != len(history):
                gpus = ()  # unknown: one pooled history, of GPU-seconds
            table = self._cache.get(name)
            if table is None:
                table = self._cache[name] = _Table(len(self.edges))
            if table.history != history or table.gpus != gpus:
                table.update(history, gpus, self)
            tables[name] = table.ranks
        for name in [n for n in self._cache if n not in projects]:
            del self._cache[name]
        self._ranks = tables

    def _service(self, attained: float, gpu: float) -> float:
        return attained / gpu if self.time_service and gpu > 0 else attained

    def queue_of(self, job: JobRequest, now: float) -> int:
        ranks = self._ranks.get(job.project)
        if ranks is None:
            return super().queue_of(job, now)
        gpu = job.gpu
        service = self._service(job.attained_gpu_seconds, gpu)
        return ranks[size_class(gpu)][bisect_right(self.edges, service) - 1]

    def running_queue(self, job: RunningJob, now: float) -> int:
        ranks = self._ranks.get(job.project)
        if ranks is None:
            return super().running_queue(job, now)
        attained = job.attained_gpu_seconds + job.gpu * max(0.0, now - job.started_at)
        service = self._service(attained, job.gpu)
        return ranks[size_class(job.gpu)][bisect_right(self.edges, service) - 1]

    def order(self, jobs: list[JobRequest], now: float) -> list[JobRequest]:
        ranks = self._ranks.get(jobs[0].project) if jobs else None
        if ranks is None:
            return super().order(jobs, now)
        smallest_first = self.smallest_first
        queue_of = self.queue_of
        keys = [
            (-j.priority, q, _gpus(j) if q >= 0 and smallest_first else 0.0, j.created_at, j.id)
            for j, q in [(j, queue_of(j, now) if j.preemptible else -1) for j in jobs]
        ]
        return [jobs[i] for i in sorted(range(len(jobs)), key=keys.__getitem__)]

    def own_summary(
        self, running: Sequence[RunningJob], now: float
    ) -> tuple[int | None, dict[int, int]]:
        ranks = self._ranks.get(running[0].project) if running else None
        if ranks is None:
            return super().own_summary(running, now)
        # running_queue, inline: this runs for every running job of the project
        edges, per_gpu = self.edges, self.time_service
        lowest: int | None = None
        top: dict[int, int] = {}
        for v in running:
            if v.preemptible:
                priority = v.priority
                if lowest is None or priority < lowest:
                    lowest = priority
                ran = now - v.started_at
                gpu = v.gpu
                service = v.attained_gpu_seconds + gpu * ran if ran > 0 else v.attained_gpu_seconds
                if per_gpu and gpu > 0:
                    service /= gpu
                rank = ranks[bisect_left(SIZE_CLASSES, gpu)][bisect_right(edges, service) - 1]
                if rank > top.get(priority, -1):
                    top[priority] = rank
        return lowest, top


class _Table:
    """A project's history binned on the grid (per size class, and pooled), its ranks per
    class and the edges where they get worse."""

    __slots__ = ("counts", "gpus", "history", "points", "ranks", "sums")

    def __init__(self, cells: int) -> None:
        self.history: tuple[float, ...] = ()
        self.gpus: tuple[float, ...] = ()
        self.counts = [[0] * cells for _ in range(_CLASSES + 1)]
        self.sums = [[0] * cells for _ in range(_CLASSES + 1)]
        self.ranks: tuple[tuple[int, ...], ...] = ()
        self.points: tuple[tuple[float, ...], ...] = ()

    def update(
        self, history: tuple[float, ...], gpus: tuple[float, ...], policy: GittinsPolicy
    ) -> None:
        old, old_gpus = self.history, self.gpus
        edges = policy.edges
        changed = [False] * (_CLASSES + 1)
        # the usual change: the newest jobs appended, the oldest dropped
        for dropped in range(min(len(old), 8) + 1):
            kept = len(old) - dropped
            added = len(history) - kept
            if (
                0 <= added <= 8
                and history[:kept] == old[dropped:]
                and gpus[:kept] == old_gpus[dropped:]
            ):
                self._bin(old[:dropped], old_gpus[:dropped], -1, policy, changed)
                self._bin(history[kept:], gpus[kept:], 1, policy, changed)
                break
        else:
            cells = len(edges)
            self.counts = [[0] * cells for _ in range(_CLASSES + 1)]
            self.sums = [[0] * cells for _ in range(_CLASSES + 1)]
            changed = [True] * (_CLASSES + 1)
            self._bin(history, gpus, 1, policy, changed)
        self.history, self.gpus = history, gpus
        step = policy.index_step
        own = [
            policy.by_size and bool(gpus) and sum(self.counts[c]) >= policy.min_history
            for c in range(_CLASSES)
        ]
        old_ranks = self.ranks
        pooled = (
            _ranks(self.counts[_POOLED], self.sums[_POOLED], edges, step)
            if changed[_POOLED] or not old_ranks
            else None
        )
        ranks: list[tuple[int, ...]] = []
        for c in range(_CLASSES):
            if own[c]:
                if changed[c] or not old_ranks:
                    ranks.append(_ranks(self.counts[c], self.sums[c], edges, step))
                else:
                    ranks.append(old_ranks[c])
            else:
                ranks.append(pooled if pooled is not None else old_ranks[_POOLED])
        ranks.append(pooled if pooled is not None else old_ranks[_POOLED])
        self.ranks = tuple(ranks)
        self.points = tuple(
            tuple(edges[k] for k in range(1, len(edges)) if r[k] > r[k - 1]) for r in ranks
        )

    def _bin(
        self,
        values: Sequence[float],
        gpus: Sequence[float],
        sign: int,
        policy: GittinsPolicy,
        changed: list[bool],
    ) -> None:
        if not values:
            return
        edges = policy.edges
        if policy.time_service and gpus:
            values = [v / g if g > 0 else v for v, g in zip(values, gpus, strict=True)]
        _bin(values, edges, self.counts[_POOLED], self.sums[_POOLED], sign)
        changed[_POOLED] = True
        if policy.by_size and gpus:
            for v, g in zip(values, gpus, strict=True):
                c = size_class(g)
                _bin((v,), edges, self.counts[c], self.sums[c], sign)
                changed[c] = True
