"""Users and tokens: ``pier login|logout|whoami``, ``pier user ...``, ``pier token ...``."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from pier.cli.common import OutputOpt, PierGroup, UrlOpt, connect, read_secret
from pier.cli.output import (
    OutputFormat,
    emit_json,
    fields,
    fmt_time,
    print_error,
    show,
    tokens_table,
    users_table,
)
from pier.sdk import ApiError, Client, PierConnectionError, delete_credentials, load_credentials
from pier.spec import parse_duration

__all__ = ["login", "logout", "token_app", "user_app", "whoami"]

user_app = typer.Typer(cls=PierGroup, no_args_is_help=True, help="Users (admins).")
token_app = typer.Typer(cls=PierGroup, no_args_is_help=True, help="Your API tokens.")

PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from standard input")
]


def _expires_in(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_duration(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expires-in") from None


def login(
    url: Annotated[
        str | None, typer.Option("--url", help="pier server url (default: PIER_URL)")
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="(default: prompt)")
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    expires_in: Annotated[
        str | None, typer.Option(help="token lifetime, e.g. 7d (default: the server's)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a name for the token")] = None,
) -> None:
    """Log in and store a token in $PIER_HOME/credentials.json (mode 0600)."""
    seconds = _expires_in(expires_in)
    if username is None:
        username = str(typer.prompt("Username", default=getpass.getuser()))
    password = read_secret(password_stdin, "Password")
    with Client(url, token="") as client:
        view = client.login(username, password, expires_in=seconds, name=name)
        path = client.save_credentials()
    show(
        f"logged in to {client.url} as [bold]{view.user}[/bold] "
        f"(token expires {fmt_time(view.expires_at)}; stored in {path})"
    )


def logout() -> None:
    """Revoke the stored token and forget it."""
    stored = load_credentials()
    if stored is None:
        show("not logged in")
        return
    with Client(stored.url, token=stored.token) as client:
        try:
            client.revoke_token("current")
        except ApiError as exc:
            if exc.status_code != 401:  # an expired or revoked token is logged out already
                raise
        except PierConnectionError as exc:
            print_error(f"the token stays valid on the server: {exc}")
    delete_credentials()
    show(f"logged out of {stored.url}")


def whoami(output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """Show who you are logged in as."""
    with connect(url) as client:
        me = client.me()
        server = client.url
    if output is OutputFormat.JSON:
        emit_json(me)
        return
    show(
        fields(
            [
                ("User", me.name),
                ("Server", server),
                ("Admin", "yes" if me.is_admin else "no"),
                ("Default project", me.default_project or "-"),
                ("Projects", ", ".join(me.projects) or "-"),
            ]
        )
    )


@user_app.command("create")
def create_user(
    name: Annotated[str, typer.Argument(help="user name", show_default=False)],
    admin: Annotated[bool, typer.Option("--admin", help="an administrator")] = False,
    password_stdin: PasswordStdinOpt = False,
    project: Annotated[
        list[str] | None,
        typer.Option("--project", "-p", help="project to join (repeatable; the first is default)"),
    ] = None,
    email: Annotated[str | None, typer.Option(help="e-mail address")] = None,
    output: OutputOpt = OutputFormat.TABLE,
    url: UrlOpt = None,
) -> None:
    """Create a user (admins); prompts for the password unless --password-stdin."""
    password = read_secret(password_stdin, f"Password for {name}", confirm=True)
    with connect(url) as client:
        user = client.create_user(
            name, password=password, is_admin=admin, email=email, projects=project or []
        )
    if output is OutputFormat.JSON:
        emit_json(user)
    else:
        show(f"user [bold]{user.name}[/bold] created")


@user_app.command("list")
def list_users(output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """List users (admins)."""
    with connect(url) as client:
        users = client.list_users()
    if output is OutputFormat.JSON:
        emit_json(users)
    else:
        show(users_table(users))


@token_app.command("list")
def list_tokens(output: OutputOpt = OutputFormat.TABLE, url: UrlOpt = None) -> None:
    """List your tokens."""
    with connect(url) as client:
        tokens = client.list_tokens()
    if output is OutputFormat.JSON:
        emit_json(tokens)
    else:
        show(tokens_table(tokens) if tokens else "no tokens")


@token_app.command("revoke")
def revoke_token(
    token_id: Annotated[
        str | None, typer.Argument(help="token id (see `pier token list`)", show_default=False)
    ] = None,
    current: Annotated[bool, typer.Option("--current", help="the token this command uses")] = False,
    url: UrlOpt = None,
) -> None:
    """Revoke a token; revoking the stored one also logs out."""
    if (token_id is None) == (not current):
        raise typer.BadParameter("give a TOKEN_ID or --current (one of them)")
    with connect(url) as client:
        client.revoke_token("current" if current else str(token_id))
        used = client.token
    stored = load_credentials()
    if current and stored is not None and stored.token == used:
        delete_credentials()
    show(f"token {'in use' if current else token_id} revoked")
