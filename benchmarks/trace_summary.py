"""Summarise the server-side traces of ``benchmarks/probe`` over a measured window: where
the latency of the requests went (GC pauses, write-lock waits, control-loop passes,
event-loop lag), per server process.

    python -m benchmarks.trace_summary DIR [--from NS --to NS]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.loadgen import percentile

__all__ = ["summarise"]


def _ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def _dist(values_ns: list[int]) -> dict[str, float]:
    if not values_ns:
        return {"n": 0}
    return {
        "n": len(values_ns),
        "p50_ms": _ms(percentile(values_ns, 50)),
        "p99_ms": _ms(percentile(values_ns, 99)),
        "max_ms": _ms(max(values_ns)),
        "total_ms": _ms(sum(values_ns)),
    }


def _process(trace: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    def inside(rows: list[list[Any]]) -> list[list[Any]]:
        return [r for r in rows if start <= r[0] <= end]

    gc_rows = inside(trace["gc"])
    out: dict[str, Any] = {"pid": trace["pid"]}
    cpu = inside(trace.get("cpu", []))
    if len(cpu) >= 2:
        out["cpu_s"] = round((cpu[-1][1] - cpu[0][1]) / 1e9, 2)
        out["wall_s"] = round((cpu[-1][0] - cpu[0][0]) / 1e9, 2)
    for gen in (0, 1, 2):
        out[f"gc{gen}"] = _dist([r[1] for r in gc_rows if r[2] == gen])
        out[f"gc{gen}_cpu"] = _dist([r[3] for r in gc_rows if r[2] == gen])
    out["request"] = _dist([r[1] for r in inside(trace["requests"])])
    out["service"] = _dist([r[1] for r in inside(trace["service"])])
    writes = inside(trace["writes"])
    out["write_lock_wait"] = _dist([r[1] for r in writes])
    out["write_lock_held"] = _dist([r[2] for r in writes])
    passes = inside(trace["passes"])
    out["pass_full"] = _dist([r[1] for r in passes if r[2]])
    out["pass_incremental"] = _dist([r[1] for r in passes if not r[2]])
    out["loop_lag_over_2ms"] = _dist([r[1] for r in inside(trace["lag"])])
    return out


def summarise(folder: Path, start: int = 0, end: int = 2**63) -> list[dict[str, Any]]:
    """One summary per traced process that served requests in the window."""
    result = []
    for path in sorted(folder.glob("trace-*.json")):
        summary = _process(json.loads(path.read_text()), start, end)
        if summary["request"]["n"] or summary["pass_full"]["n"]:
            result.append(summary)
    return result


def render(summaries: list[dict[str, Any]]) -> str:
    lines = []
    for s in summaries:
        cpu = f" CPU {s['cpu_s']} s in {s['wall_s']} s" if "cpu_s" in s else ""
        lines.append(f"process {s['pid']}:{cpu}")
        for key, d in s.items():
            if key != "pid" and isinstance(d, dict) and d.get("n"):
                lines.append(
                    f"  {key:<18} n={d['n']:<6} p50 {d['p50_ms']:>8} ms  p99 {d['p99_ms']:>8} ms"
                    f"  max {d['max_ms']:>8} ms  total {d['total_ms']:>9} ms"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--from", dest="start", type=int, default=0)
    parser.add_argument("--to", dest="end", type=int, default=2**63)
    args = parser.parse_args()
    print(render(summarise(args.folder, args.start, args.end)))


if __name__ == "__main__":
    main()
