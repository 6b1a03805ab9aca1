"""What the CLI says when it is used wrongly or cannot reach a server (no server runs)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pier.cli.main import app
from pier.cli.serve import settings_from
from pier.sdk import InvalidRequest

runner = CliRunner()


@pytest.fixture
def dead_url() -> str:
    """A loopback url nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "server",
        "login",
        "submit",
        "list",
        "describe",
        "logs",
        "stop",
        "delete",
        "project",
        "user",
        "token",
        "nodes",
    ):
        assert command in result.stdout


def test_submit_needs_a_command(dead_url: str) -> None:
    result = runner.invoke(app, ["submit", "--url", dead_url, "-g", "1"])
    assert result.exit_code == 2
    assert "give a command after --" in result.stderr


def test_submit_rejects_bad_env(dead_url: str) -> None:
    result = runner.invoke(app, ["submit", "--url", dead_url, "-e", "NOVALUE", "--", "true"])
    assert result.exit_code == 2
    assert "'NOVALUE' is not KEY=VALUE" in result.stderr


def test_submit_validates_before_sending(dead_url: str) -> None:
    result = runner.invoke(app, ["submit", "--url", dead_url, "--memory", "12XB", "--", "true"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid job (--memory: unknown unit 'XB'")


def test_everything_after_the_command_belongs_to_it(dead_url: str) -> None:
    """Options after the first word of the command are the command's (as sbatch --wrap)."""
    result = runner.invoke(app, ["submit", "--url", dead_url, "python", "x.py", "--name", "y"])
    assert result.exit_code == 1  # it got as far as connecting: the options parsed
    assert "cannot reach pier" in result.stderr


def test_unreachable_server_is_one_line_and_exit_1(dead_url: str) -> None:
    result = runner.invoke(app, ["list", "--url", dead_url])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: cannot reach pier at {dead_url}: ")
    assert "Traceback" not in result.output
    assert len(lines) == 2  # and a hint


def test_pier_url_is_used(dead_url: str) -> None:
    result = runner.invoke(app, ["nodes"], env={"PIER_URL": dead_url})
    assert result.exit_code == 1
    assert f"cannot reach pier at {dead_url}" in result.stderr


def test_bad_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIER_PORT", "nope")
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid pier configuration: PIER_PORT")


@pytest.mark.parametrize(
    "args",
    [
        ["list", "-p", "a", "-A"],
        ["list", "--watch", "-o", "json"],
        ["list", "--limit", "0"],
        ["token", "revoke"],
        ["token", "revoke", "abc", "--current"],
        ["project", "set-quota", "vision"],
        ["describe"],
        ["submit", "-o", "yaml", "--", "true"],
        ["server", "--port", "0"],
        ["login", "-u", "ana", "--password-stdin", "--expires-in", "soon"],
    ],
)
def test_usage_errors_exit_2(args: list[str], dead_url: str) -> None:
    result = runner.invoke(app, [*args, "--url", dead_url] if args[0] != "server" else args)
    assert result.exit_code == 2, result.output


def test_password_stdin_must_not_be_empty(dead_url: str) -> None:
    result = runner.invoke(
        app, ["login", "--url", dead_url, "-u", "ana", "--password-stdin"], input="\n"
    )
    assert result.exit_code == 2
    assert "no password on standard input" in result.stderr


def test_logout_without_login() -> None:
    result = runner.invoke(app, ["logout"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "not logged in"


def test_logout_forgets_even_when_the_server_is_gone(pier_home: Path, dead_url: str) -> None:
    pier_home.mkdir()
    creds = pier_home / "credentials.json"
    creds.write_text(json.dumps({"url": dead_url, "token": "t", "user": "ana"}))
    result = runner.invoke(app, ["logout"])
    assert result.exit_code == 0
    assert "the token stays valid on the server" in result.stderr
    assert not creds.exists()


def test_version_without_server(dead_url: str) -> None:
    result = runner.invoke(app, ["version", "--url", dead_url])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "client: 0.1.0"
    result = runner.invoke(app, ["version", "--url", dead_url, "-o", "json"])
    assert json.loads(result.stdout) == {"client": "0.1.0", "server": None}


def test_server_options_override_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PIER_PORT", "9001")
    monkeypatch.setenv("PIER_HOST", "10.0.0.1")
    settings = settings_from(None, 9002, tmp_path / "h")
    assert (settings.host, settings.port, settings.home) == ("10.0.0.1", 9002, tmp_path / "h")
    assert settings.credentials_file == tmp_path / "h" / "credentials.json"
    assert settings_from("0.0.0.0", None, None).port == 9001
    monkeypatch.setenv("PIER_LOCAL_GPUS", "-1")
    with pytest.raises(InvalidRequest, match="invalid settings"):
        settings_from(None, None, None)
