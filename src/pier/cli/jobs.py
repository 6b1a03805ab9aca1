"""Job commands: submit, list, describe, logs, stop, delete."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from pier.cli import manifests
from pier.cli.common import OutputOpt, ProjectOpt, UrlOpt, connect
from pier.cli.output import (
    OutputFormat,
    console,
    emit_json,
    error_console,
    fields,
    fmt_bytes,
    fmt_gpu,
    fmt_time,
    jobs_table,
    note,
    section,
    show,
    status_text,
    table,
)
from pier.cli.specs import SubmitArgs, build_spec, parse_key_values
from pier.models import JobView
from pier.sdk import Client
from pier.status import JobStatus

__all__ = ["delete", "describe", "exit_code_of", "list_jobs", "logs", "stop", "submit"]

N = TypeVar("N", int, float)
JobArg = Annotated[str, typer.Argument(help="job name or id", show_default=False)]
WATCH_INTERVAL = 1.0


def exit_code_of(job: JobView) -> int:
    """0 when the job succeeded; its own exit code when it failed with one; else 1."""
    if job.status is JobStatus.SUCCEEDED:
        return 0
    if job.exit_code:
        return job.exit_code if 0 < job.exit_code < 256 else 1
    return 1


def _key_values(items: list[str] | None, option: str) -> dict[str, str]:
    try:
        return parse_key_values(items or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _stream_logs(
    client: Client,
    ref: str,
    project: str | None,
    follow: bool,
    replica: str | None,
    attempt: int | None = None,
) -> None:
    out = typer.get_binary_stream("stdout")
    for chunk in client.logs(ref, project, follow=follow, replica=replica, attempt=attempt):
        out.write(chunk)
        out.flush()


def submit(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="the command to run, after -- (e.g. -- python train.py)"),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="job name (unique)")] = None,
    project: ProjectOpt = None,
    gpu: Annotated[
        float | None, typer.Option("--gpu", "-g", help="GPUs per replica; 0.5 = half a GPU")
    ] = None,
    cpu: Annotated[str | None, typer.Option(help="CPU cores requested (2, 0.5, 500m)")] = None,
    cpu_limit: Annotated[str | None, typer.Option(help="CPU cores at most")] = None,
    memory: Annotated[str | None, typer.Option(help="memory requested (4G, 512Mi)")] = None,
    memory_limit: Annotated[str | None, typer.Option(help="memory at most")] = None,
    large_shm: Annotated[bool, typer.Option("--large-shm", help="a large /dev/shm")] = False,
    interactive: Annotated[
        bool,
        typer.Option("--interactive", help="an interactive job: not preemptible, not retried"),
    ] = False,
    image: Annotated[str | None, typer.Option("--image", "-i", help="container image")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE (repeatable)")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable)")] = None,
    description: Annotated[str | None, typer.Option(help="free text")] = None,
    working_dir: Annotated[
        str | None,
        typer.Option(help="where the command starts (default: here, when there is no --image)"),
    ] = None,
    backoff_limit: Annotated[
        int | None, typer.Option(help="retries on failure (default: 6 train, 0 interactive)")
    ] = None,
    preemptible: Annotated[
        bool | None,
        typer.Option(
            "--preemptible/--not-preemptible",
            help="may run over quota and be preempted (default: train yes, interactive no)",
            show_default=False,
        ),
    ] = None,
    node_type: Annotated[
        str | None, typer.Option("--node-type", "--node-pool", help="node pool to run in")
    ] = None,
    gpu_model: Annotated[str | None, typer.Option(help="GPU model, e.g. A100")] = None,
    job_name_prefix: Annotated[
        str | None, typer.Option(help="generate the name: PREFIX-<suffix>")
    ] = None,
    ttl_after_finish: Annotated[
        str | None, typer.Option(help="delete the job this long after it ends (1h, 2d)")
    ] = None,
    schedule_timeout: Annotated[
        str | None, typer.Option(help="fail if not started within this long (30m)")
    ] = None,
    replicas: Annotated[
        int | None, typer.Option(help="identical processes, started together (gang)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="wait for the job to end; exit with its exit code")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="stream the logs until the job ends (implies --wait)")
    ] = False,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Submit a job: pier submit -g 1 -- python train.py --epochs 10."""
    if not command and image is None:
        raise typer.BadParameter("give a command after -- (or an --image to run)")
    args = SubmitArgs(
        command=command or [],
        name=name,
        name_prefix=job_name_prefix,
        project=project,
        description=description,
        gpu=gpu,
        gpu_model=gpu_model,
        node_pool=node_type,
        cpu=cpu,
        cpu_limit=cpu_limit,
        memory=memory,
        memory_limit=memory_limit,
        large_shm=large_shm,
        interactive=interactive,
        image=image,
        env=_key_values(env, "--env"),
        labels=_key_values(label, "--label"),
        working_dir=working_dir,
        backoff_limit=backoff_limit,
        preemptible=preemptible,
        ttl_after_finish=ttl_after_finish,
        schedule_timeout=schedule_timeout,
        replicas=replicas,
    )
    spec = build_spec(args, cwd=os.getcwd())
    table_output = output is OutputFormat.TABLE
    with connect(url) as client:
        job = client.submit(spec)
        if not (wait or follow):
            if table_output:
                show(job_line(job, f"submitted to project {job.project}:"))
            else:
                emit_json(job)
            return
        if table_output:
            note(f"job {job.name} ({job.id}) submitted to project {job.project}")
        if follow:
            final = follow_job(client, job.id, None, None)
        elif table_output and error_console().is_terminal:
            with error_console().status(f"waiting for {job.name}…"):
                final = client.wait(job.id)
        else:
            final = client.wait(job.id)
    if not table_output:
        emit_json(final)
    elif follow:
        error_console().print(job_line(final, "ended:"))
    else:
        show(job_line(final, "ended:"))
    raise typer.Exit(exit_code_of(final))


