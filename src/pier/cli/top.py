"""``pier top JOB``: a running job's CPU, memory and GPU usage, live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from pier.cli.common import OutputOpt, ProjectOpt, UrlOpt, connect
from pier.cli.output import OutputFormat, console, note, show, table
from pier.models import JobTelemetryView

__all__ = ["telemetry_table", "top"]

HISTORY = 10
"""Rows the live table keeps (newest last)."""


def _percent(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.0f}%"


def telemetry_table(samples: list[JobTelemetryView], *, header: bool = True) -> Table:
    out = table("TIME", "CPU", "MEMORY (MB)", "GPU DUTY", "GPU MEMORY", "PROCESSES")
    out.show_header = header
    for column in out.columns:  # rows printed one at a time line up under the header
        column.min_width = max(len(str(column.header)), 8)
    for s in samples:
        out.add_row(
            datetime.fromtimestamp(s.timestamp).strftime("%H:%M:%S"),
            f"{s.cpu:.2f}",
            f"{s.memory:.1f}",
            _percent(s.gpu_duty_cycle, 1.0),
            _percent(s.gpu_memory, 100.0),
            str(s.processes),
        )
    return out


def _limited(samples: Iterator[JobTelemetryView], count: int | None) -> Iterator[JobTelemetryView]:
    for seen, sample in enumerate(samples, start=1):
        yield sample
        if count is not None and seen >= count:
            return


def top(
    job: Annotated[str, typer.Argument(help="job name or id", show_default=False)],
    project: ProjectOpt = None,
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.2, max=60, help="seconds between samples")
    ] = 1.0,
    count: Annotated[
        int | None, typer.Option("--count", "-c", min=1, help="stop after this many samples")
    ] = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Show a running job's CPU load (1 = one core), memory and GPU use until it ends.

    CPU and memory cover every process of the job; GPU columns show '-' where the job has
    no real GPU. Waits while the job is pending. With -o json: one JSON sample per line.
    """
    with connect(url) as client:
        samples = _limited(client.telemetry(job, project, interval=interval), count)
        if output is OutputFormat.JSON:
            for sample in samples:
                typer.echo(json.dumps(sample.model_dump(mode="json")))
            return
        out = console()
        seen: list[JobTelemetryView] = []
        if not out.is_terminal:  # a pipe: one row per sample, no redrawing
            for sample in samples:
                show(telemetry_table([sample], header=not seen))
                seen.append(sample)
        else:
            try:
                with Live(telemetry_table(seen), console=out, auto_refresh=False) as live:
                    for sample in samples:
                        seen = [*seen[-(HISTORY - 1) :], sample]
                        live.update(telemetry_table(seen), refresh=True)
            except KeyboardInterrupt:
                return
        if not seen:
            note(f"job {job} is not running: no usage to show")
