"""pier's Ray executor against plain Ray Jobs, and pier's local executor, for trivial jobs.

Starts its own Ray head on 127.0.0.1 (the test fixture's cluster, head only: 2 CPUs), then:

1. **latency**: ``--jobs`` sequential ``true`` jobs, submit -> Succeeded as the client sees it
   (status polled every ``--poll-ms``), interleaved job by job so that load from other
   tenants hits all three alike (1 s pause before each job; plain Ray and pier on Ray take
   turns going first, as Ray pre-starts a worker for the next job after each one):
   - *ray*: ``JobSubmissionClient.submit_job(entrypoint="true")``, ``get_job_status`` polls;
   - *pier-ray*: ``POST /v1/jobs`` to a pier server with ``PIER_EXECUTOR=ray`` on the same
     cluster, ``GET /v1/jobs/{id}`` polls;
   - *pier-local*: the same against a pier server with the local executor.
2. **throughput**: ``--tput-jobs`` jobs submitted back to back, then polled every 0.5 s until
   all are terminal (Ray: ``list_jobs``; pier: its job list), one system after the other.

Figures: p50/p90 latency, jobs/s, the local : Ray ratios, and pier's added latency on Ray
(p50 pier-ray - p50 ray, and as a share of Ray's own; also the median of the per-round
ratios, each pier job against the plain Ray job next to it). Where a Ray job's time went,
on one clock: *before* Ray accepted it (Ray's ``start_time``), *inside* Ray (``start_time``
-> ``end_time``), *after* (``end_time`` -> the client saw it finished); for pier also
*started* (submit -> pier recorded the Ray submit as done: its ``Running`` history entry),
*detect* (Ray's ``end_time`` -> pier recorded the end: the job's ``updated_at``) and
*client* (that -> the client's poll saw it).

    python -m benchmarks.bench_ray [--jobs 20] [--tput-jobs 100 (0: latency only)] [--poll-ms 25]
        [--baseline-src OLD/src (also an older pier on the same cluster, interleaved)]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

from ray.job_submission import JobStatus, JobSubmissionClient
from tests.integration.executors.ray_cluster import ray_cluster

from benchmarks.harness import TERMINAL, ApiClient, PierServer, emit, machine_info

JOB = {"tasks": [{"command": ["true"]}]}
PAUSE = 1.0  # seconds before each measured job
RAY_TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
Runs = dict[str, list[tuple[float, dict[str, float]]]]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": round(statistics.median(values), 3),
        "p90_s": round(_pct(values, 0.9), 3),
        "min_s": round(min(values), 3),
        "max_s": round(max(values), 3),
    }


def _tput(jobs: int, ok: int, submitted: float, wall: float) -> dict[str, float]:
    return {
        "jobs": jobs,
        "succeeded": ok,
        "submit_s": round(submitted, 2),
        "wall_s": round(wall, 2),
        "jobs_per_s": round(jobs / wall, 3),
    }


def _split(
    client: JobSubmissionClient,
    sid: str,
    t0: float,
    seen: float,
    pier: tuple[list[dict[str, Any]], float] | None = None,
) -> dict[str, float]:
    """Where the time went, on one clock: before Ray accepted the job, inside Ray (its own
    start_time -> end_time), and from Ray's end until the client saw the job finished; for
    pier, also when it recorded the start and the end (its history)."""
    info = client.get_job_info(sid)
    start, end = info.start_time / 1000, info.end_time / 1000
    split = {"before": start - t0, "ray": end - start, "after": seen - end}
    if pier is not None:  # its history, and when it wrote the end (not Ray's end_time)
        history, recorded = pier
        running = next(h["created_at"] for h in history if h["status"] == "Running")
        split.update(started=running - t0, detect=recorded - end, client=seen - recorded)
    return split


def ray_once(client: JobSubmissionClient, poll: float) -> tuple[float, dict[str, float]]:
    t0 = time.time()
    sid = client.submit_job(entrypoint="true")
    while client.get_job_status(sid) not in RAY_TERMINAL:
        time.sleep(poll)
    seen = time.time()
    status = client.get_job_status(sid)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"plain Ray job {sid} ended {status}")
    return seen - t0, _split(client, sid, t0, seen)


async def pier_once(
    api: ApiClient, poll: float, ray: JobSubmissionClient | None = None
) -> tuple[float, dict[str, float]]:
    t0 = time.time()
    job = await api.json("POST", "/v1/jobs", JOB, expect=201)
    while job["status"] not in TERMINAL:
        await asyncio.sleep(poll)
        job = await api.json("GET", f"/v1/jobs/{job['id']}")
    seen = time.time()
    if job["status"] != "Succeeded":
        raise RuntimeError(f"pier job {job['id']} ended {job['status']}: {job['message']}")
    if ray is None:
        return seen - t0, {}
    sid = f"pier-{job['id']}-{job['attempt']}-main-0"
    history = await api.json("GET", f"/v1/jobs/{job['id']}/history")
    marks = (history, job["updated_at"])
    return seen - t0, await asyncio.to_thread(_split, ray, sid, t0, seen, marks)


def ray_throughput(client: JobSubmissionClient, jobs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    sids = {client.submit_job(entrypoint="true") for _ in range(jobs)}
    submitted = time.perf_counter() - t0
    while True:
        done = [j for j in client.list_jobs() if j.submission_id in sids]
        if len(done) == jobs and all(j.status in RAY_TERMINAL for j in done):
            break
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    ok = sum(j.status == JobStatus.SUCCEEDED for j in done)
    return _tput(jobs, ok, submitted, wall)


async def pier_throughput(api: ApiClient, jobs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    ids = [(await api.json("POST", "/v1/jobs", JOB, expect=201))["id"] for _ in range(jobs)]
    submitted = time.perf_counter() - t0
    wanted = set(ids)
    while True:
        listed = await api.json("GET", f"/v1/jobs?limit={min(500, jobs + 100)}")
        items = listed["items"] if isinstance(listed, dict) else listed
        mine = [j for j in items if j["id"] in wanted]
        if len(mine) == jobs and all(j["status"] in TERMINAL for j in mine):
            break
        await asyncio.sleep(0.5)
    wall = time.perf_counter() - t0
    ok = sum(j["status"] == "Succeeded" for j in mine)
    return _tput(jobs, ok, submitted, wall)


def _overhead(runs: Runs, stats: dict[str, dict[str, float]], name: str) -> None:
    ray_p50, pier_p50 = stats["ray"]["p50_s"], stats[name]["p50_s"]
    added = pier_p50 - ray_p50
    # Each pier job against the plain Ray job of its round (they ran back to back).
    ratios = [p[0] / r[0] - 1 for p, r in zip(runs[name], runs["ray"], strict=True)]
    emit(
        "ray_overhead",
        system=name,
        added_p50_s=round(added, 3),
        added_share=round(added / ray_p50, 3),
        paired_share_p50=round(statistics.median(ratios), 3),
        local_vs_ray_p50=round(stats["pier_local"]["p50_s"] / ray_p50, 4),
    )


async def measure(jobs: int, tput_jobs: int, poll: float, baseline: str | None) -> None:
    emit("ray_machine", **machine_info(), load_before=os.getloadavg(), baseline_src=baseline)
    with ray_cluster(with_worker=False, head_gpus=0) as cluster, contextlib.ExitStack() as stack:
        client = JobSubmissionClient(cluster.address)
        env = {"PIER_EXECUTOR": "ray", "PIER_RAY_ADDRESS": cluster.address}
        servers = {"pier_ray": PierServer(env=env), "pier_local": PierServer()}
        if baseline is not None:  # the same, from another source tree (an older commit's)
            servers["pier_ray_baseline"] = PierServer(env={**env, "PYTHONPATH": baseline})
        apis: dict[str, ApiClient] = {}
        for name, server in servers.items():
            stack.enter_context(server)
            apis[name] = await ApiClient.open(server.port, server.token)
        ray_api, local_api = apis["pier_ray"], apis["pier_local"]

        async def once(name: str) -> tuple[float, dict[str, float]]:
            if name == "ray":
                return await asyncio.to_thread(ray_once, client, poll)
            return await pier_once(apis[name], poll, None if name == "pier_local" else client)

        on_ray = ["ray", *(name for name in servers if name != "pier_local")]
        for _ in range(2):  # warm-up: Ray's first jobs start its worker pool
            for name in [*on_ray, "pier_local"]:
                await once(name)
        runs: Runs = {name: [] for name in [*on_ray, "pier_local"]}
        for i in range(jobs):
            # Ray pre-starts a worker for the next job after each one: every job gets the
            # same pause before it, and the systems on Ray take turns going first.
            k = i % len(on_ray)
            for name in [*on_ray[k:], *on_ray[:k], "pier_local"]:
                await asyncio.sleep(PAUSE)
                runs[name].append(await once(name))
            print(f"latency {i + 1}/{jobs}", flush=True)
        stats = {name: _stats([r[0] for r in values]) for name, values in runs.items()}
        for name, figures in stats.items():
            split = {
                f"{part}_p50_s": round(statistics.median(r[1][part] for r in runs[name]), 3)
                for part in runs[name][0][1]
            }
            emit("ray_latency", system=name, poll_ms=poll * 1000, **figures, **split)
        for name in on_ray[1:]:
            _overhead(runs, stats, name)
        if tput_jobs > 0:
            await throughput(client, ray_api, local_api, tput_jobs)
        for api in apis.values():
            await api.conn.close()


async def throughput(
    client: JobSubmissionClient, ray_api: ApiClient, local_api: ApiClient, jobs: int
) -> None:
    tput = {
        "pier_local": await pier_throughput(local_api, jobs),
        "ray": await asyncio.to_thread(ray_throughput, client, jobs),
        "pier_ray": await pier_throughput(ray_api, jobs),
    }
    for name, figures in tput.items():
        emit("ray_throughput", system=name, **figures)
    emit(
        "ray_throughput_ratio",
        local_vs_ray=round(tput["pier_local"]["jobs_per_s"] / tput["ray"]["jobs_per_s"], 1),
        pier_ray_vs_ray=round(tput["pier_ray"]["jobs_per_s"] / tput["ray"]["jobs_per_s"], 3),
        load_after=os.getloadavg(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--tput-jobs", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=25.0)
    parser.add_argument(
        "--baseline-src",
        help="also run pier on Ray from this source tree's src/ (e.g. an older commit's, from "
        "git worktree add), interleaved with the others on the same cluster",
    )
    args = parser.parse_args()
    baseline = str(Path(args.baseline_src).resolve()) if args.baseline_src else None
    asyncio.run(measure(args.jobs, args.tput_jobs, args.poll_ms / 1000, baseline))


if __name__ == "__main__":
    main()