def job_line(job: JobView, what: str) -> Text:
    """``job NAME (ID) <what> STATUS (reason, exit code N)``."""
    text = Text.assemble(
        "job ", (job.name, "bold"), f" ({job.id}) {what} ", status_text(job.status)
    )
    parts = [p for p in (job.reason, f"exit code {job.exit_code}" if job.exit_code else "") if p]
    if parts and job.status.is_terminal:
        text.append(f" ({', '.join(parts)})")
    return text


def follow_job(
    client: Client, ref: str, project: str | None, replica: str | None, poll: float = 0.5
) -> JobView:
    """Stream the logs of each attempt in turn (retries too) until the job ends."""
    job = client.get_job(ref, project)
    shown = -1
    while True:
        if job.attempt != shown:
            if shown > 0:
                note(f"--- attempt {job.attempt} ---")
            _stream_logs(client, job.id, project, True, replica)
            shown = job.attempt or client.get_job(job.id, project).attempt
        job = client.get_job(job.id, project)
        if job.status.is_terminal and job.attempt == shown:
            return job
        if job.attempt == shown:
            time.sleep(poll)


def list_jobs(
    project: ProjectOpt = None,
    all_projects: Annotated[
        bool, typer.Option("--all-projects", "-A", help="jobs of every project you can see")
    ] = False,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Pending, Running, Succeeded, Failed, Stopped (repeatable)"),
    ] = None,
    owner: Annotated[str | None, typer.Option(help="only this user's jobs")] = None,
    name: Annotated[str | None, typer.Option(help="only jobs with this name")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many jobs")] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="refresh every second until Ctrl-C")
    ] = False,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """List jobs (of your default project unless -p or -A)."""
    if project and all_projects:
        raise typer.BadParameter("give --project or --all-projects, not both")
    if watch and output is OutputFormat.JSON:
        raise typer.BadParameter("--watch shows a table; it cannot be used with -o json")
    with connect(url) as client:
        if not project and not all_projects:
            project = client.me().default_project

        def fetch() -> list[JobView]:
            return list(client.list_jobs(project, status, owner, name, limit))

        if output is OutputFormat.JSON:
            emit_json(fetch())
            return
        out = console()
        if not watch:
            jobs = fetch()
            out.print(jobs_table(jobs) if jobs else "no jobs")
            return
        try:
            with Live(jobs_table(fetch()), console=out, auto_refresh=False) as live:
                while True:
                    time.sleep(WATCH_INTERVAL)
                    live.update(jobs_table(fetch()), refresh=True)
        except KeyboardInterrupt:
            return


