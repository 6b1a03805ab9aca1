"""``pier project ...``: projects, their quotas and members."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pier.cli.common import OutputOpt, PierGroup, UrlOpt, connect
from pier.cli.output import (
    OutputFormat,
    emit_json,
    fields,
    fmt_bytes,
    fmt_gpu,
    fmt_time,
    projects_table,
    show,
)
from pier.models import ProjectView

__all__ = ["project_app", "project_fields", "quota_fields"]

project_app = typer.Typer(
    cls=PierGroup, no_args_is_help=True, help="Projects: GPU quotas and members."
)

NameArg = Annotated[str, typer.Argument(help="project name", show_default=False)]
GpuQuotaOpt = Annotated[
    float | None, typer.Option(help="deserved (guaranteed) GPUs", show_default=False)
]
CpuQuotaOpt = Annotated[float | None, typer.Option(help="deserved CPU cores", show_default=False)]
MemoryQuotaOpt = Annotated[
    str | None, typer.Option(help="deserved memory (64Gi)", show_default=False)
]
MaxGpuOpt = Annotated[
    float | None, typer.Option(help="GPUs at most, borrowing included", show_default=False)
]
WeightOpt = Annotated[
    float | None, typer.Option(help="share of idle GPUs, relative", show_default=False)
]
DepartmentOpt = Annotated[str | None, typer.Option(help="department", show_default=False)]
NodePoolOpt = Annotated[
    list[str] | None,
    typer.Option("--node-pool", help="node pool the project may use (repeatable)"),
]
DescriptionOpt = Annotated[str | None, typer.Option(help="free text", show_default=False)]


def quota_fields(
    *,
    gpu_quota: float | None = None,
    cpu_quota: float | None = None,
    memory_quota: str | None = None,
    max_gpu: float | None = None,
    weight: float | None = None,
    department: str | None = None,
    node_pools: list[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The fields given (None = not given, so not sent)."""
    values: dict[str, Any] = {
        "gpu_quota": gpu_quota,
        "cpu_quota": cpu_quota,
        "memory_quota": memory_quota,
        "max_gpu": max_gpu,
        "weight": weight,
        "department": department,
        "node_pools": node_pools or None,
        "description": description,
    }
    return {k: v for k, v in values.items() if v is not None}


def project_fields(p: ProjectView) -> list[tuple[str, str | None]]:
    return [
        ("Name", p.name),
        ("ID", p.id),
        ("Description", p.description),
        ("Department", p.department),
        ("GPU quota", fmt_gpu(p.gpu_quota)),
        ("Max GPU", fmt_gpu(p.max_gpu) if p.max_gpu is not None else None),
        ("CPU quota", f"{p.cpu_quota:g}" if p.cpu_quota is not None else None),
        ("Memory quota", fmt_bytes(p.memory_quota) if p.memory_quota is not None else None),
        ("Weight", f"{p.weight:g}" if p.weight is not None else None),
        ("Node pools", ", ".join(p.node_pools) or None),
        ("GPU allocated", fmt_gpu(p.gpu_allocated)),
        ("Jobs", f"{p.jobs_running} running, {p.jobs_pending} pending"),
        ("Members", ", ".join(p.members) or "-"),
        ("Created", fmt_time(p.created_at)),
    ]


def _show(project: ProjectView, output: OutputFormat, message: str | None = None) -> None:
    if output is OutputFormat.JSON:
        emit_json(project)
        return
    if message:
        show(message)
    show(fields(project_fields(project)))


@project_app.command("create")
def create(
    name: NameArg,
    gpu_quota: GpuQuotaOpt = None,
    cpu_quota: CpuQuotaOpt = None,
    memory_quota: MemoryQuotaOpt = None,
    max_gpu: MaxGpuOpt = None,
    weight: WeightOpt = None,
    department: DepartmentOpt = None,
    node_pool: NodePoolOpt = None,
    description: DescriptionOpt = None,
    member: Annotated[
        list[str] | None, typer.Option("--member", help="user to add (repeatable)")
    ] = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Create a project (admins)."""
    body = quota_fields(
        gpu_quota=gpu_quota,
        cpu_quota=cpu_quota,
        memory_quota=memory_quota,
        max_gpu=max_gpu,
        weight=weight,
        department=department,
        node_pools=node_pool,
        description=description,
    )
    if member:
        body["members"] = member
    with connect(url) as client:
        project = client.create_project(name, **body)
    _show(project, output, f"project [bold]{project.name}[/bold] created")


@project_app.command("list")
def list_(output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """List the projects you can see (admins: all)."""
    with connect(url) as client:
        projects = client.list_projects()
    if output is OutputFormat.JSON:
        emit_json(projects)
    else:
        show(projects_table(projects) if projects else "no projects")


@project_app.command("describe")
def describe(name: NameArg, output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """Show a project: quotas, usage and members."""
    with connect(url) as client:
        project = client.get_project(name)
    _show(project, output)


@project_app.command("set-quota")
def set_quota(
    name: NameArg,
    gpu_quota: GpuQuotaOpt = None,
    cpu_quota: CpuQuotaOpt = None,
    memory_quota: MemoryQuotaOpt = None,
    max_gpu: MaxGpuOpt = None,
    weight: WeightOpt = None,
    department: DepartmentOpt = None,
    node_pool: NodePoolOpt = None,
    description: DescriptionOpt = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Change a project's quotas (only the options given; admins)."""
    body = quota_fields(
        gpu_quota=gpu_quota,
        cpu_quota=cpu_quota,
        memory_quota=memory_quota,
        max_gpu=max_gpu,
        weight=weight,
        department=department,
        node_pools=node_pool,
        description=description,
    )
    if not body:
        raise typer.BadParameter("give at least one quota option, e.g. --gpu-quota 4")
    with connect(url) as client:
        project = client.update_project(name, **body)
    _show(project, output, f"project [bold]{project.name}[/bold] updated")


@project_app.command("add-member")
def add_member(
    name: NameArg,
    user: Annotated[str, typer.Argument(help="user name", show_default=False)],
    role: Annotated[str, typer.Option(help="member or admin")] = "member",
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Let a user submit jobs to a project (admins)."""
    with connect(url) as client:
        project = client.add_member(name, user, role)
    _show(project, output, f"{user} added to project [bold]{project.name}[/bold]")


@project_app.command("remove-member")
def remove_member(
    name: NameArg,
    user: Annotated[str, typer.Argument(help="user name", show_default=False)],
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Take a user out of a project (admins)."""
    with connect(url) as client:
        project = client.remove_member(name, user)
    _show(project, output, f"{user} removed from project [bold]{project.name}[/bold]")
