"""The ``pier`` command. Built on :mod:`pier.sdk` only (``pier server`` aside)."""

from __future__ import annotations

import typer

from pier.cli import cluster, jobs, manifests, serve, top, users
from pier.cli.common import PierGroup
from pier.cli.projects import project_app
from pier.cli.simulate import simulate_trace

__all__ = ["app"]

app = typer.Typer(
    cls=PierGroup,
    name="pier",
    help="pier: GPU and ML jobs in projects with quotas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("server", rich_help_panel="Server")(serve.server)
app.command("login", rich_help_panel="Account")(users.login)
app.command("logout", rich_help_panel="Account")(users.logout)
app.command("whoami", rich_help_panel="Account")(users.whoami)
app.command(
    "submit",
    rich_help_panel="Jobs",
    context_settings={"allow_interspersed_args": False},
)(jobs.submit)
app.command("list", rich_help_panel="Jobs")(jobs.list_jobs)
app.command("describe", rich_help_panel="Jobs")(jobs.describe)
app.command("logs", rich_help_panel="Jobs")(jobs.logs)
app.command("stop", rich_help_panel="Jobs")(jobs.stop)
app.command("delete", rich_help_panel="Jobs")(jobs.delete)
app.command("apply", rich_help_panel="Jobs")(manifests.apply)
app.command("export", rich_help_panel="Jobs")(manifests.export)
app.command("top", rich_help_panel="Jobs")(top.top)
app.command("nodes", rich_help_panel="Cluster")(cluster.nodes)
app.command("version", rich_help_panel="Cluster")(cluster.version)
app.command("simulate", rich_help_panel="Scheduler")(simulate_trace)
app.add_typer(project_app, name="project", rich_help_panel="Admin")
app.add_typer(users.user_app, name="user", rich_help_panel="Admin")
app.add_typer(users.token_app, name="token", rich_help_panel="Account")

if __name__ == "__main__":  # pragma: no cover
    app()
