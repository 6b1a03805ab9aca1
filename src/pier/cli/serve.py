"""``pier server``: run the API, scheduler and local executor in this process."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from pier.cli.output import print_error
from pier.config import Settings
from pier.sdk import InvalidRequest

__all__ = ["server", "settings_from"]


def settings_from(
    host: str | None, port: int | None, home: Path | None, workers: int | None = None
) -> Settings:
    """Settings from PIER_* variables and the config file, with the options given on top."""
    overrides: dict[str, Any] = {"host": host, "port": port, "home": home, "workers": workers}
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise InvalidRequest.from_validation("settings", exc) from exc


def server(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default: PIER_HOST or 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="port (default: PIER_PORT or 7437)", min=1, max=65535)
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(help="state folder: database, runs, credentials (default: PIER_HOME)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="API worker processes, to use more than one core (default: PIER_WORKERS or 1)",
            min=1,
            max=64,
        ),
    ] = None,
) -> None:
    """Run the pier server (API, scheduler and local executor) until Ctrl-C."""
    settings = settings_from(host, port, home, workers)
    # Loaded here, not at the top: the server stack (FastAPI, SQLAlchemy, Alembic) would
    # otherwise add about a second to every other `pier` command.
    server_module = importlib.import_module("pier.server")
    try:
        server_module.serve(settings)
    except OSError as exc:
        print_error(f"cannot start the server: {exc}")
        raise typer.Exit(1) from None
