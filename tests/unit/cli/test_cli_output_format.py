"""How the CLI shows jobs, projects, nodes and numbers (rendered to text, no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console, RenderableType

from pier.cli.jobs import describe_view, exit_code_of, job_line
from pier.cli.output import (
    emit_json,
    fmt_age,
    fmt_bytes,
    fmt_gpu,
    gpu_summary,
    jobs_table,
    nodes_table,
    projects_table,
    tokens_table,
    users_table,
)
from pier.models import (
    DeviceView,
    HistoryEntry,
    JobView,
    NodeView,
    ProjectView,
    ReplicaView,
    TokenView,
    UserView,
)
from pier.spec import JobSpec, Resources, TaskRole
from pier.status import JobStatus

NOW = 1_700_000_000.0


def render(renderable: RenderableType) -> str:
    console = Console(width=200, no_color=True, highlight=False)
    with console.capture() as captured:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def job(**fields: Any) -> JobView:
    values: dict[str, Any] = {
        "id": "j-1",
        "name": "train-1",
        "project": "vision",
        "owner": "ana",
        "status": JobStatus.RUNNING,
        "kind": "train",
        "preemptible": True,
        "gpu": 0.5,
        "created_at": NOW - 200,
        "updated_at": NOW - 100,
        "spec": JobSpec(
            tasks=[
                TaskRole(
                    command=["python", "train.py"],
                    env={"A": "1"},
                    working_dir="/w",
                    resources=Resources(gpu=0.5, memory="1Gi", memory_limit="2Gi"),
                )
            ]
        ),
    }
    values.update(fields)
    return JobView(**values)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (42, "42s"),
        (119, "119s"),
        (200, "3m20s"),
        (300, "5m"),
        (45 * 60, "45m"),
        (3 * 3600 + 15 * 60, "3h15m"),
        (40 * 3600, "40h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (12 * 86400 + 5, "12d"),
    ],
)
def test_age(seconds: float, text: str) -> None:
    assert fmt_age(seconds) == text


def test_numbers() -> None:
    assert fmt_gpu(0.5) == "0.5"
    assert fmt_gpu(2.0) == "2"
    assert fmt_gpu(None) == "-"
    assert fmt_bytes(512) == "512"
    assert fmt_bytes(2**30) == "1Gi"
    assert fmt_bytes(int(1.5 * 2**40)) == "1.5Ti"
    assert fmt_bytes(None) == "-"


def test_jobs_table() -> None:
    pending = job(
        name="waits",
        status=JobStatus.PENDING,
        gpu=2,
        pending_reason="quota",
        queue_position=3,
        created_at=NOW - 30,
    )
    text = render(jobs_table([job(), pending], now=NOW))
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "PROJECT", "STATUS", "GPU", "AGE", "OWNER", "REASON"]
    assert lines[1].split() == ["train-1", "vision", "Running", "0.5", "3m20s", "ana"]
    assert lines[2].split() == ["waits", "vision", "Pending", "2", "30s", "ana", "#3", "quota"]


def test_describe_shows_spec_history_and_replicas() -> None:
    view = job(
        status=JobStatus.FAILED,
        reason="BackoffLimitExceeded",
        exit_code=3,
        replicas=[ReplicaView(task="main", index=0, node="n1", devices=[1], gpu_fraction=0.5)],
        history=[
            HistoryEntry(status=JobStatus.PENDING, reason="Submitted", created_at=NOW - 200),
            HistoryEntry(status=JobStatus.RUNNING, attempt=1, created_at=NOW - 190),
            HistoryEntry(status=JobStatus.FAILED, exit_code=3, attempt=1, created_at=NOW - 100),
        ],
    )
    text = render(describe_view(view))
    assert "Status:" in text and "Failed (BackoffLimitExceeded)" in text
    assert "Exit code:" in text
    assert "Command:      python train.py" in text
    assert "Memory:       1Gi (limit 2Gi)" in text
    assert "Env:          A=1" in text
    history = text[text.index("History") :].splitlines()
    assert [line.split()[2] for line in history[2:]] == ["Pending", "Running", "Failed"]
    replicas = text[text.index("Replicas\n") : text.index("History")].splitlines()
    assert replicas[2].split() == ["main", "0", "n1", "1", "0.5"]
    assert "Pending reason" not in text


def test_describe_pending_shows_why() -> None:
    text = render(
        describe_view(job(status=JobStatus.PENDING, pending_reason="no GPU free", queue_position=2))
    )
    assert "Pending reason:  no GPU free" in text
    assert "Queue position:  2" in text


def test_job_line() -> None:
    done = job(status=JobStatus.FAILED, reason="Error", exit_code=2)
    assert (
        render(job_line(done, "ended:")) == "job train-1 (j-1) ended: Failed (Error, exit code 2)"
    )
    assert render(job_line(job(), "is")) == "job train-1 (j-1) is Running"


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (JobStatus.SUCCEEDED, 0, 0),
        (JobStatus.FAILED, 3, 3),
        (JobStatus.FAILED, None, 1),
        (JobStatus.FAILED, -9, 1),
        (JobStatus.FAILED, 300, 1),
        (JobStatus.STOPPED, None, 1),
    ],
)
def test_exit_codes(status: JobStatus, code: int | None, expected: int) -> None:
    assert exit_code_of(job(status=status, exit_code=code)) == expected


def test_nodes_table() -> None:
    node = NodeView(
        name="n1",
        pool="default",
        labels={"zone": "a"},
        cpus=16,
        memory_bytes=64 * 2**30,
        gpus=[DeviceView(index=i, model="A100", memory_bytes=80 * 2**30) for i in range(4)],
        gpu_allocated=1.5,
    )
    assert gpu_summary(node) == "4x A100 (80Gi)"
    lines = render(nodes_table([node])).splitlines()
    assert lines[1].split() == [
        "n1",
        "default",
        "16",
        "64Gi",
        "4x",
        "A100",
        "(80Gi)",
        "1.5/4",
        "zone=a",
    ]
    cpu_only = NodeView(name="c", pool="cpu", cpus=2, memory_bytes=2**30)
    assert gpu_summary(cpu_only) == "-"


def test_admin_tables() -> None:
    project = ProjectView(
        id="p", name="vision", gpu_quota=4, created_at=NOW, members=["ana", "bo"], jobs_running=1
    )
    assert render(projects_table([project])).splitlines()[1].split() == [
        "vision",
        "4",
        "-",
        "0",
        "1",
        "0",
        "-",
        "ana,",
        "bo",
    ]
    user = UserView(id="u", name="ana", is_admin=False, projects=["vision"], created_at=NOW)
    assert render(users_table([user])).splitlines()[1].split()[:4] == ["ana", "no", "-", "vision"]
    token = TokenView(id="t1", user="ana", created_at=NOW, expires_at=NOW + 60)
    assert render(tokens_table([token])).splitlines()[1].split()[:2] == ["t1", "-"]


def test_json_is_the_model_dump(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json([job()])
    data = json.loads(capsys.readouterr().out)
    assert data == [job().model_dump(mode="json")]
    emit_json(job())
    assert json.loads(capsys.readouterr().out)["status"] == "Running"
