"""Target 5: server memory with 100,000 jobs in the store.

1. A fresh server bootstraps its home (admin, project ``default``); its RSS idle and after an
   (empty) list is the baseline; it is stopped.
2. 100,000 finished jobs are written straight into its database with SQLAlchemy Core, with
   the column values the service writes for a ``true`` job that ran and succeeded (spec as
   ``JobSpec.dump()``, allocation, attempt 1, three history entries), so the server has
   nothing to run.
3. The server is started again on that home: startup time, RSS and CPU use while idle, then
   the first page of ``GET /v1/jobs``, every page (limit 500), and a few ``GET /v1/jobs/{id}``,
   with RSS (and the high-water mark, VmHWM) after each.

    python -m benchmarks.bench_rss [--jobs 100000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from benchmarks.harness import (
    ApiClient,
    PierServer,
    emit,
    machine_info,
    postgres_database,
    py_spy,
)
from benchmarks.loadgen import run, summarize
from pier.spec import JobSpec
from pier.status import JobStatus, Reason
from pier.store.db import Database
from pier.store.tables import history, jobs, name_counters, projects, users

BATCH = 5000
IDLE_S = 10.0


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def insert_jobs(url: str, count: int, node: str) -> float:
    """Write ``count`` succeeded jobs; returns the seconds it took."""
    db = Database(url)
    started = time.perf_counter()
    with db.read() as conn:
        project_id = conn.execute(
            select(projects.c.id).where(projects.c.name == "default")
        ).scalar_one()
        owner_id = conn.execute(select(users.c.id).where(users.c.name == "admin")).scalar_one()
    base = JobSpec.model_validate({"tasks": [{"command": ["true"]}]})
    allocation = [{"task": "main", "index": 0, "node": node, "devices": [], "gpu_fraction": 0.0}]
    t = time.time() - count * 0.01 - 60
    for first in range(0, count, BATCH):
        job_rows: list[dict[str, Any]] = []
        history_rows: list[dict[str, Any]] = []
        for n in range(first + 1, min(first + BATCH, count) + 1):
            job_id = str(uuid.uuid4())
            name = f"job-{n}"
            created, started_at, finished = t, t + 0.01, t + 0.02
            t += 0.01
            job_rows.append(
                {
                    "id": job_id,
                    "project_id": project_id,
                    "owner_id": owner_id,
                    "name": name,
                    "submission_id": None,
                    "kind": base.kind.value,
                    "preemptible": base.is_preemptible,
                    "priority": 0,
                    "gpu": base.total_gpu,
                    "spec": base.model_copy(update={"name": name, "project": "default"}).dump(),
                    "status": JobStatus.SUCCEEDED.value,
                    "reason": Reason.COMPLETED.value,
                    "message": "all replicas exited 0",
                    "exit_code": 0,
                    "attempt": 1,
                    "retries": 0,
                    "allocation": allocation,
                    "created_at": created,
                    "updated_at": finished,
                    "started_at": started_at,
                    "finished_at": finished,
                }
            )
            for status, reason, message, exit_code, attempt, at in (
                (JobStatus.PENDING, Reason.SUBMITTED, "Job submitted", None, 0, created),
                (JobStatus.RUNNING, Reason.STARTED, f"Started on {node}", None, 1, started_at),
                (JobStatus.SUCCEEDED, Reason.COMPLETED, "all replicas exited 0", 0, 1, finished),
            ):
                history_rows.append(
                    {
                        "job_id": job_id,
                        "status": status.value,
                        "reason": reason.value,
                        "message": message,
                        "exit_code": exit_code,
                        "attempt": attempt,
                        "created_at": at,
                    }
                )
        with db.write() as conn:
            conn.execute(insert(jobs), job_rows)
            conn.execute(insert(history), history_rows)
    with db.write() as conn:
        conn.execute(
            insert(name_counters).values(project_id=project_id, prefix="job", next_value=count + 1)
        )
    db.dispose()
    return time.perf_counter() - started


def _sample_rss(server: PierServer, seconds: float) -> list[float]:
    """RSS every 50 ms: a single reading can miss periodic peaks (housekeeping scans)."""
    readings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        readings.append(server.rss_mib())
        time.sleep(0.05)
    return readings


async def _baseline(server: PierServer) -> tuple[dict[str, Any], str]:
    api = await ApiClient.open(server.port, server.token)
    time.sleep(3)
    idle = server.rss_mib()
    await api.json("GET", "/v1/jobs")
    nodes = await api.json("GET", "/v1/nodes")
    await api.close()
    return {"rss_idle_mib": idle, "rss_after_list_mib": server.rss_mib()}, nodes[0]["name"]


async def _loaded(server: PierServer, count: int, profile_dir: Path | None) -> dict[str, Any]:
    api = await ApiClient.open(server.port, server.token)
    time.sleep(3)
    out: dict[str, Any] = {"rss_idle_mib": server.rss_mib()}
    cpu0 = server.cpu_seconds()
    with py_spy(server.pid, profile_dir / "rss_idle.txt" if profile_dir else None):
        rss = _sample_rss(server, IDLE_S)
    out["idle_rss_min_mib"], out["idle_rss_max_mib"] = min(rss), max(rss)
    out["idle_cpu_percent"] = round(100 * (server.cpu_seconds() - cpu0) / IDLE_S, 1)
    with py_spy(server.pid, profile_dir / "rss_list.txt" if profile_dir else None):
        t0 = time.perf_counter()
        first = await api.json("GET", "/v1/jobs")
        out["first_page_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        for _ in range(4):
            await api.json("GET", "/v1/jobs")
    out["rss_after_first_page_mib"] = server.rss_mib()
    page_ms: list[float] = []
    seen: list[str] = []
    cursor: str | None = None
    t_all = time.perf_counter()
    while True:
        path = "/v1/jobs?limit=500" + (f"&cursor={cursor}" if cursor else "")
        t0 = time.perf_counter()
        page = await api.json("GET", path)
        page_ms.append((time.perf_counter() - t0) * 1000)
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    out["all_pages_s"] = round(time.perf_counter() - t_all, 2)
    out["pages"] = len(page_ms)
    out["jobs_listed"] = len(seen)
    out["page_500"] = summarize(page_ms)
    out["rss_after_all_pages_mib"] = server.rss_mib()
    get_ms: list[float] = []
    for job_id in [*random.sample(seen, 5), first["items"][0]["id"]]:
        t0 = time.perf_counter()
        await api.json("GET", f"/v1/jobs/{job_id}")
        get_ms.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    await api.json("GET", f"/v1/jobs/job-{count // 2}")
    get_ms.append((time.perf_counter() - t0) * 1000)
    out["get"] = summarize(get_ms)
    out["rss_after_gets_mib"] = server.rss_mib()
    out["vm_hwm_mib"] = _hwm_mib(server.pid)
    await api.close()
    return out


def measure(count: int, url: str | None, profile_dir: Path | None) -> dict[str, Any]:
    server = PierServer(database_url=url)
    try:
        server.start()
        baseline, node = run(lambda: _baseline(server))
        server.stop()
        db_url = url or f"sqlite:///{server.home / 'pier.db'}"
        insert_s = insert_jobs(db_url, count, node)
        t0 = time.perf_counter()
        server.start(timeout=300)
        startup_s = time.perf_counter() - t0
        loaded = run(lambda: _loaded(server, count, profile_dir))
        db_file = server.home / "pier.db"
        size = db_file.stat().st_size if db_file.exists() else None
    finally:
        server.cleanup()
    return {
        "jobs": count,
        "insert_s": round(insert_s, 1),
        "startup_s": round(startup_s, 2),
        "sqlite_file_mib": round(size / 2**20, 1) if size else None,
        "empty": baseline,
        "loaded": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="run on a fresh database")
    parser.add_argument("--profile-dir", type=Path, help="py-spy idle and listing into here")
    args = parser.parse_args()
    backend = "postgresql" if args.postgres else "sqlite"
    if args.postgres:
        with postgres_database(args.postgres) as url:
            result = measure(args.jobs, url, args.profile_dir)
    else:
        result = measure(args.jobs, None, args.profile_dir)
    emit("rss", backend=backend, machine=machine_info(), **result)
    e, lo = result["empty"], result["loaded"]
    print(
        f"rss [{backend}] empty server {e['rss_idle_mib']} MiB idle; with {args.jobs} jobs: "
        f"{lo['rss_idle_mib']} MiB idle (sampled every 50 ms for {IDLE_S:g} s: "
        f"{lo['idle_rss_min_mib']}-{lo['idle_rss_max_mib']} MiB; {lo['idle_cpu_percent']}% CPU), "
        f"{lo['rss_after_first_page_mib']} MiB after the first page ({lo['first_page_ms']} ms), "
        f"{lo['rss_after_all_pages_mib']} MiB after listing all {lo['jobs_listed']} "
        f"({lo['all_pages_s']} s), {lo['rss_after_gets_mib']} MiB after gets "
        f"(p50 {lo['get']['p50_ms']} ms); VmHWM {lo['vm_hwm_mib']} MiB; "
        f"insert {result['insert_s']} s, startup {result['startup_s']} s"
    )


if __name__ == "__main__":
    main()
