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
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence

from pier.scheduler.las import DEFAULT_THRESHOLDS, LasPolicy, _gpus
from pier.scheduler.quota import DEFAULT_MAX_RECLAIMS, DEFAULT_RESERVE_AFTER
from pier.scheduler.types import Decisions, JobRequest, ProjectState, RunningJob, Snapshot

__all__ = ["GittinsPolicy", "gittins_ranks", "grid"]

DEFAULT_GRID_START = 360.0
DEFAULT_GRID_RATIO = 2.0
DEFAULT_GRID_CELLS = 20
DEFAULT_INDEX_STEP = 2.0
DEFAULT_MIN_HISTORY = 50


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
        self._cache: dict[str, _Table] = {}
        self._ranks: dict[str, tuple[int, ...]] = {}
        self._points: dict[str, tuple[float, ...]] = {}

    learns_from_history = True
    """Needs ``ProjectState.service_history`` in the snapshot."""

    @property
    def service_points(self) -> tuple[float, ...]:
        return (*self.edges[1:], *self.thresholds)

    def decide(self, snapshot: Snapshot) -> Decisions:
        self._tables(snapshot.projects)
        return super().decide(snapshot)

    def rank_points(self, project: str) -> tuple[float, ...]:
        """The grid edges where the project's rank table gets worse (LAS's thresholds for a
        project without enough history)."""
        points = self._points.get(project)
        return super().rank_points(project) if points is None else points

    def _tables(self, projects: Mapping[str, ProjectState]) -> None:
        """Each project's rank per cell and worsening edges, for those with enough history
        (memoized by the history, and updated in place when it only slid on: a pure
        function of the snapshot)."""
        tables: dict[str, tuple[int, ...]] = {}
        points: dict[str, tuple[float, ...]] = {}
        for name, state in projects.items():
            history = state.service_history
            if len(history) < self.min_history:
                continue
            table = self._cache.get(name)
            if table is None:
                table = self._cache[name] = _Table(len(self.edges))
            if table.history != history:
                table.update(history, self.edges, self.index_step)
            tables[name] = table.ranks
            points[name] = table.points
        for name in [n for n in self._cache if n not in projects]:
            del self._cache[name]
        self._ranks, self._points = tables, points

    def queue_of(self, job: JobRequest, now: float) -> int:
        table = self._ranks.get(job.project)
        if table is None:
            return super().queue_of(job, now)
        return table[bisect_right(self.edges, job.attained_gpu_seconds) - 1]

    def running_queue(self, job: RunningJob, now: float) -> int:
        table = self._ranks.get(job.project)
        if table is None:
            return super().running_queue(job, now)
        attained = job.attained_gpu_seconds + job.gpu * max(0.0, now - job.started_at)
        return table[bisect_right(self.edges, attained) - 1]

    def order(self, jobs: list[JobRequest], now: float) -> list[JobRequest]:
        table = self._ranks.get(jobs[0].project) if jobs else None
        if table is None:
            return super().order(jobs, now)
        # queue_of, inline: this runs for every pending job
        edges, smallest_first = self.edges, self.smallest_first
        keys = [
            (-j.priority, q, _gpus(j) if q >= 0 and smallest_first else 0.0, j.created_at, j.id)
            for j, q in [
                (j, table[bisect_right(edges, j.attained_gpu_seconds) - 1] if j.preemptible else -1)
                for j in jobs
            ]
        ]
        return [jobs[i] for i in sorted(range(len(jobs)), key=keys.__getitem__)]

    def own_summary(
        self, running: Sequence[RunningJob], now: float
    ) -> tuple[int | None, dict[int, int]]:
        table = self._ranks.get(running[0].project) if running else None
        if table is None:
            return super().own_summary(running, now)
        # running_queue, inline: this runs for every running job of the project
        edges = self.edges
        lowest: int | None = None
        top: dict[int, int] = {}
        for v in running:
            if v.preemptible:
                priority = v.priority
                if lowest is None or priority < lowest:
                    lowest = priority
                ran = now - v.started_at
                attained = (
                    v.attained_gpu_seconds + v.gpu * ran if ran > 0 else v.attained_gpu_seconds
                )
                rank = table[bisect_right(edges, attained) - 1]
                if rank > top.get(priority, -1):
                    top[priority] = rank
        return lowest, top


class _Table:
    """A project's history binned on the grid, and its ranks."""

    __slots__ = ("counts", "history", "points", "ranks", "sums")

    def __init__(self, cells: int) -> None:
        self.history: tuple[float, ...] = ()
        self.counts = [0] * cells
        self.sums = [0] * cells
        self.ranks: tuple[int, ...] = ()
        self.points: tuple[float, ...] = ()
        """The edges where the rank gets worse than the cell's below."""

    def update(self, history: tuple[float, ...], edges: Sequence[float], step: float) -> None:
        old = self.history
        # the usual change: the newest jobs appended, the oldest dropped
        for dropped in range(min(len(old), 8) + 1):
            kept = len(old) - dropped
            added = len(history) - kept
            if 0 <= added <= 8 and history[:kept] == old[dropped:]:
                _bin(old[:dropped], edges, self.counts, self.sums, -1)
                _bin(history[kept:], edges, self.counts, self.sums, 1)
                break
        else:
            self.counts = [0] * len(edges)
            self.sums = [0] * len(edges)
            _bin(history, edges, self.counts, self.sums, 1)
        self.history = history
        ranks = self.ranks = _ranks(self.counts, self.sums, edges, step)
        self.points = tuple(edges[k] for k in range(1, len(edges)) if ranks[k] > ranks[k - 1])
