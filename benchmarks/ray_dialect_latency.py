"""Ray Jobs dialect, measured the way /work/shared/reference/ray-jobs-api.md §3 measured Ray:
the stock JobSubmissionClient against a real pier server (SQLite, local executor).

    .venv/bin/python benchmarks/ray_dialect_latency.py [N_LATENCY] [N_BURST]

Latency: N sequential jobs ``true``; submit, then poll ``get_job_status`` every 25 ms.
Burst: N ``submit_job`` calls back to back, then ``list_jobs`` every 0.5 s until all ended.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray.job_submission import JobStatus, JobSubmissionClient
from tests.integration.conftest import make_settings, serving


def main(n_latency: int, n_burst: int) -> None:
    home = Path(tempfile.mkdtemp())
    settings = make_settings(home / "home", f"sqlite:///{home / 'pier.db'}")
    with serving(settings) as api:
        url = str(api.client.base_url).rstrip("/")
        client = JobSubmissionClient(url, headers=api.headers())
        submit_ms, done_s = [], []
        for i in range(n_latency + 2):
            t0 = time.perf_counter()
            sid = client.submit_job(entrypoint="true", submission_id=f"lat-{i}")
            t1 = time.perf_counter()
            while not client.get_job_status(sid).is_terminal():
                time.sleep(0.025)
            if i >= 2:  # two warm-up jobs
                submit_ms.append((t1 - t0) * 1000)
                done_s.append(time.perf_counter() - t0)
        print(
            f"latency n={n_latency}: submit_job median {statistics.median(submit_ms):.1f} ms; "
            f"submit->terminal seen median {statistics.median(done_s):.3f} s, "
            f"max {max(done_s):.3f} s"
        )
        t0 = time.perf_counter()
        ids = {
            client.submit_job(entrypoint="true", submission_id=f"burst-{i}") for i in range(n_burst)
        }
        t_submit = time.perf_counter() - t0
        while True:
            jobs = {j.submission_id: j.status for j in client.list_jobs() if j.submission_id in ids}
            if all(
                s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
                for s in jobs.values()
            ):
                break
            time.sleep(0.5)
        total = time.perf_counter() - t0
        ok = sum(s == JobStatus.SUCCEEDED for s in jobs.values())
        print(
            f"burst n={n_burst}: submit phase {t_submit:.2f} s, all ended after {total:.2f} s "
            f"({n_burst / total:.1f} jobs/s), {ok}/{n_burst} succeeded"
        )


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 20,
        int(sys.argv[2]) if len(sys.argv) > 2 else 100,
    )
