"""The ``pier`` CLI (in-process, ``CliRunner``) against a real server on a loopback port."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import ADMIN_PASSWORD, Api
from typer.testing import CliRunner, Result

from pier.cli.main import app

runner = CliRunner()


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A CLI user's PIER_HOME apart from the server's, run from an empty folder."""
    for key in list(os.environ):
        if key.startswith("PIER_"):
            monkeypatch.delenv(key)
    home = tmp_path / "cli-home"
    monkeypatch.setenv("PIER_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


class Pier:
    def __init__(self, api: Api, token: str | None) -> None:
        self.url = str(api.client.base_url).rstrip("/")
        self.env = {"PIER_URL": self.url, "PIER_TOKEN": token}

    def __call__(self, *args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = runner.invoke(app, list(args), env=self.env, input=stdin)
        assert result.exit_code == code, (
            f"pier {' '.join(args)} -> {result.exit_code}\n{result.stdout}\n{result.stderr}"
        )
        return result

    def json(self, *args: str) -> Any:
        """``pier ARGS -o json`` (the option goes before a ``--``), decoded."""
        cut = args.index("--") if "--" in args else len(args)
        return json.loads(self(*args[:cut], "-o", "json", *args[cut:]).stdout)


@pytest.fixture
def pier(shared_api: Api, cli_home: Path) -> Pier:
    return Pier(shared_api, shared_api.admin_token)


def test_login_stores_owner_only_credentials(shared_api: Api, cli_home: Path) -> None:
    anonymous = Pier(shared_api, None)
    result = anonymous("login", "-u", "admin", "--password-stdin", stdin=f"{ADMIN_PASSWORD}\n")
    assert result.stdout.startswith(f"logged in to {anonymous.url} as admin")
    path = cli_home / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert (stored["url"], stored["user"]) == (anonymous.url, "admin")

    assert anonymous.json("whoami")["name"] == "admin"
    tokens = anonymous.json("token", "list")
    assert any(t["name"] is None or t["id"] for t in tokens)
    assert "User:" in anonymous("whoami").stdout

    anonymous("token", "revoke", "--current")
    assert not path.exists()
    result = anonymous("whoami", code=1)
    assert result.stderr.splitlines()[0].startswith("error: ")
    assert "pier login" in result.stderr


def test_login_prompts_and_rejects_a_wrong_password(shared_api: Api, cli_home: Path) -> None:
    anonymous = Pier(shared_api, None)
    result = anonymous("login", "-u", "admin", code=1, stdin="wrong-password\n")
    assert result.stderr.startswith("error: ")
    assert not (cli_home / "credentials.json").exists()
    anonymous("login", stdin=f"admin\n{ADMIN_PASSWORD}\n")
    anonymous("logout")
    assert not (cli_home / "credentials.json").exists()


def test_submit_wait_exits_with_the_job_code(pier: Pier) -> None:
    ok = pier("submit", "--name", "cli-ok", "--wait", "--", "true")
    assert "cli-ok" in ok.stdout and "Succeeded" in ok.stdout
    failed = pier(
        "submit",
        "--name",
        "cli-fails",
        "--backoff-limit",
        "0",
        "--wait",
        "--",
        "sh",
        "-c",
        "exit 7",
        code=7,
    )
    assert "Failed" in failed.stdout and "exit code 7" in failed.stdout
    view = pier.json("describe", "cli-fails")
    assert (view["status"], view["exit_code"]) == ("Failed", 7)


def test_submit_follow_streams_the_output(pier: Pier) -> None:
    result = pier(
        "submit",
        "--name",
        "cli-follow",
        "--follow",
        "--",
        "sh",
        "-c",
        "echo one; sleep 0.3; echo two",
    )
    assert result.stdout == "one\ntwo\n"
    assert "cli-follow" in result.stderr and "Succeeded" in result.stderr


def test_submit_builds_the_spec(pier: Pier, cli_home: Path) -> None:
    job = pier.json(
        "submit",
        "--name",
        "cli-spec",
        "-g",
        "0.5",
        "--cpu",
        "500m",
        "--memory",
        "1Gi",
        "-e",
        "A=1",
        "-e",
        "B=two",
        "--not-preemptible",
        "--backoff-limit",
        "1",
        "--ttl-after-finish",
        "1h",
        "--",
        "sh",
        "-c",
        "echo $A$B",
    )
    task = job["spec"]["tasks"][0]
    assert task["command"] == ["sh", "-c", "echo $A$B"]
    assert task["env"] == {"A": "1", "B": "two"}
    assert task["working_dir"] == os.getcwd()
    assert task["resources"]["gpu"] == 0.5
    assert task["resources"]["cpu"] == 0.5
    assert task["resources"]["memory"] == 2**30
    assert job["preemptible"] is False
    assert job["spec"]["lifecycle"]["ttl_after_finish"] == 3600
    assert job["gpu"] == 0.5


def test_list_describe_logs_stop_delete(pier: Pier) -> None:
    pier("submit", "--name", "cli-quick", "--wait", "--", "sh", "-c", "echo quick output")
    pier("submit", "--name", "cli-long", "--", "sleep", "60")

    listed = pier("list").stdout.splitlines()
    assert listed[0].split() == ["NAME", "PROJECT", "STATUS", "GPU", "AGE", "OWNER", "REASON"]
    rows = {line.split()[0]: line.split() for line in listed[1:]}
    assert rows["cli-quick"][1:3] == ["default", "Succeeded"]
    names = [j["name"] for j in pier.json("list", "--status", "succeeded", "--name", "cli-quick")]
    assert names == ["cli-quick"]
    assert len(pier.json("list", "-A", "--limit", "1")) == 1

    assert pier("logs", "cli-quick").stdout == "quick output\n"
    text = pier("describe", "cli-quick").stdout
    assert "Status:" in text and "Succeeded" in text and "History" in text

    stopped = pier("stop", "cli-long")
    assert "cli-long" in stopped.stdout
    # A second stop while the job is still terminating is accepted (as scancel is); once the
    # job has ended, stopping it again is an error.
    deadline = time.monotonic() + 30
    while pier.json("describe", "cli-long")["status"] != "Stopped":
        assert time.monotonic() < deadline, "cli-long never reached Stopped"
        time.sleep(0.05)
    result = pier("stop", "cli-long", code=1)
    assert result.stderr.startswith("error: ")
    pier("delete", "cli-long")
    result = pier("describe", "cli-long", code=1)
    assert result.stderr.splitlines()[0] == "error: job 'cli-long' not found"


def test_projects_and_users(pier: Pier) -> None:
    created = pier.json(
        "project",
        "create",
        "cli-vision",
        "--gpu-quota",
        "2",
        "--max-gpu",
        "4",
        "--memory-quota",
        "64Gi",
        "--node-pool",
        "default",
    )
    assert (created["gpu_quota"], created["max_gpu"]) == (2, 4)
    assert created["memory_quota"] == 64 * 2**30
    updated = pier.json("project", "set-quota", "cli-vision", "--gpu-quota", "3")
    assert (updated["gpu_quota"], updated["max_gpu"]) == (3, 4)

    pier("user", "create", "cli-ana", "--password-stdin", "-p", "cli-vision", stdin="pw-ana-123\n")
    users = {u["name"]: u for u in pier.json("user", "list")}
    assert users["cli-ana"]["projects"] == ["cli-vision"]
    assert "cli-ana" in pier("user", "list").stdout

    pier("project", "create", "cli-audio")
    added = pier.json("project", "add-member", "cli-audio", "cli-ana")
    assert "cli-ana" in added["members"]
    removed = pier.json("project", "remove-member", "cli-audio", "cli-ana")
    assert "cli-ana" not in removed["members"]

    described = pier("project", "describe", "cli-vision").stdout
    assert "GPU quota:" in described and "cli-ana" in described
    assert "cli-vision" in pier("project", "list").stdout

    result = pier("project", "create", "Bad Name", code=2)
    assert result.stderr.startswith("error: invalid project (name: ")


def test_nodes(pier: Pier) -> None:
    (node,) = pier.json("nodes")
    assert len(node["gpus"]) == 4
    table = pier("nodes").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "POOL", "CPUS"]
    assert "4x sim-a100" in table[1]


def test_server_errors_are_one_line(pier: Pier) -> None:
    result = pier("submit", "-p", "cli-nowhere", "--", "true", code=1)
    assert len(result.stderr.splitlines()) == 1
    assert "cli-nowhere" in result.stderr
    assert "Traceback" not in result.output
