"""The summary table of a run: targets, figures, and pier/Slurm ratios, from RESULT lines.

python -m benchmarks.summary RESULTS.jsonl   (or a log with RESULT lines)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        line = line.removeprefix("RESULT ").strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def _find(rows: list[dict[str, Any]], bench: str, **match: Any) -> dict[str, Any] | None:
    """The first row of ``bench`` matching ``match`` (rows without ``workers`` ran one)."""
    for row in rows:
        values = {"workers": 1, **row}
        if row.get("bench") == bench and all(values.get(k) == v for k, v in match.items()):
            return row
    return None


def _ok(passed: bool) -> str:
    return "met" if passed else "**missed**"


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| # | target | measured | |", "|---|---|---|---|"]
    for backend, workers in (("sqlite", 1), ("sqlite", 2), ("postgresql", 1)):
        r = _find(rows, "submit", backend=backend, workers=workers)
        if r:
            out.append(
                f"| 1 | durable submits, 16 clients, {backend}, {workers} worker process(es): "
                ">= 1,000/s, p99 < 50 ms "
                f"| {r['submits_per_s']}/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms "
                f"({r['server_cpu_ms_per_submit']} ms server CPU per submit) "
                f"| {_ok(r['submits_per_s'] >= 1000 and r['p99_ms'] < 50)} |"
            )
    lat = _find(rows, "latency", mode="poll")
    quiet = _find(rows, "latency", mode="quiet")
    if lat:
        c, s = lat["client_submit_to_succeeded"], lat["server_created_to_finished"]
        extra = (
            f"; no polling: server p50 {quiet['server_created_to_finished']['p50_ms']} ms"
            if quiet
            else ""
        )
        out.append(
            f"| 2 | `true` submit -> Succeeded p50 <= 50 ms | client p50 {c['p50_ms']} ms "
            f"(p99 {c['p99_ms']}), server p50 {s['p50_ms']} ms{extra} "
            f"| {_ok(c['p50_ms'] <= 50)} |"
        )
    for workers in (1, 2):
        e2e = _find(rows, "e2e", workers=workers)
        if not e2e:
            continue
        out.append(
            f"| 3 | {e2e['jobs']} `true` jobs end to end, {workers} worker process(es): "
            ">= 200 jobs/s "
            f"| {e2e['jobs_per_s_server']} jobs/s (server clock), {e2e['jobs_per_s_client']} "
            f"jobs/s (client wall {e2e['client_wall_s']} s); submits {e2e['submits_per_s']}/s "
            f"| {_ok(e2e['jobs_per_s_server'] >= 200)} |"
        )
    e2e = _find(rows, "e2e", workers=1)  # the Slurm comparison below: one process
    rss = _find(rows, "rss")
    if rss:
        lo = rss["loaded"]
        out.append(
            f"| 5 | RSS with {rss['jobs']:,} jobs "
            f"| idle {lo.get('idle_rss_min_mib', lo['rss_idle_mib'])}-"
            f"{lo.get('idle_rss_max_mib', lo['rss_idle_mib'])} MiB "
            f"({lo['idle_cpu_percent']}% CPU while idle), "
            f"{lo['rss_after_first_page_mib']} MiB after first pages, "
            f"{lo['rss_after_all_pages_mib']} MiB after listing all; VmHWM {lo['vm_hwm_mib']} MiB "
            f"(empty server {rss['empty']['rss_idle_mib']} MiB) | |"
        )
    out.append("")
    slurm_lat = _find(rows, "slurm_latency")
    slurm_error = _find(rows, "slurm")
    if slurm_error:
        out.append(f"Slurm: not measured: {slurm_error['error']}")
    if slurm_lat or _find(rows, "slurm_throughput"):
        out += ["| 4 | figure | pier | Slurm | pier / Slurm |", "|---|---|---|---|---|"]
        if slurm_lat and lat:
            p = lat["client_submit_to_succeeded"]["p50_ms"]
            s = slurm_lat["p50_ms"]
            out.append(
                f"| 4 | `true` submit -> done, median (client wall) | {p} ms | {s} ms "
                f"| {s / p:.1f}x faster |"
            )
        for r in rows:
            if r.get("bench") != "slurm_throughput" or not e2e:
                continue
            label = " ".join(r["options"]) or "default (1 CPU per job)"
            p, s = e2e["jobs_per_s_client"], r["jobs_per_s_client"]
            out.append(
                f"| 4 | `true` jobs/s, client wall: pier {e2e['jobs']} jobs, Slurm {r['jobs']} "
                f"jobs {label} | {p} | {s} | {p / s:.1f}x |"
            )
            out.append(
                f"| 4 | submits/s, 16 concurrent clients (Slurm: {label}) "
                f"| {e2e['submits_per_s']} | {r['submits_per_s']} "
                f"| {e2e['submits_per_s'] / r['submits_per_s']:.2f}x |"
            )
    floor = [r for r in rows if r.get("bench") == "floor"]
    if floor:
        out += ["", "| request (16 clients) | per s | server CPU ms/request | p50 ms | p99 ms |"]
        out.append("|---|---|---|---|---|")
        for r in floor:
            out.append(
                f"| {r['case']} | {r['per_s']} | {r['server_cpu_ms_per_request']} "
                f"| {r.get('p50_ms', '')} | {r.get('p99_ms', '')} |"
            )
    machine = next((r["machine"] for r in rows if "machine" in r), None)
    if machine:
        out += ["", "machine: " + json.dumps(machine)]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("results", type=Path)
    print(table(load(parser.parse_args().results)))


if __name__ == "__main__":
    main()
