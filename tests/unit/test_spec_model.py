"""The canonical job model: quantities, durations, GPU shapes and strict fields."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from pier.spec import (
    MAX_GPUS_PER_JOB,
    JobKind,
    JobSpec,
    Lifecycle,
    Resources,
    TaskRole,
    parse_cpu,
    parse_duration,
    parse_memory,
)


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return " | ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.value.errors())


def _spec(**fields: Any) -> JobSpec:
    body: dict[str, Any] = {"tasks": [{"command": ["true"]}], **fields}
    return JobSpec.model_validate(body)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1G", 10**9),
        ("1Gi", 2**30),
        ("512Mi", 512 * 2**20),
        ("1k", 1000),
        ("1K", 1000),
        ("2KB", 2000),
        ("3MB", 3 * 10**6),
        ("1.5G", 1_500_000_000),
        (".5G", 500_000_000),
        ("0.5Gi", 2**29),
        (" 10Mi ", 10 * 2**20),
        ("1048576", 1048576),
        (1048576, 1048576),
        (0, 0),
        ("1E", 10**18),
    ],
)
def test_memory_quantities(text: object, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("unit", ["XB", "g", "gb", "mi", "B", "iB"])
def test_memory_unknown_unit_is_named(unit: str) -> None:
    with pytest.raises(ValueError, match=f"unknown unit '{unit}' in '12{unit}'"):
        parse_memory(f"12{unit}")


@pytest.mark.parametrize(
    "value", ["", "G", "1e3", "-1G", "1 2G", "1.2.3G", "abc", True, None, [1], -5, 2e18, "2E"]
)
def test_memory_junk_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_memory_non_finite_rejected_as_value_error(value: float) -> None:
    with pytest.raises(ValueError):
        parse_memory(value)
    with pytest.raises(ValidationError):
        Resources(memory=value)


def test_memory_12xb_in_a_spec_names_the_unit() -> None:
    with pytest.raises(ValidationError) as exc:
        _spec(tasks=[{"command": ["x"], "resources": {"memory": "12XB"}}])
    assert "unknown unit 'XB'" in _errors(exc)
    assert exc.value.errors()[0]["loc"] == ("tasks", 0, "resources", "memory")


@pytest.mark.parametrize(
    ("value", "cores"),
    [("500m", 0.5), ("2", 2.0), ("0.5", 0.5), (2, 2.0), (0.25, 0.25), (" 1500m ", 1.5)],
)
def test_cpu_values(value: object, cores: float) -> None:
    assert parse_cpu(value) == pytest.approx(cores)


@pytest.mark.parametrize(
    "value", ["", "m", "lots", "-1", "-500m", True, None, 1e9, "nan", "inf", math.nan, math.inf]
)
def test_cpu_junk_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_cpu(value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5s", 5.0),
        ("2m", 120.0),
        ("3h", 10800.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("45", 45.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "soon", "5x", "s", "5 s", "1h 30m", "-5s", "5s junk", "h1", -1, True, None, "nan", "inf"],
)
def test_duration_junk_rejected(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_duration_junk_in_a_spec_names_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        _spec(lifecycle={"schedule_timeout": "soon"})
    assert exc.value.errors()[0]["loc"] == ("lifecycle", "schedule_timeout")
    assert "'soon' is not a duration" in _errors(exc)
    assert _spec(lifecycle={"schedule_timeout": "1h30m"}).lifecycle.schedule_timeout == 5400.0


@pytest.mark.parametrize("gpu", [0, 0.5, 0.25, 1, 2, 8, 1.0])
def test_gpu_whole_or_fraction_accepted(gpu: float) -> None:
    assert Resources(gpu=gpu).gpu == gpu


def test_gpu_fraction_above_one_rejected_with_message() -> None:
    with pytest.raises(ValidationError) as exc:
        Resources(gpu=2.5)
    assert "2.5 GPUs: use a whole number of GPUs or a fraction between 0 and 1" in _errors(exc)


@pytest.mark.parametrize("gpu", [-1, -0.5, MAX_GPUS_PER_JOB + 1, math.nan, math.inf])
def test_gpu_out_of_range_rejected(gpu: float) -> None:
    with pytest.raises(ValidationError):
        Resources(gpu=gpu)


def test_whole_gpus_property() -> None:
    assert Resources(gpu=0.5).whole_gpus == 0
    assert Resources(gpu=3).whole_gpus == 3


def test_total_gpu_over_the_job_limit_rejected() -> None:
    with pytest.raises(ValidationError, match="GPUs in all"):
        _spec(tasks=[{"command": ["x"], "replicas": 2, "resources": {"gpu": MAX_GPUS_PER_JOB}}])


def test_limits_below_requests_rejected() -> None:
    with pytest.raises(ValidationError, match="cpu_limit must be at least cpu"):
        Resources(cpu="2", cpu_limit="500m")
    with pytest.raises(ValidationError, match="memory_limit must be at least memory"):
        Resources(memory="2Gi", memory_limit="1Gi")
    equal = Resources(cpu=1, cpu_limit="1000m", memory="1G", memory_limit=10**9)
    assert equal.cpu_limit == 1.0 and equal.memory_limit == 10**9


def test_negative_custom_resource_rejected() -> None:
    with pytest.raises(ValidationError, match="custom resource 'fpga' must not be negative"):
        Resources(custom={"fpga": -1})


@pytest.mark.parametrize(
    ("where", "body"),
    [
        ("bogus", {"tasks": [{"command": ["x"]}], "bogus": 1}),
        ("tasks.0.bogus", {"tasks": [{"command": ["x"], "bogus": 1}]}),
        ("tasks.0.resources.gpus", {"tasks": [{"command": ["x"], "resources": {"gpus": 1}}]}),
        ("lifecycle.retries", {"tasks": [{"command": ["x"]}], "lifecycle": {"retries": 1}}),
    ],
)
def test_unknown_fields_rejected_by_location(where: str, body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate(body)
    (error,) = exc.value.errors()
    assert ".".join(map(str, error["loc"])) == where
    assert error["type"] == "extra_forbidden"


def test_duplicate_task_roles_rejected() -> None:
    with pytest.raises(ValidationError, match="task role names must be unique"):
        _spec(tasks=[{"name": "worker", "command": ["x"]}, {"name": "worker", "command": ["y"]}])


@pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "under_score", "a" * 64, ""])
def test_bad_names_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        _spec(name=name)


def test_tasks_required_and_bounded() -> None:
    with pytest.raises(ValidationError):
        JobSpec.model_validate({"tasks": []})
    with pytest.raises(ValidationError):
        JobSpec.model_validate({})


def test_env_names_checked() -> None:
    with pytest.raises(ValidationError, match="not a valid environment variable name"):
        TaskRole(command=["x"], env={"A=B": "1"})


def test_defaults_by_kind() -> None:
    train = _spec()
    interactive = _spec(kind="interactive")
    assert train.kind is JobKind.TRAIN and train.is_preemptible and train.backoff_limit == 6
    assert not interactive.is_preemptible and interactive.backoff_limit == 0
    assert _spec(preemptible=False).is_preemptible is False
    assert _spec(lifecycle={"backoff_limit": 2}).backoff_limit == 2


def test_gang_shape() -> None:
    spec = _spec(
        tasks=[
            {"name": "ps", "command": ["x"], "resources": {"gpu": 0.5}},
            {"name": "worker", "command": ["x"], "replicas": 3, "resources": {"gpu": 2}},
        ]
    )
    assert spec.replica_count == 4
    assert spec.total_gpu == 6.5
    assert spec.is_gang
    assert not _spec().is_gang


def test_dump_round_trips_and_omits_defaults() -> None:
    spec = _spec(
        name="train-1",
        tasks=[{"command": ["python"], "args": ["x.py"], "resources": {"memory": "1Gi"}}],
        lifecycle={"ttl_after_finish": "1h"},
    )
    dumped = spec.dump()
    assert dumped["tasks"][0]["resources"] == {"memory": 2**30}
    assert "kind" not in dumped
    assert JobSpec.model_validate(dumped) == spec
    assert spec.tasks[0].argv == ["python", "x.py"]


def test_stop_grace_period_bounded() -> None:
    with pytest.raises(ValidationError):
        Lifecycle(stop_grace_period="2h")
    assert Lifecycle(stop_grace_period="30s").stop_grace_period == 30.0


def test_spec_is_frozen() -> None:
    spec = _spec()
    with pytest.raises(ValidationError):
        spec.name = "x"  # type: ignore[misc]
