"""Target 2: a trivial job (``true``), submit -> Succeeded, one job at a time.

Two passes over a fresh server:

- ``poll``: the client times from just before the POST until a GET shows the job finished,
  polling every ``--poll-ms`` on a keep-alive connection (the client-observed figure);
- ``quiet``: the client submits, sleeps, then reads the job once, so no polling competes with
  the server for the CPU; only the server's own timestamps count.

Both report the server's ``finished_at - created_at`` (and its split at ``started_at``).

    python -m benchmarks.bench_latency [--jobs 100] [--poll-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import TERMINAL, ApiClient, PierServer, emit, machine_info, py_spy
from benchmarks.loadgen import run, summarize

JOB = {"tasks": [{"command": ["true"]}]}
WARMUP = 5


async def _one(api: ApiClient, poll_s: float | None) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    job = await api.json("POST", "/v1/jobs", JOB, expect=201)
    if poll_s is None:
        await asyncio.sleep(0.5)
        job = await api.wait_status(job["id"], TERMINAL, poll=0.05)
        return job, 0.0
    path = f"/v1/jobs/{job['id']}"
    while job["status"] not in TERMINAL:
        if poll_s > 0:
            await asyncio.sleep(poll_s)
        job = await api.json("GET", path)
    return job, (time.perf_counter() - t0) * 1000


async def measure(
    server: PierServer, jobs: int, poll_s: float | None, profile: Path | None
) -> dict[str, Any]:
    api = await ApiClient.open(server.port, server.token)
    for _ in range(WARMUP):
        await _one(api, 0.005)
    client_ms: list[float] = []
    server_ms: list[float] = []
    to_start_ms: list[float] = []
    run_ms: list[float] = []
    statuses: dict[str, int] = {}
    with py_spy(server.pid, profile):
        for _ in range(jobs):
            job, wall_ms = await _one(api, poll_s)
            statuses[job["status"]] = statuses.get(job["status"], 0) + 1
            if poll_s is not None:
                client_ms.append(wall_ms)
            server_ms.append((job["finished_at"] - job["created_at"]) * 1000)
            to_start_ms.append((job["started_at"] - job["created_at"]) * 1000)
            run_ms.append((job["finished_at"] - job["started_at"]) * 1000)
    await api.close()
    return {
        "jobs": jobs,
        "statuses": statuses,
        "client_submit_to_succeeded": summarize(client_ms),
        "server_created_to_finished": summarize(server_ms),
        "server_created_to_started": summarize(to_start_ms),
        "server_started_to_finished": summarize(run_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--quiet-jobs", type=int, default=30)
    parser.add_argument("--poll-ms", type=float, default=2.0, help="sleep between GETs")
    parser.add_argument("--database-url", help="default: SQLite in the server's home")
    parser.add_argument("--workers", type=int, default=1, help="the server's PIER_WORKERS")
    parser.add_argument("--profile", type=Path, help="py-spy the server (poll pass)")
    args = parser.parse_args()
    backend = "postgresql" if args.database_url else "sqlite"
    env = {"PIER_WORKERS": str(args.workers)}
    with PierServer(database_url=args.database_url, env=env) as server:
        polled = run(lambda: measure(server, args.jobs, args.poll_ms / 1000, args.profile))
        quiet = run(lambda: measure(server, args.quiet_jobs, None, None))
    machine = machine_info()
    emit(
        "latency",
        mode="poll",
        poll_ms=args.poll_ms,
        workers=args.workers,
        backend=backend,
        machine=machine,
        **polled,
    )
    emit("latency", mode="quiet", workers=args.workers, backend=backend, machine=machine, **quiet)
    c, s = polled["client_submit_to_succeeded"], polled["server_created_to_finished"]
    q = quiet["server_created_to_finished"]
    st, rn = polled["server_created_to_started"], polled["server_started_to_finished"]
    print(
        f"latency [{backend}] true submit->Succeeded over {args.jobs} jobs: client p50 "
        f"{c['p50_ms']} ms (p99 {c['p99_ms']}), server p50 {s['p50_ms']} ms "
        f"(created->started {st['p50_ms']}, started->finished {rn['p50_ms']}); "
        f"without polling: server p50 {q['p50_ms']} ms (p99 {q['p99_ms']})"
    )


if __name__ == "__main__":
    main()
