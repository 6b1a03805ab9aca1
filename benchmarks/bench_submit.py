"""Target 1: durable submits through REST, 16 concurrent keep-alive clients.

A fresh server with one (simulated) GPU; a blocker job (``sleep``, 1 GPU) holds the GPU, so
every measured submit (``true``, 1 GPU) is written, acknowledged and then stays Pending: the
figure is the durable write path (auth, validation, one transaction, the 201 body), not job
execution. The queue grows by every submit, so the scheduler passes each submit triggers
are part of the cost, as they would be in production.

    python -m benchmarks.bench_submit [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from benchmarks.harness import (
    HOST,
    TERMINAL,
    ApiClient,
    CpuMeter,
    PierServer,
    emit,
    machine_info,
    probe_env,
    py_spy,
)
from benchmarks.harness import postgres_database as _pg
from benchmarks.loadgen import build_request, closed_loop, run, summarize
from benchmarks.trace_summary import render, summarise

JOB = {"tasks": [{"command": ["true"], "resources": {"gpu": 1}}]}
BLOCKER = {"name": "blocker", "tasks": [{"command": ["sleep", "600"], "resources": {"gpu": 1}}]}


@contextlib.contextmanager
def _database(postgres: str | None) -> Iterator[str | None]:
    if postgres is None:
        yield None
    else:
        with _pg(postgres) as url:
            yield url


def _client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def measure(
    server: PierServer, total: int, warmup: int, concurrency: int, profile: Path | None
) -> dict[str, object]:
    api = await ApiClient.open(server.port, server.token)
    blocker = await api.json("POST", "/v1/jobs", BLOCKER, expect=201)
    await api.wait_status(blocker["id"], frozenset({"Running"}))
    raw = build_request(
        "POST",
        "/v1/jobs",
        host=f"{HOST}:{server.port}",
        token=server.token,
        body=json.dumps(JOB).encode(),
    )
    try:
        await closed_loop(HOST, server.port, raw, warmup, concurrency)
        cpu_server, cpu_client = server.cpu_seconds(), _client_cpu()
        meter = CpuMeter()
        with py_spy(server.pid, profile):
            t0 = time.perf_counter()
            window_start = time.perf_counter_ns()
            samples = await closed_loop(HOST, server.port, raw, total, concurrency)
            window_end = time.perf_counter_ns()
            wall = time.perf_counter() - t0
        cpu_server, cpu_client = server.cpu_seconds() - cpu_server, _client_cpu() - cpu_client
        busy = meter.read()
    finally:
        # the blocker's process outlives the server by design: stop it through the API
        await api.json("POST", f"/v1/jobs/{blocker['id']}/stop")
        await api.wait_status(blocker["id"], TERMINAL)
        await api.close()
    statuses = Counter(s.status for s in samples)
    latencies = [s.latency_ms for s in samples]
    first = samples[0].start_ns if samples else 0
    # throughput per second of the run: shows whether it degrades as the queue grows
    per_second = Counter(int((s.end_ns - first) // 1_000_000_000) for s in samples)
    return {
        "requests": total,
        "concurrency": concurrency,
        "warmup": warmup,
        "statuses": {str(k): v for k, v in statuses.items()},
        "wall_s": round(wall, 3),
        "submits_per_s": round(statuses.get(201, 0) / wall, 1),
        **summarize(latencies),
        "per_second": [per_second[i] for i in range(max(per_second) + 1)] if per_second else [],
        **busy,
        "server_cpu_s": round(cpu_server, 2),
        "client_cpu_s": round(cpu_client, 2),
        "server_cpu_ms_per_submit": round(1000 * cpu_server / total, 3),
        "window_ns": [window_start, window_end],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--postgres", metavar="ADMIN_URL", help="run on a fresh database on this server"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the server into this file")
    parser.add_argument("--workers", type=int, default=1, help="the server's PIER_WORKERS")
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="DIR",
        help="record server-side timings (benchmarks/probe) into DIR and summarise them",
    )
    args = parser.parse_args()
    backend = "postgresql" if args.postgres else "sqlite"
    env = {"PIER_WORKERS": str(args.workers)}
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
        env.update(probe_env(args.trace))
    with (
        _database(args.postgres) as url,
        PierServer(database_url=url, local_gpus=1, env=env) as server,
    ):
        result = run(
            lambda: measure(server, args.requests, args.warmup, args.concurrency, args.profile)
        )
    emit("submit", backend=backend, workers=args.workers, machine=machine_info(), **result)
    print(
        f"submit [{backend}, {args.workers} worker(s)] {result['submits_per_s']} submits/s "
        f"over {args.requests} requests, "
        f"{args.concurrency} clients: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
        f"(server CPU {result['server_cpu_ms_per_submit']} ms/submit, "
        f"client CPU {result['client_cpu_s']} s)"
    )
    if args.trace:
        start, end = result["window_ns"]  # type: ignore[misc]
        print(render(summarise(args.trace, start, end)))


if __name__ == "__main__":
    main()
