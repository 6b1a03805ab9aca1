"""The trace simulator and its baselines, on traces small enough to check by hand."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from pier.scheduler.baselines import SjfPolicy, SrtfPolicy, StrictFifoPolicy
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.simulate import (
    TraceJob,
    load_trace,
    load_vcs,
    main,
    replay,
    restore_overhead,
    simulate,
)

BIG_THEN_SMALL = [TraceJob("big", 0.0, 100.0, 8), TraceJob("small", 1.0, 10.0, 1)]
DURATIONS = {j.id: j.duration for j in BIG_THEN_SMALL}


def test_non_preemptive_policies_make_the_small_job_wait() -> None:
    for policy in (StrictFifoPolicy(), SjfPolicy(DURATIONS), QuotaPolicy(explain=False)):
        result = replay(BIG_THEN_SMALL, 1, policy)
        assert sorted(result.jct) == [100.0, 109.0], policy
        assert sorted(result.queued) == [0.0, 99.0]
        assert result.preemptions == 0
        # 810 GPU-seconds run on 8 GPUs over 110 s
        assert result.gpu_seconds == 810.0 and result.capacity_seconds == 880.0


@pytest.mark.parametrize(
    ("policy", "preemptive", "thresholds"),
    [
        (SrtfPolicy(DURATIONS), True, ()),
        (LasPolicy(thresholds=(5.0,), explain=False, preempt_gap=1), True, (5.0,)),
    ],
)
def test_preemptive_policies_run_the_small_job_at_once(
    policy: SrtfPolicy | LasPolicy, preemptive: bool, thresholds: tuple[float, ...]
) -> None:
    result = replay(BIG_THEN_SMALL, 1, policy, preemptive=preemptive, thresholds=thresholds)
    # big runs 1 s, is preempted for small (1..11), resumes with 99 s left + 30 s restore.
    assert result.preemptions == 1
    assert sorted(result.jct) == [10.0, 11 + 99 + 30.0]
    assert restore_overhead(8) == 30.0 and restore_overhead(1) == 7.0
    assert restore_overhead(16) == 60.0


def test_load_divides_inter_arrival_times() -> None:
    jobs = [TraceJob("a", 0.0, 10.0, 8), TraceJob("b", 30.0, 10.0, 8)]
    assert sorted(replay(jobs, 1, StrictFifoPolicy()).jct) == [10.0, 10.0]
    # at 4x, b arrives at 7 s and waits 3 s for a
    assert sorted(replay(jobs, 1, StrictFifoPolicy(), load=4.0).jct) == [10.0, 13.0]


def test_gangs_and_jobs_larger_than_the_cluster() -> None:
    jobs = [TraceJob("gang", 0.0, 50.0, 12), TraceJob("huge", 0.0, 50.0, 64)]
    result = replay(jobs, 2, StrictFifoPolicy())
    assert result.jct == [50.0] and result.failed == 1


def test_strict_fifo_blocks_behind_its_head_but_sjf_backfills() -> None:
    jobs = [
        TraceJob("running", 0.0, 100.0, 4),
        TraceJob("head", 1.0, 10.0, 8),
        TraceJob("small", 2.0, 10.0, 1),
    ]
    durations = {j.id: j.duration for j in jobs}
    fifo = replay(jobs, 1, StrictFifoPolicy())
    assert sorted(fifo.jct) == [100.0, 99 + 10.0, 108 + 10.0]  # small waits for head
    sjf = replay(jobs, 1, SjfPolicy(durations))
    assert sorted(sjf.jct) == [10.0, 100.0, 109.0]


def test_load_trace_and_vcs(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-01 00:00:10,5.0,1,5.0,vc1\n"
        "2017-09-30 23:59:59,5.0,1,5.0,vc1\n"
        "2017-10-01 00:00:05,7.0,2,14.0,vc1\n"
        "2017-10-01 00:00:05,7.0,2,14.0,other\n"
        "2017-10-02 00:00:00,7.0,2,14.0,vc1\n"
    )
    vcs = tmp_path / "vcs.csv"
    vcs.write_text("vc,node num\nvc1,2\n")
    assert load_vcs(str(vcs)) == {"vc1": 2}
    jobs = load_trace(str(trace), ["vc1"], datetime(2017, 10, 1), datetime(2017, 10, 2))
    assert jobs == {"vc1": [TraceJob("j2", 5.0, 7.0, 2), TraceJob("j0", 10.0, 5.0, 1)]}
    main(["--trace", str(trace), "--vcs", str(vcs), "--policy", "fifo", "--load", "2"])


def test_main_prints_one_line_per_policy_and_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        + "".join(
            f"2017-10-01 00:{i:02d}:00,{60 * (i % 5 + 1)}.0,{i % 3 + 1},0,vc\n" for i in range(40)
        )
    )
    vcs = tmp_path / "vcs.csv"
    vcs.write_text("vc,node num\nvc,1\n")
    argv = [str(trace), "--vcs", str(vcs), "--load", "1", "--load", "3", "--json"]
    for name in ("fifo", "sjf", "srtf", "quota", "las"):
        argv += ["--policy", name]
    main(argv)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["policy"], line["load"]) for line in lines] == [
        (p, load) for load in (1.0, 3.0) for p in ("fifo", "sjf", "srtf", "quota", "las")
    ]
    assert all(line["jobs"] == 40 and line["failed"] == 0 for line in lines)
    by = {(line["policy"], line["load"]): line for line in lines}
    assert by[("sjf", 3.0)]["avg_jct_s"] <= by[("fifo", 3.0)]["avg_jct_s"]


def test_main_prints_a_table_and_replays_one_cluster_without_vcs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-01 00:00:00,100.0,8,0,a\n"
        "2017-10-01 00:00:01,10.0,1,0,b\n"
    )
    main([str(trace), "--nodes", "1", "--policy", "fifo", "--policy", "srtf"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["load", "policy", "jobs", "avg"]
    assert set(lines[1]) == {"-", " "}
    fifo, srtf = (line.split() for line in lines[2:])
    assert fifo[:3] == ["1x", "fifo", "2"] and srtf[:3] == ["1x", "srtf", "2"]
    # both VCs' jobs share the one node: fifo (100 + 109) / 2, srtf (10 + 140) / 2
    assert fifo[3] == "104" and srtf[3] == "75"


def test_simulate_rejects_bad_arguments(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n")
    with pytest.raises(ValueError, match="unknown policy 'lass'"):
        list(simulate(str(trace), policies=["lass"], loads=[1.0], nodes=1))
    with pytest.raises(ValueError, match="--vcs"):
        list(simulate(str(trace), policies=["fifo"], loads=[1.0]))
    with pytest.raises(ValueError, match="load must be positive"):
        list(simulate(str(trace), policies=["fifo"], loads=[0.0], nodes=1))
    with pytest.raises(SystemExit):
        main([])
