"""Options shared by the commands, the client they build, and how failures are shown."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from pier.cli.output import OutputFormat, print_error
from pier.sdk import ApiError, Client, InvalidRequest, PierClientError, PierConnectionError

__all__ = [
    "OutputOpt",
    "PierGroup",
    "ProjectOpt",
    "UrlOpt",
    "connect",
    "read_secret",
    "render_failure",
]

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="pier server url (default: PIER_URL, else the stored login)"),
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", "-p", help="project (default: your default project)"),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts"),
]


def connect(url: str | None = None, token: str | None = None) -> Client:
    """A client for ``url`` (else PIER_URL, else the stored login), with the stored token."""
    return Client(url, token)


def read_secret(from_stdin: bool, prompt: str, *, confirm: bool = False) -> str:
    """A password: the first line of stdin, or a hidden prompt."""
    if from_stdin:
        secret = typer.get_text_stream("stdin").readline().rstrip("\r\n")
        if not secret:
            raise typer.BadParameter("no password on standard input", param_hint="--password-stdin")
        return secret
    value = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return str(value)


def render_failure(exc: PierClientError) -> int:
    """Print one ``error: ...`` line for an SDK error; the exit code to use."""
    hint = None
    if isinstance(exc, ApiError) and exc.status_code == 401:
        hint = "log in with `pier login` (or set PIER_TOKEN)"
    elif isinstance(exc, PierConnectionError):
        hint = "is the server running (`pier server`), and is --url / PIER_URL right?"
    print_error(str(exc), hint)
    return 2 if isinstance(exc, InvalidRequest) else 1


class PierGroup(TyperGroup):
    """Turns SDK errors raised by any command into one red line and exit code 1.

    Validation of arguments before anything is sent (:class:`InvalidRequest`) exits 2, as a
    usage error does; Ctrl-C exits 130 without a traceback.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context (a private module)
        try:
            return super().invoke(ctx)
        except PierClientError as exc:
            raise typer.Exit(render_failure(exc)) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
