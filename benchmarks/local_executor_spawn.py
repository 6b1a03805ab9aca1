"""Micro-benchmark: LocalExecutor start -> exit-event latency and throughput for `true` jobs.

    python benchmarks/local_executor_spawn.py [-n 500] [--command true]

Two runs over the same executor:
- sequential: start one replica, wait for its ReplicaExited, repeat (latency without load);
- burst: start all N back to back (yielding to the loop once between starts, as a server
  does between requests) while a task consumes events: throughput, and latency under load.
Latency is from just before ``start()`` to the moment the exit event is read from
``events()``; it covers Popen, bash + supervisor.sh, the job, the records and the pidfd wake-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from pier.executors import LocalExecutor
from pier.executors.base import LaunchRequest, NodeInfo, ReplicaExited, ReplicaPlacement
from pier.spec import JobSpec, TaskRole

NODE = NodeInfo(name="bench", cpus=float(os.cpu_count() or 1), memory_bytes=0)


def launch(job_id: str, command: list[str]) -> LaunchRequest:
    spec = JobSpec(tasks=[TaskRole(command=command)])
    return LaunchRequest(job_id, 1, spec, (ReplicaPlacement("main", 0, NODE.name),))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds() -> float:
    """CPU time of this process and every reaped descendant (supervisors and their jobs)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def report(name: str, latencies: list[float], elapsed: float, cpu: float) -> None:
    ms = [v * 1000 for v in latencies]
    print(
        f"{name:<10} n={len(ms):<5} p50={percentile(ms, 0.5):6.2f} ms  "
        f"p99={percentile(ms, 0.99):6.2f} ms  max={max(ms):6.2f} ms  "
        f"mean={statistics.fmean(ms):6.2f} ms  throughput={len(ms) / elapsed:7.1f} jobs/s"
    )
    # CPU per job does not depend on what else the machine runs: cores / it bounds jobs/s
    print(f"{'':<10} CPU {cpu / len(ms) * 1000:.2f} ms per job (server + supervisor + job)")


async def sequential(ex: LocalExecutor, n: int, command: list[str]) -> None:
    events = ex.events()
    latencies = []
    begin, cpu = time.perf_counter(), cpu_seconds()
    for i in range(n):
        t0 = time.perf_counter()
        await ex.start(launch(f"seq-{i}", command))
        while not isinstance(await anext(events), ReplicaExited):
            pass
        latencies.append(time.perf_counter() - t0)
    report("sequential", latencies, time.perf_counter() - begin, cpu_seconds() - cpu)


async def burst(ex: LocalExecutor, n: int, command: list[str]) -> None:
    started: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def consume() -> None:
        async for event in ex.events():
            if isinstance(event, ReplicaExited):
                latencies.append(time.perf_counter() - started[event.key.job_id])
                if len(latencies) == n:
                    done.set()
                    return

    consumer = asyncio.create_task(consume())
    begin, cpu = time.perf_counter(), cpu_seconds()
    spawn_time = 0.0
    for i in range(n):
        job_id = f"burst-{i}"
        started[job_id] = t0 = time.perf_counter()
        await ex.start(launch(job_id, command))
        spawn_time += time.perf_counter() - t0
        await asyncio.sleep(0)  # as a server between requests: let exits be handled
    await done.wait()
    elapsed = time.perf_counter() - begin
    await consumer
    report("burst", latencies, elapsed, cpu_seconds() - cpu)
    print(f"{'':<10} start() cost {spawn_time / n * 1000:.2f} ms per replica (inline Popen)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--command", default="true")
    parser.add_argument("--tmp", default=None, help="where the runs dir goes (default: $TMPDIR)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, command {args.command!r}, N={args.n}, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="pier-bench-", dir=args.tmp) as tmp:
        ex = LocalExecutor(Path(tmp), NODE)
        try:
            await sequential(ex, args.n, args.command.split())
            await burst(ex, args.n, args.command.split())
        finally:
            await ex.close()


if __name__ == "__main__":
    asyncio.run(main())