def describe(
    job: JobArg,
    project: ProjectOpt = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Show a job: its spec, status, history and replicas."""
    with connect(url) as client:
        view = client.get_job(job, project)
    if output is OutputFormat.JSON:
        emit_json(view)
        return
    show(describe_view(view))


def describe_view(job: JobView) -> Group:
    """The renderable of ``pier describe``."""
    spec = job.spec
    status = status_text(job.status)
    if job.reason:
        status.append(f" ({job.reason})")
    summary = fields(
        [
            ("Name", job.name),
            ("ID", job.id),
            ("Project", job.project),
            ("Owner", job.owner),
            ("Status", status),
            ("Message", job.message),
            ("Exit code", None if job.exit_code is None else str(job.exit_code)),
            ("Pending reason", job.pending_reason if job.status is JobStatus.PENDING else None),
            (
                "Queue position",
                str(job.queue_position)
                if job.queue_position is not None and job.status is JobStatus.PENDING
                else None,
            ),
            ("Kind", job.kind),
            ("Preemptible", "yes" if job.preemptible else "no"),
            ("GPU", fmt_gpu(job.gpu)),
            ("Attempt", f"{job.attempt} ({job.retries} retries)"),
            ("Description", spec.description),
            ("Labels", ", ".join(f"{k}={v}" for k, v in spec.labels.items()) or None),
            ("Created", fmt_time(job.created_at)),
            ("Started", fmt_time(job.started_at) if job.started_at else None),
            ("Finished", fmt_time(job.finished_at) if job.finished_at else None),
        ]
    )
    parts: list[RenderableType] = [summary]
    for task in spec.tasks:
        res = task.resources
        parts.append(
            section(
                f"Task {task.name}",
                fields(
                    [
                        ("Replicas", str(task.replicas)),
                        ("Image", task.image),
                        ("Command", " ".join(task.argv) or None),
                        ("Working dir", task.working_dir),
                        ("GPU", fmt_gpu(res.gpu) if res.gpu else None),
                        ("GPU model", res.gpu_model),
                        ("Node pool", res.node_pool),
                        ("CPU", _range(res.cpu, res.cpu_limit, lambda v: f"{v:g}")),
                        ("Memory", _range(res.memory, res.memory_limit, fmt_bytes)),
                        ("Env", ", ".join(f"{k}={v}" for k, v in task.env.items()) or None),
                    ]
                ),
            )
        )
    if job.replicas:
        replicas = table("TASK", "INDEX", "NODE", "DEVICES", "GPU")
        for r in job.replicas:
            devices = ",".join(str(d) for d in r.devices) or "-"
            replicas.add_row(r.task, str(r.index), r.node, devices, fmt_gpu(r.gpu_fraction))
        parts.append(section("Replicas", replicas))
    if job.history:
        history = table("TIME", "STATUS", "REASON", "EXIT", "ATTEMPT", "MESSAGE")
        for h in job.history:
            history.add_row(
                fmt_time(h.created_at),
                status_text(h.status),
                h.reason or "",
                "" if h.exit_code is None else str(h.exit_code),
                str(h.attempt),
                h.message or "",
            )
        parts.append(section("History", history))
    return Group(*parts)


def _range(request: N | None, limit: N | None, fmt: Callable[[N], str]) -> str | None:
    if request is None and limit is None:
        return None
    low = "-" if request is None else fmt(request)
    return low if limit is None else f"{low} (limit {fmt(limit)})"


def logs(
    job: JobArg,
    project: ProjectOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="until the job ends")] = False,
    replica: Annotated[
        str | None, typer.Option(help="which replica, e.g. main-1 (default: main-0)")
    ] = None,
    attempt: Annotated[int | None, typer.Option(help="an earlier attempt's logs")] = None,
    url: UrlOpt = None,
) -> None:
    """Print a job's output (with -f, as it is written, through retries, until it ends)."""
    with connect(url) as client:
        if follow and attempt is None:
            follow_job(client, job, project, replica)
        else:
            _stream_logs(client, job, project, follow, replica, attempt)


def stop(
    job: JobArg,
    project: ProjectOpt = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Stop a job (it ends as Stopped; delete removes it)."""
    with connect(url) as client:
        view = client.stop_job(job, project)
    if output is OutputFormat.JSON:
        emit_json(view)
    else:
        show(job_line(view, "stopping:"))


def delete(
    job: Annotated[
        str, typer.Argument(help="job name or id; or job|sts then the name", show_default=False)
    ],
    name: Annotated[str | None, typer.Argument(help="the name, after a kind")] = None,
    project: ProjectOpt = None,
    url: UrlOpt = None,
) -> None:
    """Delete a job (stopping it first when it still runs): pier delete NAME, or as kubectl
    pier delete job NAME / pier delete sts NAME."""
    ref, kind = manifests.split_target(job, name)
    with connect(url) as client:
        if kind is not None:
            view = client.get_job(ref, project)
            manifests.check_kind(view, kind)
            ref = view.id
        client.delete_job(ref, project)
    show(f"job [bold]{name or job}[/bold] deleted")
