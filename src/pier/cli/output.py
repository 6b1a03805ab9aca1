"""How the CLI shows things: formats of numbers and times, tables, JSON, errors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from pier.models import JobView, NodeView, ProjectView, TokenView, UserView
from pier.status import JobStatus

__all__ = [
    "OutputFormat",
    "console",
    "emit_json",
    "error_console",
    "fmt_age",
    "fmt_bytes",
    "fmt_gpu",
    "fmt_time",
    "jobs_table",
    "nodes_table",
    "note",
    "print_error",
    "projects_table",
    "show",
    "status_text",
    "table",
    "tokens_table",
    "users_table",
]

PIPE_WIDTH = 200
STATUS_STYLES: dict[JobStatus, str] = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.STOPPED: "magenta",
    JobStatus.UNKNOWN: "bright_black",
}


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def console() -> Console:
    """Standard output; not wrapped at 80 columns when it is a pipe."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def show(*renderables: RenderableType) -> None:
    """Print to stdout; into a pipe, without the padding rich leaves at line ends."""
    out = console()
    if out.is_terminal:
        out.print(*renderables)
        return
    with out.capture() as captured:
        out.print(*renderables)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def note(message: str) -> None:
    """A dim remark on stderr (keeps stdout for data and logs)."""
    error_console().print(Text(message, style="dim"))


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str, hint: str | None = None) -> None:
    """One red ``error: ...`` line on stderr (and an optional dim hint)."""
    err = error_console()
    err.print(Text.assemble(("error: ", "bold red"), (message, "red")))
    if hint:
        err.print(Text(hint, style="dim"))


def emit_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """The results as JSON for scripts: the models' ``model_dump``, or a list of them."""
    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, dict):
        payload = data
    else:
        payload = [item.model_dump(mode="json") for item in data]
    typer.echo(json.dumps(payload, indent=2))


# ---- formats -------------------------------------------------------------------------------


def fmt_age(seconds: float) -> str:
    """``42s``, ``3m20s``, ``45m``, ``3h15m``, ``40h``, ``3d4h``, ``12d`` (as kubectl)."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 10:
        return f"{m}m{s}s" if s else f"{m}m"
    if m < 180:
        return f"{m}m"
    h, m = divmod(m, 60)
    if h < 8:
        return f"{h}h{m}m" if m else f"{h}h"
    if h < 48:
        return f"{h}h"
    d, h = divmod(h, 24)
    if d < 8:
        return f"{d}d{h}h" if h else f"{d}d"
    return f"{d}d"


def age_since(timestamp: float, now: float | None = None) -> str:
    return fmt_age((time.time() if now is None else now) - timestamp)


def fmt_gpu(gpu: float | None) -> str:
    if gpu is None:
        return "-"
    return f"{gpu:g}"


def fmt_bytes(value: int | None) -> str:
    """Binary units as Kubernetes writes them: ``512Mi``, ``16Gi``, ``1.5Ti``."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("", "Ki", "Mi", "Gi", "Ti", "Pi"):
        if abs(amount) < 1024 or unit == "Pi":
            text = f"{amount:.1f}".removesuffix(".0") if unit else f"{int(amount)}"
            return f"{text}{unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def fmt_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: JobStatus) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(status, ""))


def job_reason(job: JobView) -> str:
    """What explains the status now: why it waits (with its place in the queue), or ended."""
    if job.status is JobStatus.PENDING:
        reason = job.pending_reason or job.reason or ""
        if job.queue_position is not None:
            return f"#{job.queue_position} {reason}".strip()
        return reason
    return job.reason or ""


# ---- tables --------------------------------------------------------------------------------


def table(*headers: str) -> Table:
    """A plain, grep-friendly table (no box lines), as kubectl prints."""
    out = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for header in headers:
        out.add_column(header, overflow="fold")
    return out


def jobs_table(jobs: Iterable[JobView], now: float | None = None) -> Table:
    out = table("NAME", "PROJECT", "STATUS", "GPU", "AGE", "OWNER", "REASON")
    for job in jobs:
        out.add_row(
            job.name,
            job.project,
            status_text(job.status),
            fmt_gpu(job.gpu),
            age_since(job.created_at, now),
            job.owner,
            job_reason(job),
        )
    return out


def projects_table(projects: Iterable[ProjectView]) -> Table:
    out = table(
        "NAME", "GPU QUOTA", "MAX GPU", "ALLOCATED", "RUNNING", "PENDING", "WEIGHT", "MEMBERS"
    )
    for p in projects:
        out.add_row(
            p.name,
            fmt_gpu(p.gpu_quota),
            fmt_gpu(p.max_gpu),
            fmt_gpu(p.gpu_allocated),
            str(p.jobs_running),
            str(p.jobs_pending),
            fmt_gpu(p.weight),
            ", ".join(p.members) or "-",
        )
    return out


def users_table(users: Iterable[UserView]) -> Table:
    out = table("NAME", "ADMIN", "DEFAULT PROJECT", "PROJECTS", "CREATED")
    for u in users:
        out.add_row(
            u.name,
            "yes" if u.is_admin else "no",
            u.default_project or "-",
            ", ".join(u.projects) or "-",
            fmt_time(u.created_at),
        )
    return out


def tokens_table(tokens: Iterable[TokenView]) -> Table:
    out = table("ID", "NAME", "CREATED", "EXPIRES", "REVOKED")
    for t in tokens:
        out.add_row(
            t.id,
            t.name or "-",
            fmt_time(t.created_at),
            fmt_time(t.expires_at),
            fmt_time(t.revoked_at),
        )
    return out


def gpu_summary(node: NodeView) -> str:
    """``4x A100 (80Gi)`` per model, joined by ``+``; ``-`` without GPUs."""
    if not node.gpus:
        return "-"
    groups: dict[tuple[str, int], int] = {}
    for device in node.gpus:
        key = (device.model, device.memory_bytes)
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for (model, memory), count in groups.items():
        size = f" ({fmt_bytes(memory)})" if memory else ""
        parts.append(f"{count}x {model}{size}")
    return " + ".join(parts)


def nodes_table(nodes: Iterable[NodeView]) -> Table:
    out = table("NAME", "POOL", "CPUS", "MEMORY", "GPUS", "GPU ALLOCATED", "LABELS")
    for n in nodes:
        total = len(n.gpus)
        allocated = f"{n.gpu_allocated:g}/{total}" if total else "-"
        labels = ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "-"
        out.add_row(
            n.name,
            n.pool,
            f"{n.cpus:g}",
            fmt_bytes(n.memory_bytes),
            gpu_summary(n),
            allocated,
            labels,
        )
    return out


def fields(rows: Sequence[tuple[str, RenderableType | str | None]]) -> Table:
    """``Key:  value`` lines; rows whose value is None are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in rows:
        if value is not None and value != "":
            grid.add_row(f"{key}:", value)
    return grid


def section(title: str, body: RenderableType) -> Group:
    return Group(Text(""), Text(title, style="bold underline"), body)
