"""``pier server`` with two worker processes: both serve the API, a third process runs the
control loop, and when that one dies a replacement takes the loop over without losing a
job, while the API workers keep answering."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
import psutil
from tests.e2e.conftest import PierServer, ServerFactory, wait_for


def _control_pid(server: PierServer) -> int:
    text = (server.home / "control.lock").read_text().strip()
    return int(text) if text else 0


def _children(server: PierServer) -> set[int]:
    """The API workers and the control process (multiprocessing's resource tracker is a
    child too)."""
    found = set()
    for child in psutil.Process(server.pid).children():
        with contextlib.suppress(psutil.Error):  # a killed worker is a zombie until reaped
            if child.status() != psutil.STATUS_ZOMBIE and any(
                "spawn_main" in part for part in child.cmdline()
            ):
                found.add(child.pid)
    return found


def _api_workers(server: PierServer) -> set[int]:
    return _children(server) - {_control_pid(server)}


def _fresh_connection_calls(server: PierServer, token: str, n: int) -> list[int]:
    """``n`` requests, each on a new connection, so the kernel spreads them over workers."""
    codes = []
    for _ in range(n):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            response = http.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
            codes.append(response.status_code)
    return codes


def test_two_workers_share_the_work_and_survive_the_control_worker(
    pier_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = pier_server_factory(gpus=1, extra_env={"PIER_WORKERS": "2"})
    wait_for(lambda: len(_children(server)) == 3, 60, "two workers and the control process")
    wait_for(lambda: _control_pid(server) in _children(server), 60, "a control process")
    api_workers = _api_workers(server)
    assert len(api_workers) == 2
    with server.client() as client:
        token = server.credentials()["token"]
        assert _fresh_connection_calls(server, token, 20) == [200] * 20

        gate = tmp_path / "gate"
        hold = client.submit(
            {
                "name": "hold",
                "tasks": [
                    {
                        "command": ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done"],
                        "resources": {"gpu": 1},
                    }
                ],
            }
        )
        queued = client.submit(
            {"name": "queued", "tasks": [{"command": ["echo", "ran"], "resources": {"gpu": 1}}]}
        )
        quick = [
            client.submit({"name": f"quick-{i}", "tasks": [{"command": ["echo", f"q{i}"]}]})
            for i in range(6)
        ]
        for i, job in enumerate(quick):
            assert client.wait(job.id, timeout=60).status.value == "Succeeded"
            assert b"".join(client.logs(job.id)) == f"q{i}\n".encode()
        wait_for(lambda: client.get_job(hold.id).status.value == "Running", 60, "hold running")

        def explained() -> bool:  # whichever worker answers, the reason is there
            views = [client.get_job(queued.id) for _ in range(4)]
            return all(v.status.value == "Pending" and v.pending_reason for v in views)

        wait_for(explained, 30, "the queued job's pending reason")

        control = _control_pid(server)
        os.kill(control, signal.SIGKILL)
        wait_for(
            lambda: (
                _control_pid(server) not in (0, control)
                and _control_pid(server) in _children(server)
            ),
            60,
            "a new control process taking over the control loop",
        )
        # the API workers were not involved: the same two processes still serve
        assert _api_workers(server) == api_workers
        assert _fresh_connection_calls(server, token, 10) == [200] * 10
        gate.touch()
        assert client.wait(hold.id, timeout=60).status.value == "Succeeded"
        assert client.wait(queued.id, timeout=60).status.value == "Succeeded"
        after = client.submit({"name": "after", "tasks": [{"command": ["echo", "after"]}]})
        assert client.wait(after.id, timeout=60).status.value == "Succeeded"
        # one API worker killed: replaced, and the API answers on both again
        os.kill(min(api_workers), signal.SIGKILL)
        wait_for(
            lambda: len(_api_workers(server)) == 2 and min(api_workers) not in _children(server),
            60,
            "a replacement API worker",
        )
        assert _fresh_connection_calls(server, token, 10) == [200] * 10
