"""Target 4 (peer): the same two figures on Slurm, started by ``/work/shared/peers/slurm-up.sh``.

- latency: ``sbatch --wrap true`` -> COMPLETED, one job at a time, polling ``squeue`` every
  ``--poll-ms`` (client wall clock; Slurm's own timestamps have one-second resolution);
- throughput: N jobs submitted by 16 concurrent ``sbatch`` processes, then ``squeue`` polled
  until all are COMPLETED; once as submitted (one CPU per job: 2 at a time on 2 cores) and once
  with ``--oversubscribe`` (the partition allows 8 jobs per CPU), which is closer to pier,
  whose local executor reserves no CPU for a job that asks none.

Jobs are keyed on names unique to this run (job ids can repeat after a controller restart);
``sacct`` is absent, so only ``squeue`` is polled.

    python -m benchmarks.bench_slurm [--latency-jobs 20] [--jobs 200] [--oversubscribe-jobs 1000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from benchmarks.harness import emit, machine_info
from benchmarks.loadgen import summarize

DONE = frozenset({"COMPLETED"})
ENDED = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL"}
)


def _sbatch(name: str, *extra: str) -> str:
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-J",
            name,
            "-o",
            "/dev/null",
            "-D",
            "/tmp",
            *extra,
            "--wrap",
            "true",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _states(name: str) -> Counter[str]:
    out = subprocess.run(
        ["squeue", "-h", "--states=all", "-n", name, "-o", "%T"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Counter(out.stdout.split())


def latency(run_id: str, jobs: int, poll_s: float) -> dict[str, object]:
    walls: list[float] = []
    final: Counter[str] = Counter()
    for i in range(-2, jobs):  # two unmeasured warm-up jobs
        name = f"pb-{run_id}-lat{i}"
        t0 = time.perf_counter()
        _sbatch(name)
        while True:
            states = _states(name)
            if states and set(states) <= ENDED:
                break
            time.sleep(poll_s)
        if i >= 0:
            walls.append((time.perf_counter() - t0) * 1000)
            final.update(states)
    return {"jobs": jobs, "poll_ms": poll_s * 1000, "states": dict(final), **summarize(walls)}


def throughput(
    run_id: str, jobs: int, concurrency: int, extra: tuple[str, ...], timeout: float
) -> dict[str, object]:
    name = f"pb-{run_id}-tput{'-os' if extra else ''}"
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: _sbatch(name, *extra), range(jobs)))
    t_submitted = time.perf_counter()
    while True:
        states = _states(name)
        if sum(states[s] for s in ENDED) >= jobs:
            break
        if time.perf_counter() - t0 > timeout:
            break
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    return {
        "jobs": jobs,
        "options": list(extra),
        "concurrency": concurrency,
        "states": dict(states),
        "submit_wall_s": round(t_submitted - t0, 3),
        "submits_per_s": round(jobs / (t_submitted - t0), 1),
        "client_wall_s": round(wall, 3),
        "jobs_per_s_client": round(states["COMPLETED"] / wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--oversubscribe-jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    machine = machine_info()
    if shutil.which("sbatch") is None:
        emit("slurm", error="sbatch not found: start Slurm with slurm-up.sh", machine=machine)
        raise SystemExit(1)
    probe = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() not in ("idle", "mixed", "allocated"):
        emit("slurm", error=f"node not ready: {probe.stdout!r} {probe.stderr!r}", machine=machine)
        raise SystemExit(1)
    run_id = uuid.uuid4().hex[:8]
    lat = latency(run_id, args.latency_jobs, args.poll_ms / 1000)
    emit("slurm_latency", machine=machine, **lat)
    print(f"slurm latency sbatch --wrap true -> COMPLETED: p50 {lat['p50_ms']} ms over {lat['n']}")
    runs = [((), args.jobs), (("--oversubscribe",), args.oversubscribe_jobs)]
    for extra, jobs in runs:
        if jobs <= 0:
            continue
        tput = throughput(run_id, jobs, args.concurrency, extra, args.timeout)
        emit("slurm_throughput", machine=machine, **tput)
        print(
            f"slurm throughput {jobs} x true {' '.join(extra)}: {tput['jobs_per_s_client']} "
            f"jobs/s ({tput['client_wall_s']} s), submits {tput['submits_per_s']}/s, "
            f"states {tput['states']}"
        )


if __name__ == "__main__":
    main()
