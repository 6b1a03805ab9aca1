"""``pier simulate``: the trace replay from the command line (no server involved)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pier.cli.main import app

runner = CliRunner()

TRACE = (
    "timestamp,duration,num_gpus,gpu_time,cluster\n"
    "2017-10-01 00:00:00,100.0,8,0,vc1\n"
    "2017-10-01 00:00:01,10.0,1,0,vc1\n"
    "2017-10-01 00:00:02,10.0,1,0,vc2\n"
)


def _files(tmp_path: Path) -> tuple[Path, Path]:
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    vcs = tmp_path / "vcs.csv"
    vcs.write_text("vc,node num\nvc1,1\nvc2,1\n")
    return trace, vcs


def test_prints_the_metrics_table(tmp_path: Path) -> None:
    trace, vcs = _files(tmp_path)
    result = runner.invoke(
        app, ["simulate", str(trace), "--vcs", str(vcs), "--policy", "fifo", "--policy", "las"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "avg JCT (s)" in lines[0] and "GPU util" in lines[0]
    rows = [line.split() for line in lines[1:]]
    assert [row[:3] for row in rows] == [["1x", "fifo", "3"], ["1x", "las", "3"]]
    # fifo: vc1 100 and 109 (the small job waits), vc2 10: (100 + 109 + 10) / 3 = 73
    assert rows[0][3] == "73"


def test_json_output_one_object_per_load_and_policy(tmp_path: Path) -> None:
    trace, vcs = _files(tmp_path)
    args = ["simulate", str(trace), "--vcs", str(vcs), "--vc", "vc1", "-o", "json"]
    result = runner.invoke(app, [*args, "--policy", "srtf", "--load", "1", "--load", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["policy"], r["load"], r["jobs"]) for r in rows] == [
        ("srtf", 1.0, 2),
        ("srtf", 2.0, 2),
    ]
    assert rows[0]["preemptions"] == 1


def test_usage_errors(tmp_path: Path) -> None:
    trace, _ = _files(tmp_path)
    unknown = runner.invoke(app, ["simulate", str(trace), "--nodes", "1", "--policy", "lass"])
    assert unknown.exit_code == 2 and "unknown policy 'lass'" in unknown.output
    no_cluster = runner.invoke(app, ["simulate", str(trace)])
    assert no_cluster.exit_code == 2 and "--vcs" in no_cluster.output
    missing = runner.invoke(app, ["simulate", str(tmp_path / "nope.csv"), "--nodes", "1"])
    assert missing.exit_code == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    broken = runner.invoke(app, ["simulate", str(bad), "--nodes", "1"])
    assert broken.exit_code == 2 and "cannot replay" in broken.output
