"""Garbage collection for a long-running server process.

CPython's cycle collector runs a full (generation 2) collection whenever the objects that
survived into the oldest generation grew by a quarter since the last one, and a full
collection walks every tracked object: the hundreds of thousands that importing FastAPI,
pydantic and SQLAlchemy and building the app leave behind, plus the scheduler's per-job
caches. Under a steady request load objects of requests in flight are promoted all the
time, so a full collection came every ~550 submits and stopped the process for 130-190 ms
of CPU (the p99 of ``benchmarks/bench_submit.py``; see benchmarks/README.md, session 3).

``settle`` runs once a server process is up: everything alive then (modules, classes,
routes, compiled statements) is moved out of the collector's sight (``gc.freeze``), so no
later collection walks it again. A larger first threshold makes young collections rarer,
so fewer short-lived request objects are still alive (and promoted) when one runs.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "settle"]

GC_THRESHOLDS = (10_000, 10, 10)
"""(allocations between young collections, young collections per middle one, middle
collections per full one); CPython's defaults are (700, 10, 10)."""


def settle() -> None:
    """Collect once, freeze what survives, and raise the collection thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
