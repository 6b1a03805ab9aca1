"""Replay a GPU-cluster job trace through a scheduling policy, on a simulated clock.

    python -m pier.scheduler.simulate philly.csv --vcs philly_vc.csv \\
        --policy las --policy sjf --load 1 --load 2 --load 3
    pier simulate philly.csv --vcs philly_vc.csv --policy las --load 2     (the same)

The setup is Helios' (Hu et al., SC'21) Philly replay: every virtual cluster (VC) of the VC
table (``vc,node num``; 8 GPUs per node) is a cluster of its own, fed the trace's jobs of that
VC (``timestamp,duration,num_gpus,...,cluster``) submitted in the window. ``--load k``
divides inter-arrival times by k (rounded down to whole seconds, the trace's resolution).
A job of g <= 8 GPUs is one replica; a larger one is a gang of 8-GPU replicas (and one for
the rest). The cluster is empty at the start.

Events are arrivals, completions and, for least attained service, the moments a running job
moves to a worse rank (``LasPolicy.rank_points``: LAS's thresholds, or the grid edges where
a learned Gittins table gets worse; only there can it become a victim it was not). At
each event time the policy decides on a ``Snapshot`` exactly as in the server; preemptions
take effect at once, and the policy decides again at the same time (victims are gone). A
preempted job keeps the work done (checkpointed) and pays Helios' restore overhead when it
resumes: 7 s for 1 GPU, 30 s up to 8 GPUs, 60 s above. Decisions are skipped when they
cannot change anything: an arrival finds no free GPU and the policy does not preempt.

Reported per policy and load (all VCs' jobs together): average and p99 job completion time
(JCT: finish - submit), average queueing delay (JCT - duration: time spent waiting, after
preemptions too), GPU utilisation (GPU-seconds run / (GPUs x time from first submission to
last completion), per VC, averaged weighted by GPUs), preemptions, and the replay's wall time.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from pier.scheduler.baselines import SjfPolicy, SrtfPolicy, StrictFifoPolicy
from pier.scheduler.gittins import GittinsPolicy
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import (
    JobRequest,
    NodeState,
    Placement,
    Policy,
    ProjectState,
    ReplicaRequest,
    RunningJob,
    Snapshot,
)

__all__ = [
    "POLICIES",
    "Result",
    "TraceJob",
    "format_table",
    "load_trace",
    "load_vcs",
    "main",
    "replay",
    "restore_overhead",
    "simulate",
]

GPUS_PER_NODE = 8
ALL = "all"
"""The one cluster of a replay without a VC table."""
DEFAULT_POLICIES = ("fifo", "sjf", "srtf", "quota", "las", "gittins")
HISTORY = 1_000
"""Finished jobs' service the snapshot carries per project (as the server's)."""
MAX_PASSES = 4
"""Decisions at one instant: preemptions take effect and the policy decides again."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    id: str
    submit: float
    """Seconds since the start of the window (before load scaling)."""
    duration: float
    gpus: int


@dataclass(slots=True)
class Result:
    jct: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)
    gpu_seconds: float = 0.0
    capacity_seconds: float = 0.0
    preemptions: int = 0
    decisions: int = 0
    failed: int = 0

    def merge(self, other: Result) -> None:
        self.jct += other.jct
        self.queued += other.queued
        self.gpu_seconds += other.gpu_seconds
        self.capacity_seconds += other.capacity_seconds
        self.preemptions += other.preemptions
        self.decisions += other.decisions
        self.failed += other.failed

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.jct)
        count = len(ordered)
        return {
            "jobs": count,
            "avg_jct_s": round(sum(ordered) / count, 1) if count else 0.0,
            "p99_jct_s": round(ordered[max(0, math.ceil(0.99 * count) - 1)], 1) if count else 0.0,
            "avg_queue_s": round(sum(self.queued) / count, 1) if count else 0.0,
            "gpu_util": round(self.gpu_seconds / self.capacity_seconds, 4)
            if self.capacity_seconds
            else 0.0,
            "preemptions": self.preemptions,
            "decisions": self.decisions,
            "failed": self.failed,
        }


def restore_overhead(gpus: float) -> float:
    """Helios' checkpoint-restore cost of resuming a preempted job, in seconds."""
    return 7.0 if gpus <= 1 else 30.0 if gpus <= 8 else 60.0


def load_vcs(path: str) -> dict[str, int]:
    with open(path, newline="") as f:
        return {row["vc"]: int(row["node num"]) for row in csv.DictReader(f)}


