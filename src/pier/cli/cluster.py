"""Cluster-wide reads: ``pier nodes``, ``pier version``."""

from __future__ import annotations

import typer

from pier import __version__
from pier.cli.common import OutputOpt, UrlOpt, connect
from pier.cli.output import OutputFormat, emit_json, nodes_table, show
from pier.sdk import PierClientError

__all__ = ["nodes", "version"]


def nodes(output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """List the nodes and their GPUs."""
    with connect(url) as client:
        found = client.nodes()
    if output is OutputFormat.JSON:
        emit_json(found)
    else:
        show(nodes_table(found) if found else "no nodes")


def version(output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """The client's version, and the server's when it can be reached."""
    server: str | None
    try:
        with connect(url) as client:
            server = str(client.health().get("version", "?"))
            where = client.url
    except PierClientError as exc:
        server, where = None, str(exc)
    if output is OutputFormat.JSON:
        emit_json({"client": __version__, "server": server})
        return
    show(f"client: {__version__}")
    show(f"server: {server} ({where})" if server else f"server: - ({where})")
    if server is None:
        raise typer.Exit(1)
