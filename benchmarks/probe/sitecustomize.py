"""Latency probe for the server under benchmark (``bench_submit --trace DIR``).

Put on ``PYTHONPATH`` of the server (and so of its spawned worker processes), this module is
imported by Python at start-up. When ``PIER_BENCH_TRACE`` names a folder it records, per
process, with ``time.perf_counter_ns`` (one clock for the whole machine):

- every garbage collection (generation, duration, CPU time of the collecting thread);
- every HTTP request inside the app (start, end), and every service call (with group
  commit, one per batch of submits);
- every SQLite write transaction: time waiting for the write locks, time holding them;
- every control-loop pass (duration, full or incremental);
- event-loop lag: a task sleeping 1 ms, recording when it woke more than 2 ms late;
- the process's CPU time, every 100 ms.

and writes ``trace-<pid>.json`` into that folder when the process exits. Without the
variable it does nothing. Not for production: only the benchmarks put it on the path.
"""

from __future__ import annotations

import os

if os.environ.get("PIER_BENCH_TRACE"):
    import pier_probe  # noqa: F401 - installs itself
