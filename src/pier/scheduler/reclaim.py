"""Choosing victims: which running jobs to preempt so that a pending job fits.

Per replica, as the Kubernetes scheduler preempts per node: for every node the replica may
use, take that node's eligible running jobs cheapest first until the replica would fit
there; the node whose victims cost least wins. Cost is the work a victim loses: GPUs x
seconds since it started (ties: the one started last, then by id). A victim is a whole job,
so a gang goes whole and frees its share of every node it holds. Whether a running job is
eligible at all (preemptible, of a project over its deserved quota, or of the job's own
project and ranked below it) is the policy's call.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from pier.scheduler.capacity import EPSILON, IDLE, Capacity, group_key
from pier.scheduler.types import JobRequest, Placement, ReplicaRequest, RunningJob

__all__ = ["RANK_COST", "Eligible", "VictimIndex", "choose_victims"]

Eligible = Callable[[RunningJob, Mapping[str, float]], bool]
"""Whether a running job may be preempted, given GPUs already taken from each project by
the victims chosen so far for the same job."""


RANK_COST = 1e12
"""A victim of a lower rank costs this many GPU-seconds more: ranks decide first."""

_MARGIN = 1e-9
"""Relative slack for rounding when a cost bound is compared with a plan's summed cost."""


class VictimIndex:
    """Preemptible running jobs by node, cheapest first. Built once per cycle."""

    def __init__(
        self,
        running: Iterable[RunningJob],
        now: float,
        index: Mapping[str, int],
        rank: Callable[[RunningJob, float], int] | None,
    ):
        """``rank`` None: every job ranks alike (0)."""
        candidates = [job for job in running if job.preemptible and not job.terminating]
        self.ranks: dict[str, int]
        """The policy's rank of each job (least attained service: its queue)."""
        if rank is None:
            self.ranks = dict.fromkeys([job.id for job in candidates], 0)
        else:
            self.ranks = {job.id: rank(job, now) for job in candidates}
        ranks = self.ranks
        top = max(ranks.values(), default=0)
        entries: list[_Entry] = []
        for job in candidates:
            # Highest rank first (least attained service: the job that received most), then
            # the least work lost.
            lost = job.gpu * max(0.0, now - job.started_at)
            cost = (lost + (top - ranks[job.id]) * RANK_COST, -job.started_at, job.id)
            # the GPU share it holds on each node it runs on
            held: dict[int, float] = {}
            for p in job.placements:
                node = index.get(p.node)
                if node is not None:
                    held[node] = held.get(node, 0.0) + len(p.devices) * (p.gpu_fraction or 1.0)
            entries.append((cost, job, held))
        self._entries = entries
        self._projects: dict[str, VictimIndex] = {}
        self.by_node, self.cheapest, self.bounds = _by_node(entries)

    def of_project(self, project: str) -> VictimIndex:
        """The same index restricted to one project's jobs (built once per project): where
        only a job's own project can give victims, a search looks at fewer nodes and finds
        the same victims."""
        sub = self._projects.get(project)
        if sub is None:
            sub = self._projects[project] = VictimIndex.__new__(VictimIndex)
            sub.ranks = self.ranks
            sub._entries = [e for e in self._entries if e[1].project == project]
            sub._projects = {}
            sub.by_node, sub.cheapest, sub.bounds = _by_node(sub._entries)
        return sub


_Entry = tuple[tuple[float, float, str], RunningJob, dict[int, float]]
_ByNode = dict[int, list[tuple[tuple[float, float, str], RunningJob]]]


_Bounds = tuple[dict[str, float], float, float]


def _by_node(
    entries: Iterable[_Entry],
) -> tuple[_ByNode, list[tuple[float, int]], dict[int, _Bounds]]:
    """Jobs by node, cheapest first; nodes by the cost of their cheapest job (a lower bound
    of what freeing them costs); and per node, the GPU share its jobs hold there (by
    project, and in all) and the least cost per unit of that share among them (see
    :func:`_cheapest_node`)."""
    by_node: _ByNode = defaultdict(list)
    share: dict[int, dict[str, float]] = defaultdict(dict)
    rate: dict[int, float] = {}
    for cost, job, held in entries:
        for node, gpus in held.items():
            by_node[node].append((cost, job))
            if gpus > 0:
                projects = share[node]
                projects[job.project] = projects.get(job.project, 0.0) + gpus
                per_gpu = cost[0] / gpus
                if per_gpu < rate.get(node, math.inf):
                    rate[node] = per_gpu
    ordered = {node: sorted(jobs, key=_first) for node, jobs in by_node.items()}
    bounds = {
        node: (share[node], sum(share[node].values()), rate.get(node, 0.0)) for node in ordered
    }
    return ordered, sorted((jobs[0][0][0], node) for node, jobs in ordered.items()), bounds


def _first(item: tuple[tuple[float, float, str], RunningJob]) -> tuple[float, float, str]:
    return item[0]


