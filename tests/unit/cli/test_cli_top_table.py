"""``pier top``'s table: figures formatted, GPU columns '-' without a GPU, rows aligned."""

from __future__ import annotations

from rich.console import Console

from pier.cli.top import telemetry_table
from pier.models import JobTelemetryView


def _render(*samples: JobTelemetryView, header: bool = True) -> list[str]:
    console = Console(width=120, record=True)
    with console.capture() as captured:
        console.print(telemetry_table(list(samples), header=header))
    return [line.rstrip() for line in captured.get().splitlines()]


def test_rows_show_each_figure() -> None:
    cpu_only = JobTelemetryView(timestamp=0, cpu=0.987, memory=66.44, processes=2)
    gpu = JobTelemetryView(
        timestamp=0, cpu=2, memory=1024, gpu_duty_cycle=87, gpu_memory=0.254, processes=9
    )
    header, first, second = _render(cpu_only, gpu)
    assert header.split() == [
        "TIME",
        "CPU",
        "MEMORY",
        "(MB)",
        "GPU",
        "DUTY",
        "GPU",
        "MEMORY",
        "PROCESSES",
    ]
    assert first.split()[1:] == ["0.99", "66.4", "-", "-", "2"]
    assert second.split()[1:] == ["2.00", "1024.0", "87%", "25%", "9"]


def test_rows_printed_one_at_a_time_line_up() -> None:
    header, row = _render(JobTelemetryView(timestamp=0, cpu=0.5, memory=1.0, processes=1))
    (alone,) = _render(
        JobTelemetryView(timestamp=0, cpu=10.25, memory=123456.7, gpu_memory=1.0, processes=100),
        header=False,
    )
    for column in ("CPU", "MEMORY", "GPU DUTY", "PROCESSES"):
        start = header.index(column)
        assert row[start] != " " and alone[start] != " ", column
