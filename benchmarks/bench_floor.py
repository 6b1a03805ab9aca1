"""Where a request's time goes: the same closed loop (16 clients) against cheaper endpoints.

- ``GET /v1/health``: no auth, no database: uvicorn + FastAPI + one thread-pool hop;
- ``GET /v1/jobs/{id}``: + bearer-token lookup + a read transaction + a JobView;
- ``POST /v1/jobs``: + the write transaction and a scheduler wake (as in ``bench_submit``);
- the in-process service call ``services.submits.submit_job`` in a loop, no HTTP, no scheduler:
  the floor of the durable write itself.

Server CPU per request (psutil) is the comparable figure; rates depend on the neighbours.

    python -m benchmarks.bench_floor [--requests 3000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from benchmarks.harness import (
    HOST,
    TERMINAL,
    ApiClient,
    CpuMeter,
    PierServer,
    emit,
    machine_info,
    py_spy,
)
from benchmarks.loadgen import build_request, closed_loop, run, summarize
from pier.services import submits
from pier.services.context import Principal, ServiceContext
from pier.spec import JobSpec
from pier.store.db import Database
from pier.store.tables import users

JOB = {"tasks": [{"command": ["true"], "resources": {"gpu": 1}}]}
BLOCKER = {"name": "blocker", "tasks": [{"command": ["sleep", "600"], "resources": {"gpu": 1}}]}


async def _endpoints(
    server: PierServer, requests: int, concurrency: int, profile_dir: Path | None
) -> list[dict[str, Any]]:
    api = await ApiClient.open(server.port, server.token)
    blocker = await api.json("POST", "/v1/jobs", BLOCKER, expect=201)
    host = f"{HOST}:{server.port}"
    cases = [
        ("GET /v1/health", build_request("GET", "/v1/health", host=host)),
        (
            "GET /v1/jobs/{id}",
            build_request("GET", f"/v1/jobs/{blocker['id']}", host=host, token=server.token),
        ),
        (
            "POST /v1/jobs",
            build_request(
                "POST", "/v1/jobs", host=host, token=server.token, body=json.dumps(JOB).encode()
            ),
        ),
    ]
    results = []
    try:
        for n, (label, raw) in enumerate(cases):
            await closed_loop(HOST, server.port, raw, 200, concurrency)  # warm-up
            profile = profile_dir / f"floor_{n}.txt" if profile_dir else None
            with py_spy(server.pid, profile):
                cpu0 = server.cpu_seconds()
                meter = CpuMeter()
                t0 = time.perf_counter()
                samples = await closed_loop(HOST, server.port, raw, requests, concurrency)
                wall = time.perf_counter() - t0
            cpu = server.cpu_seconds() - cpu0
            busy = meter.read()
            ok = sum(1 for s in samples if 200 <= s.status < 300)
            results.append(
                {
                    "case": label,
                    "requests": requests,
                    "ok": ok,
                    "per_s": round(ok / wall, 1),
                    "server_cpu_ms_per_request": round(1000 * cpu / requests, 3),
                    **summarize([s.latency_ms for s in samples]),
                    **busy,
                }
            )
    finally:
        await api.json("POST", f"/v1/jobs/{blocker['id']}/stop")
        await api.wait_status(blocker["id"], TERMINAL)
        await api.close()
    return results


def _in_process(home: Path, requests: int) -> dict[str, Any]:
    """``submit_job`` called directly against the server's (stopped) SQLite database."""
    db = Database(f"sqlite:///{home / 'pier.db'}")
    ctx = ServiceContext(db=db)
    with db.read() as conn:
        admin = conn.execute(select(users).where(users.c.name == "admin")).one()
    caller = Principal(admin.id, admin.name, admin.is_admin, admin.default_project_id)
    spec = JobSpec.model_validate(JOB)
    for _ in range(100):
        submits.submit_job(ctx, caller, spec)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(requests):
        submits.submit_job(ctx, caller, spec)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    db.dispose()
    return {
        "case": "services.submits.submit_job in-process (1 thread)",
        "requests": requests,
        "per_s": round(requests / wall, 1),
        "server_cpu_ms_per_request": round(1000 * cpu / requests, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile-dir", type=Path, help="py-spy each case into floor_N.txt")
    args = parser.parse_args()
    server = PierServer(local_gpus=1)
    try:
        server.start()
        results = run(lambda: _endpoints(server, args.requests, args.concurrency, args.profile_dir))
        server.stop()
        results.append(_in_process(server.home, args.requests))
    finally:
        server.cleanup()
    machine = machine_info()
    for r in results:
        emit("floor", machine=machine, **r)
        print(
            f"floor {r['case']}: {r['per_s']}/s, server CPU {r['server_cpu_ms_per_request']} "
            f"ms/request"
            + (f", p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms" if "p50_ms" in r else "")
        )


if __name__ == "__main__":
    main()
