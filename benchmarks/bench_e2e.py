"""Target 3: 1,000 trivial jobs (``true``) end to end.

All jobs are submitted by 16 concurrent keep-alive clients; the client then polls one cheap
query (``status=Pending&status=Running&status=Unknown&limit=1``) until nothing is left, and
finally pages through the jobs to read the server's timestamps. Throughput is given twice:
``jobs / (last finished_at - first created_at)`` (server clock) and ``jobs / client wall``
(first POST sent to the empty queue observed).

    python -m benchmarks.bench_e2e [--jobs 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import HOST, ApiClient, CpuMeter, PierServer, emit, machine_info, py_spy
from benchmarks.loadgen import build_request, closed_loop, run, summarize

JOB = {"tasks": [{"command": ["true"]}]}
ACTIVE = "/v1/jobs?status=Pending&status=Running&status=Unknown&limit=1"


async def _all_jobs(api: ApiClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        path = "/v1/jobs?limit=500" + (f"&cursor={cursor}" if cursor else "")
        page = await api.json("GET", path)
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def measure(
    server: PierServer, jobs: int, concurrency: int, poll_s: float, profile: Path | None
) -> dict[str, Any]:
    raw = build_request(
        "POST",
        "/v1/jobs",
        host=f"{HOST}:{server.port}",
        token=server.token,
        body=json.dumps(JOB).encode(),
    )
    api = await ApiClient.open(server.port, server.token)
    cpu0 = server.cpu_seconds()
    by_process0 = server.cpu_by_process()
    children0 = server.children_cpu_seconds()
    client0 = time.process_time()
    meter = CpuMeter()
    with py_spy(server.pid, profile):
        t0 = time.time()
        samples = await closed_loop(HOST, server.port, raw, jobs, concurrency, keep_body=True)
        t_submitted = time.time()
        while (await api.json("GET", ACTIVE))["items"]:
            await asyncio.sleep(poll_s)
        t_done = time.time()
    cpu = server.cpu_seconds() - cpu0
    by_process = {
        pid: round(1000 * (spent - by_process0.get(pid, 0.0)) / jobs, 2)
        for pid, spent in server.cpu_by_process().items()
    }
    children = server.children_cpu_seconds() - children0
    client = time.process_time() - client0
    busy = meter.read()
    ids = {json.loads(s.body or b"{}").get("id") for s in samples if s.status == 201}
    views = [j for j in await _all_jobs(api) if j["id"] in ids]
    await api.close()
    statuses = Counter(j["status"] for j in views)
    first_created = min(j["created_at"] for j in views)
    last_finished = max(j["finished_at"] or 0.0 for j in views)
    server_span = last_finished - first_created
    return {
        "jobs": jobs,
        "concurrency": concurrency,
        "submit_statuses": dict(Counter(str(s.status) for s in samples)),
        "job_statuses": dict(statuses),
        "submit_wall_s": round(t_submitted - t0, 3),
        "submits_per_s": round(jobs / (t_submitted - t0), 1),
        "submit_latency": summarize([s.latency_ms for s in samples]),
        "server_span_s": round(server_span, 3),
        "jobs_per_s_server": round(statuses.get("Succeeded", 0) / server_span, 1),
        "client_wall_s": round(t_done - t0, 3),
        "jobs_per_s_client": round(statuses.get("Succeeded", 0) / (t_done - t0), 1),
        "created_to_finished": summarize(
            [1000 * (j["finished_at"] - j["created_at"]) for j in views if j["finished_at"]]
        ),
        **busy,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_ms_per_job": round(1000 * cpu / jobs, 2),
        "server_cpu_ms_per_job_by_process": by_process,
        "supervisor_cpu_ms_per_job": round(1000 * children / jobs, 2),
        "client_cpu_ms_per_job": round(1000 * client / jobs, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--poll-ms", type=float, default=50.0)
    parser.add_argument("--database-url", help="default: SQLite in the server's home")
    parser.add_argument("--workers", type=int, default=1, help="the server's PIER_WORKERS")
    parser.add_argument("--profile", type=Path, help="py-spy the server into this file")
    args = parser.parse_args()
    backend = "postgresql" if args.database_url else "sqlite"
    env = {"PIER_WORKERS": str(args.workers)}
    with PierServer(database_url=args.database_url, env=env) as server:
        result = run(
            lambda: measure(server, args.jobs, args.concurrency, args.poll_ms / 1000, args.profile)
        )
    emit("e2e", backend=backend, workers=args.workers, machine=machine_info(), **result)
    print(
        f"e2e [{backend}] {args.jobs} x true: {result['jobs_per_s_server']} jobs/s (server "
        f"clock, {result['server_span_s']} s), {result['jobs_per_s_client']} jobs/s (client "
        f"wall, {result['client_wall_s']} s); submits {result['submits_per_s']}/s; "
        f"statuses {result['job_statuses']}; CPU per job: server "
        f"{result['server_cpu_ms_per_job']} ms, supervisors + jobs "
        f"{result['supervisor_cpu_ms_per_job']} ms, client {result['client_cpu_ms_per_job']} ms"
    )


if __name__ == "__main__":
    main()
