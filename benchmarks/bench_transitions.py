"""In-process CPU of the runtime's store writes for trivial jobs: claim, mark_started and
apply_outcomes on a real database, in batches as the control loop does them.

    python -m benchmarks.bench_transitions [--jobs 2000] [--batch 16] [--database-url URL]

No HTTP, no processes: CPU seconds (``time.process_time``) of this process per job for each
step; SQLite in a temporary directory unless ``--database-url`` names another database.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from pier.attempts import AttemptState, Outcome, Verdict
from pier.scheduler.types import Admission, JobRequest, Placement, Snapshot
from pier.services import execution
from pier.services.snapshot import CycleInputs
from pier.spec import JobSpec, TaskRole
from pier.status import JobStatus
from pier.store.db import Database
from pier.store.migrate import upgrade
from pier.store.tables import jobs, projects, users

SPEC = JobSpec(tasks=[TaskRole(command=["true"])])


def _seed(db: Database, n: int) -> list[str]:
    ids = [f"job-{i:06d}" for i in range(n)]
    now = time.time()
    with db.write() as conn:
        conn.execute(
            insert(projects).values(id="p", name="p", gpu_quota=0, node_pools=[], created_at=now)
        )
        conn.execute(
            insert(users).values(
                id="u", name="u", password_hash="x", is_admin=False, created_at=now
            )
        )
        conn.execute(
            insert(jobs),
            [
                {
                    "id": job_id,
                    "project_id": "p",
                    "owner_id": "u",
                    "name": job_id,
                    "kind": "train",
                    "preemptible": True,
                    "priority": 0,
                    "gpu": 0.0,
                    "spec": SPEC.dump(),
                    "status": JobStatus.PENDING.value,
                    "attempt": 0,
                    "retries": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for job_id in ids
            ],
        )
    return ids


def _timed(db: Database, fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """CPU seconds of one write transaction running ``fn(conn, *args)``, and its result."""
    t0 = time.process_time()
    with db.write() as conn:
        result = fn(conn, *args)
    return time.process_time() - t0, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pier-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'pier.db'}"
        db = Database(url)
        upgrade(db.engine)
        ids = _seed(db, args.jobs)
        cpu = {"claim": 0.0, "mark_started": 0.0, "apply_outcomes": 0.0}
        for start in range(0, len(ids), args.batch):
            batch = ids[start : start + args.batch]
            now = time.time()
            inputs = CycleInputs(
                snapshot=Snapshot(
                    now=now,
                    nodes=(),
                    projects={},
                    pending=tuple(JobRequest(j, "p", now, ()) for j in batch),
                ),
                specs={j: SPEC for j in batch},
                names={j: j for j in batch},
                to_stop=[],
            )
            admissions = [Admission(j, (Placement("main", 0, "n"),)) for j in batch]
            spent, launches = _timed(db, execution.claim, admissions, inputs, now)
            cpu["claim"] += spent
            spent, _ = _timed(db, execution.mark_started, launches, [], now)
            cpu["mark_started"] += spent
            decided = []
            for launch in launches:
                state = AttemptState(launch.job_id, launch.attempt, SPEC)
                state.record_exit("main-0", 0, at=now)
                decided.append((state, Outcome(Verdict.SUCCEEDED, 0, "Completed", "done")))
            spent, _ = _timed(db, execution.apply_outcomes, decided, now)
            cpu["apply_outcomes"] += spent
        db.dispose()
    total = sum(cpu.values())
    parts = ", ".join(f"{k} {1000 * v / args.jobs:.3f}" for k, v in cpu.items())
    print(f"CPU ms per job (batch {args.batch}): {parts}; total {1000 * total / args.jobs:.3f}")


if __name__ == "__main__":
    main()