def choose_victims(
    shadow: Capacity,
    job: JobRequest,
    victims: VictimIndex,
    eligible: Eligible,
    taken: set[str],
    givers: Collection[str] | None = None,
) -> tuple[list[RunningJob], tuple[Placement, ...]] | None:
    """Victims that make ``job`` fit in ``shadow`` (which is left with the victims gone and
    the job placed), or None (and ``shadow`` unchanged). ``givers``, if given, holds every
    project with a job that ``eligible`` may accept (it only bounds the search)."""
    chosen: list[RunningJob] = []
    chosen_ids: set[str] = set()
    reduced: dict[str, float] = defaultdict(float)
    placements: list[Placement] = []
    for replica in job.replicas:
        placement = shadow.place_replica(replica)
        if placement is None:
            plan = _cheapest_node(
                shadow, replica, victims, eligible, taken | chosen_ids, reduced, givers
            )
            if plan is not None:
                node, extra = plan
                for victim in extra:
                    shadow.vacate(victim.placements)
                    chosen.append(victim)
                    chosen_ids.add(victim.id)
                    reduced[victim.project] += victim.gpu
                placement = shadow.place_replica(replica, node)
        if placement is None:
            shadow.release(placements)
            for victim in chosen:
                shadow.occupy(victim.placements)
            return None
        placements.append(placement)
    return chosen, tuple(placements)


def _cheapest_node(
    shadow: Capacity,
    replica: ReplicaRequest,
    victims: VictimIndex,
    eligible: Eligible,
    taken: set[str],
    reduced: Mapping[str, float],
    givers: Collection[str] | None = None,
) -> tuple[int, list[RunningJob]] | None:
    """The node where ``replica`` fits at the least cost of victims, and those victims.

    Nodes are visited by the cost of their cheapest victim, until that alone exceeds the
    best plan found. For whole GPUs a node is skipped, as :func:`_free_node` would find no
    plan there (or none cheaper than the best), when its jobs (of ``givers``, if given)
    together hold too little GPU share to leave enough devices idle, or when freeing the
    share it lacks costs more than the best plan at the node's least cost per GPU share."""
    best: tuple[float, int, int, list[RunningJob]] | None = None
    members = shadow.group(group_key(replica)).member_set
    need = int(replica.gpu) if replica.gpu >= 1 else 0
    idle, partial, devices, bounds = shadow.idle, shadow.partial, shadow.devices, victims.bounds
    for bound, node in victims.cheapest:
        if best is not None and bound > best[0]:
            break
        if node not in members:
            continue
        short: float = need - idle[node]
        if short > 0:
            # Every device that becomes idle needs its used share freed: at least
            # ``short`` less the free share of partly used devices, from the jobs there.
            by_project, held, rate = bounds[node]
            if givers is not None:
                held = sum([gpus for name, gpus in by_project.items() if name in givers])
            if node in partial:
                short -= sum([s for s in devices[node] if s < IDLE])
            if short > held + EPSILON:
                continue
            if best is not None and short * rate > best[0] * (1 + _MARGIN) + _MARGIN:
                continue
        candidates = victims.by_node[node]
        plan = _free_node(shadow, node, replica, candidates, eligible, taken, reduced, best)
        if plan is not None:
            cost, chosen = plan
            if best is None or (cost, len(chosen), node) < best[:3]:
                best = (cost, len(chosen), node, chosen)
    return None if best is None else (best[2], best[3])


def _free_node(
    shadow: Capacity,
    node: int,
    replica: ReplicaRequest,
    candidates: Sequence[tuple[tuple[float, float, str], RunningJob]],
    eligible: Eligible,
    taken: set[str],
    reduced: Mapping[str, float],
    best: tuple[float, int, int, list[RunningJob]] | None,
) -> tuple[float, list[RunningJob]] | None:
    """The cheapest victims on ``node`` after which ``replica`` fits there, if any cheaper
    than ``best``."""
    local: dict[str, float] | None = None  # ``reduced`` and this node's victims
    cost = 0.0
    chosen: list[RunningJob] = []
    for (victim_cost_, _, _), victim in candidates:
        if victim.id in taken or not eligible(victim, reduced if local is None else local):
            continue
        if local is None:  # most nodes visited have no eligible job: copy only where one is
            name = shadow.nodes[node].name
            devices = list(shadow.devices[node])
            cpu, memory = shadow.cpu[node], shadow.memory[node]
            local = dict(reduced)
        cost += victim_cost_
        if best is not None and cost > best[0]:
            return None
        chosen.append(victim)
        local[victim.project] = local.get(victim.project, 0.0) + victim.gpu
        for p in victim.placements:
            if p.node == name:
                for d in p.devices:
                    devices[d] += p.gpu_fraction or 1.0
                cpu += p.cpu
                memory += p.memory
        if _fits(devices, cpu, memory, replica):
            return cost, chosen
    return None


def _fits(devices: Sequence[float], cpu: float, memory: int, replica: ReplicaRequest) -> bool:
    if cpu + EPSILON < replica.cpu or memory < replica.memory:
        return False
    gpu = replica.gpu
    if gpu >= 1:
        return sum(1 for s in devices if s >= IDLE) >= int(gpu)
    return gpu <= 0 or any(s + EPSILON >= gpu for s in devices)
