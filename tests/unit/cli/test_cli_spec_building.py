"""``pier submit`` arguments -> JobSpec (no server needed)."""

from __future__ import annotations

import pytest

from pier.cli.specs import SubmitArgs, build_spec, parse_key_values
from pier.sdk import InvalidRequest
from pier.spec import JobKind


def test_minimal_job_runs_where_it_was_submitted() -> None:
    spec = build_spec(SubmitArgs(command=["python", "train.py"]), cwd="/home/ana/exp")
    assert spec.dump() == {
        "tasks": [{"command": ["python", "train.py"], "working_dir": "/home/ana/exp"}]
    }
    assert spec.kind is JobKind.TRAIN
    assert spec.tasks[0].name == "main"


def test_image_jobs_keep_the_image_workdir() -> None:
    spec = build_spec(SubmitArgs(image="pytorch:2", command=[]), cwd="/home/ana")
    assert spec.tasks[0].working_dir is None
    assert spec.tasks[0].image == "pytorch:2"


def test_every_option_lands_in_its_field() -> None:
    args = SubmitArgs(
        command=["sh", "-c", "echo $A"],
        name="exp-1",
        name_prefix=None,
        project="vision",
        description="first try",
        gpu=0.5,
        gpu_model="A100",
        node_pool="big",
        cpu="500m",
        cpu_limit="2",
        memory="1Gi",
        memory_limit="2G",
        large_shm=True,
        interactive=True,
        env={"A": "1", "B": "x=y"},
        labels={"team": "cv"},
        working_dir="/data",
        backoff_limit=2,
        preemptible=True,
        ttl_after_finish="1h",
        schedule_timeout="30m",
        replicas=3,
    )
    spec = build_spec(args, cwd="/ignored")
    task = spec.tasks[0]
    res = task.resources
    assert (spec.name, spec.project, spec.description) == ("exp-1", "vision", "first try")
    assert spec.kind is JobKind.INTERACTIVE
    assert spec.preemptible is True
    assert spec.labels == {"team": "cv"}
    assert task.env == {"A": "1", "B": "x=y"}
    assert (task.working_dir, task.replicas) == ("/data", 3)
    assert (res.gpu, res.gpu_model, res.node_pool) == (0.5, "A100", "big")
    assert (res.cpu, res.cpu_limit) == (0.5, 2.0)
    assert (res.memory, res.memory_limit, res.large_shm) == (2**30, 2 * 10**9, True)
    assert spec.lifecycle.backoff_limit == 2
    assert spec.lifecycle.ttl_after_finish == 3600
    assert spec.lifecycle.schedule_timeout == 1800
    assert spec.total_gpu == 1.5


def test_not_preemptible_and_prefix() -> None:
    spec = build_spec(SubmitArgs(command=["x"], preemptible=False, name_prefix="sweep"))
    assert spec.preemptible is False
    assert spec.name_prefix == "sweep"
    assert spec.name is None


def test_errors_name_the_flags() -> None:
    with pytest.raises(InvalidRequest) as caught:
        build_spec(SubmitArgs(command=["x"], gpu=1.5, memory="12XB", name="Bad_Name"))
    assert sorted(caught.value.fields) == ["--gpu", "--memory", "--name"]
    assert "1.5 GPUs: use a whole number" in str(caught.value)


def test_limit_below_request() -> None:
    with pytest.raises(InvalidRequest, match="memory_limit must be at least memory"):
        build_spec(SubmitArgs(command=["x"], memory="2G", memory_limit="1G"))


def test_key_values() -> None:
    assert parse_key_values(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValueError, match="'A' is not KEY=VALUE"):
        parse_key_values(["A"])
    with pytest.raises(ValueError):
        parse_key_values(["=1"])