def load_trace(
    path: str, vcs: Iterable[str] | None, start: datetime, end: datetime
) -> dict[str, list[TraceJob]]:
    """Jobs per VC submitted in ``[start, end)``, in submission order; with ``vcs`` None,
    every job under the one key :data:`ALL`."""
    wanted = set(vcs) if vcs is not None else {ALL}
    jobs: dict[str, list[TraceJob]] = {vc: [] for vc in wanted}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            vc = row["cluster"] if vcs is not None else ALL
            if vc not in wanted:
                continue
            submitted = datetime.fromisoformat(row["timestamp"])
            if not start <= submitted < end:
                continue
            jobs[vc].append(
                TraceJob(
                    f"j{i}",
                    (submitted - start).total_seconds(),
                    float(row["duration"]),
                    int(row["num_gpus"]),
                )
            )
    for listed in jobs.values():
        listed.sort(key=lambda j: (j.submit, j.id))
    return jobs


def _replicas(gpus: int) -> tuple[ReplicaRequest, ...]:
    if gpus <= GPUS_PER_NODE:
        return (ReplicaRequest("w", 0, float(gpus)),)
    sizes = [GPUS_PER_NODE] * (gpus // GPUS_PER_NODE)
    if gpus % GPUS_PER_NODE:
        sizes.append(gpus % GPUS_PER_NODE)
    return tuple(ReplicaRequest("w", i, float(g)) for i, g in enumerate(sizes))


@dataclass(slots=True)
class _Job:
    trace: TraceJob
    submit: float
    request: JobRequest
    remaining: float
    attained: float = 0.0
    started: float = 0.0
    epoch: int = 0
    run: RunningJob | None = None


class _Cluster:
    """Free devices per node, and the NodeState of each, rebuilt only where changed."""

    def __init__(self, nodes: int) -> None:
        self.free = [[1.0] * GPUS_PER_NODE for _ in range(nodes)]
        self.index = {f"n{i}": i for i in range(nodes)}
        self.states = [self._state(i) for i in range(nodes)]
        self.free_gpus = nodes * GPUS_PER_NODE

    def _state(self, i: int) -> NodeState:
        return NodeState(
            f"n{i}", "default", {}, "v100", 64.0, 2**40, tuple(self.free[i]), 64.0, 2**40
        )

    def apply(self, placements: Iterable[Placement], sign: float) -> None:
        """Take (sign 1) or give back (-1) whole devices."""
        for p in placements:
            i = self.index[p.node]
            for d in p.devices:
                self.free[i][d] -= sign
            self.free_gpus -= int(sign) * len(p.devices)
            self.states[i] = self._state(i)


def replay(
    jobs: Sequence[TraceJob],
    nodes: int,
    policy: Policy,
    *,
    load: float = 1.0,
    preemptive: bool = False,
    thresholds: Sequence[float] = (),
    wake_points: Callable[[str], Sequence[float]] | None = None,
) -> Result:
    """Replay one VC's jobs on ``nodes`` nodes; ``thresholds`` (GPU-seconds) add decision
    points when a running job's attained service crosses one. ``wake_points`` (a project's
    name to such thresholds, e.g. ``LasPolicy.rank_points``) replaces them with ones the
    policy may change at each decision."""
    result = Result()
    cluster = _Cluster(nodes)
    project = "vc"
    projects = {project: ProjectState(project, gpu_quota=float(nodes * GPUS_PER_NODE))}
    keep_history = bool(getattr(policy, "learns_from_history", False))
    live: dict[str, _Job] = {}
    for tj in jobs:
        if tj.gpus > nodes * GPUS_PER_NODE:
            result.failed += 1
            continue
        submit = float(math.floor(tj.submit / load))  # whole seconds, as the trace
        request = JobRequest(tj.id, project, submit, _replicas(tj.gpus))
        live[tj.id] = _Job(tj, submit, request, tj.duration)
    arrivals = sorted(live.values(), key=lambda j: (j.submit, j.trace.id))
    next_arrival = 0
    pending: dict[str, JobRequest] = {}
    running: dict[str, _Job] = {}
    runs: dict[str, RunningJob] = {}
    """The running jobs' ``RunningJob``, in the order of ``running``."""
    # (time, kind 0 end / 1 wake-up, id, epoch, generation of the wake points)
    events: list[tuple[float, int, str, int, int]] = []
    points = tuple(sorted(thresholds if wake_points is None else wake_points(project)))
    generation = 0
    first = arrivals[0].submit if arrivals else 0.0
    last = first
    now = first

    def start(job: _Job, placements: tuple[Placement, ...]) -> None:
        cluster.apply(placements, 1.0)
        job.started = now
        job.run = RunningJob(
            job.trace.id,
            project,
            float(job.trace.gpus),
            True,
            now,
            placements,
            attained_gpu_seconds=job.attained,
        )
        running[job.trace.id] = job
        runs[job.trace.id] = job.run
        heapq.heappush(events, (now + job.remaining, 0, job.trace.id, job.epoch, 0))
        wake(job, -math.inf)

    def wake(job: _Job, after: float) -> None:
        """Wake up at the first point the running job crosses after ``after`` (then the
        next, when woken)."""
        for limit in points:
            if limit > job.attained:
                at = job.started + (limit - job.attained) / job.trace.gpus
                if at >= job.started + job.remaining:
                    return
                if at > after:
                    heapq.heappush(events, (at, 1, job.trace.id, job.epoch, generation))
                    return

    def stop(job: _Job) -> None:
        assert job.run is not None
        cluster.apply(job.run.placements, -1.0)
        ran = now - job.started
        job.remaining = job.remaining - ran + restore_overhead(job.trace.gpus)
        job.attained += job.trace.gpus * ran
        job.epoch += 1
        job.run = None
        del running[job.trace.id], runs[job.trace.id]
        result.preemptions += 1
        job.request = replace(job.request, attained_gpu_seconds=job.attained, pending_since=now)
        pending[job.trace.id] = job.request

    while next_arrival < len(arrivals) or events:
        upcoming = arrivals[next_arrival].submit if next_arrival < len(arrivals) else math.inf
        now = min(upcoming, events[0][0] if events else math.inf)
        freed = woke = arrived = False
        while events and events[0][0] <= now:
            _, kind, job_id, epoch, points_of = heapq.heappop(events)
            job = live[job_id]
            if epoch != job.epoch or job.run is None:
                continue
            if kind == 1:
                if points_of == generation:
                    woke = True
                    wake(job, now)
                continue
            cluster.apply(job.run.placements, -1.0)
            del running[job_id], runs[job_id]
            job.run = None
            job.epoch += 1
            freed = True
            jct = now - job.submit
            result.jct.append(jct)
            result.queued.append(jct - job.trace.duration)
            result.gpu_seconds += job.trace.gpus * job.trace.duration
            if keep_history:
                state = projects[project]
                service = job.attained + job.trace.gpus * (now - job.started)
                projects[project] = replace(
                    state, service_history=(*state.service_history[1 - HISTORY :], service)
                )
            last = max(last, now)
        while next_arrival < len(arrivals) and arrivals[next_arrival].submit <= now:
            job = arrivals[next_arrival]
            pending[job.trace.id] = job.request
            next_arrival += 1
            arrived = True
        useful = freed or (preemptive and (woke or arrived)) or (arrived and cluster.free_gpus)
        if not pending or not useful:
            continue
        for _ in range(MAX_PASSES):
            snapshot = Snapshot(
                now,
                tuple(cluster.states),
                projects,
                tuple(pending.values()),
                tuple(runs.values()),
            )
            decisions = policy.decide(snapshot)
            result.decisions += 1
            if wake_points is not None:
                changed = tuple(wake_points(project))
                if changed != points:
                    points = changed
                    generation += 1
                    for job in running.values():
                        wake(job, now)
            for victim in decisions.preempt:
                stop(live[victim.job_id])
            for admission in decisions.admit:
                job = live[admission.job_id]
                del pending[admission.job_id]
                start(job, admission.placements)
            for failure in decisions.fail:
                del pending[failure.job_id]
                result.failed += 1
            if not decisions.preempt:
                break
    result.capacity_seconds = nodes * GPUS_PER_NODE * max(0.0, last - first)
    return result


PolicyFactory = Callable[[Mapping[str, float]], Policy]

POLICIES: dict[str, PolicyFactory] = {
    "fifo": lambda durations: StrictFifoPolicy(),
    "sjf": SjfPolicy,
    "srtf": SrtfPolicy,
    "quota": lambda durations: QuotaPolicy(explain=False),
    "las": lambda durations: LasPolicy(explain=False),
    "gittins": lambda durations: GittinsPolicy(explain=False),
}


def run(
    trace: Mapping[str, list[TraceJob]],
    vcs: Mapping[str, int],
    policy_name: str,
    load: float,
) -> tuple[Result, float, float]:
    """The replay of every VC through a fresh policy; the result, wall and CPU seconds."""
    total = Result()
    started, started_cpu = time.perf_counter(), time.process_time()
    for vc, nodes in vcs.items():
        jobs = trace.get(vc, [])
        durations = {j.id: j.duration for j in jobs}
        policy = POLICIES[policy_name](durations)
        las = isinstance(policy, LasPolicy)
        preemptive = bool(getattr(policy, "preemptive", False)) or las
        wake_points = policy.rank_points if isinstance(policy, LasPolicy) else None
        total.merge(
            replay(jobs, nodes, policy, load=load, preemptive=preemptive, wake_points=wake_points)
        )
    return total, time.perf_counter() - started, time.process_time() - started_cpu


COLUMNS = (
    ("load", "load", "{:g}x"),
    ("policy", "policy", "{}"),
    ("jobs", "jobs", "{:,}"),
    ("avg_jct_s", "avg JCT (s)", "{:,.0f}"),
    ("p99_jct_s", "p99 JCT (s)", "{:,.0f}"),
    ("avg_queue_s", "avg queueing (s)", "{:,.0f}"),
    ("gpu_util", "GPU util", "{:.3f}"),
    ("preemptions", "preemptions", "{:,}"),
    ("failed", "failed", "{:,}"),
    ("wall_s", "replay (s)", "{:.1f}"),
    ("cpu_s", "CPU (s)", "{:.1f}"),
)


def simulate(
    trace_path: str,
    *,
    policies: Sequence[str],
    loads: Sequence[float],
    vcs_path: str | None = None,
    nodes: int | None = None,
    only_vcs: Sequence[str] = (),
    start: str = "2017-10-01",
    end: str = "2017-12-01",
) -> Iterator[dict[str, float | int | str]]:
    """One row of metrics per load and policy. With ``vcs_path`` (Helios' VC table) every
    VC is replayed on its own cluster; with ``nodes`` the whole trace runs on one cluster of
    that many 8-GPU nodes."""
    unknown = [name for name in policies if name not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; one of {', '.join(sorted(POLICIES))}")
    if any(load <= 0 for load in loads):
        raise ValueError("load must be positive")
    if vcs_path is not None:
        vcs = load_vcs(vcs_path)
        if only_vcs:
            vcs = {vc: n for vc, n in vcs.items() if vc in only_vcs}
        wanted: list[str] | None = list(vcs)
    elif nodes is not None and nodes > 0:
        vcs, wanted = {ALL: nodes}, None
    else:
        raise ValueError("give a VC table (--vcs) or a cluster size (--nodes)")
    trace = load_trace(
        trace_path, wanted, datetime.fromisoformat(start), datetime.fromisoformat(end)
    )
    for load in loads:
        for name in policies:
            result, wall, cpu = run(trace, vcs, name, load)
            yield {
                "policy": name,
                "load": load,
                **result.summary(),
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
            }


def format_table(rows: Iterable[Mapping[str, float | int | str]]) -> str:
    """Rows of :func:`simulate` as an aligned text table."""
    header = [title for _, title, _ in COLUMNS]
    body = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pier.scheduler.simulate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("trace", nargs="?", help="philly.csv (timestamp,duration,num_gpus,...)")
    parser.add_argument("--trace", dest="trace_option", help="the same, as an option")
    parser.add_argument("--vcs", help="Helios' VC table (vc,node num): each VC on its own")
    parser.add_argument("--nodes", type=int, help="without --vcs: one cluster of N 8-GPU nodes")
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES))
    parser.add_argument("--load", action="append", type=float)
    parser.add_argument("--start", default="2017-10-01")
    parser.add_argument("--end", default="2017-12-01", help="exclusive")
    parser.add_argument("--vc", action="append", help="only these VCs")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    trace = args.trace or args.trace_option
    if trace is None:
        parser.error("a trace file is needed")
    rows = simulate(
        trace,
        policies=args.policy or DEFAULT_POLICIES,
        loads=args.load or [1.0],
        vcs_path=args.vcs,
        nodes=args.nodes,
        only_vcs=args.vc or (),
        start=args.start,
        end=args.end,
    )
    try:
        if args.json:
            for row in rows:
                print(json.dumps(row), flush=True)
        else:
            print(format_table(rows))
    except (ValueError, OSError, KeyError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
