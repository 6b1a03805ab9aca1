"""End-to-end fixtures: a real ``pier server`` subprocess and the real ``pier`` CLI.

The server runs in its own session with a temporary ``PIER_HOME``, a free loopback port and
the database of the ``database_url`` fixture (SQLite, or a throwaway PostgreSQL schema when
``PIER_TEST_POSTGRES_URL`` is set). Its output goes to ``server.log`` in the test's temporary
folder, which is attached to the report of a failed test. On teardown the server is ended by
its pid (SIGTERM, then SIGKILL) and every job process group and supervisor that this test's
server started (found through the run records under ``$PIER_HOME/runs``) is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from tests.conftest import kill_run_leftovers

from pier.sdk import Client

ADMIN_PASSWORD = "e2e-admin-password"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
SERVERS_KEY = pytest.StashKey[list["PierServer"]]()


def pier_command() -> list[str]:
    """How to run ``pier``: the console script on PATH, else the one next to this Python,
    else ``python -m pier.cli.main``."""
    found = shutil.which("pier")
    if found:
        return [found]
    beside = Path(sys.executable).with_name("pier")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "pier.cli.main"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _clean_environ() -> dict[str, str]:
    """This process' environment without any PIER_* setting that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIER_")}


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class PierServer:
    """One ``pier server`` process (restartable on the same home and database)."""

    def __init__(
        self,
        home: Path,
        database_url: str,
        *,
        gpus: int | None = 4,
        interval: float = 0.2,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home.parent / f"{home.name}-server.log"
        self.server_env = {
            **_clean_environ(),
            "PIER_HOME": str(home),
            "PIER_HOST": "127.0.0.1",
            "PIER_PORT": str(self.port),
            "PIER_DATABASE_URL": database_url,
            # None: no simulated inventory, the GPUs NVML reports (tests/e2e/test_gpu_real.py)
            **({} if gpus is None else {"PIER_LOCAL_GPUS": str(gpus)}),
            "PIER_SCHEDULER_INTERVAL_SECONDS": str(interval),
            "PIER_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PIER_LOG_LEVEL": "info",
            "PIER_CONTAINER_RUNTIME": "none",  # host processes, podman or not
            **(extra_env or {}),
        }
        # What a CLI user on this machine has: the home (credentials.json) and the url.
        self.env = {
            **_clean_environ(),
            "PIER_HOME": str(home),
            "PIER_URL": self.url,
            "COLUMNS": "200",
            "NO_COLOR": "1",
            "TERM": "dumb",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    # -- process ----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the server is not running"
        return self.proc.pid

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    def start(self) -> None:
        assert self.proc is None, "the server is already running"
        self.home.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in _reap)
        self._log.write(f"==== pier server start #{self.starts} ====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [*pier_command(), "server"],
            env=self.server_env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while True:
                assert self.proc is not None
                code = self.proc.poll()
                if code is not None:
                    self._reap()
                    pytest.fail(f"pier server exited with {code} on start:\n{self.log_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/v1/health").status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    pytest.fail(f"pier server not healthy after {timeout:g}s:\n{self.log_text()}")
                time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9`` the server (a crash): its jobs keep running."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self._reap()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a while; only this server's pid is signalled."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        self._reap()

    def restart(self) -> None:
        self.start()

    def _reap(self) -> None:
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no server log)"

    # -- clients ----------------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.home / "credentials.json").read_text())
        return data

    def client(self) -> Client:
        return Client(self.url, self.credentials()["token"], timeout=30.0)

    def cli(
        self,
        *args: str,
        check: bool = True,
        timeout: float = CLI_TIMEOUT,
        cwd: Path | None = None,
        stdout: IO[bytes] | int = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``pier ARGS`` as the local user would; ``check``: exit 0 expected."""
        result = subprocess.run(
            [*pier_command(), *args],
            env=self.env,
            cwd=cwd or self.home.parent,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            out = result.stdout.decode(errors="replace") if result.stdout else ""
            pytest.fail(
                f"pier {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {out[-4000:]}\nstderr: {result.stderr.decode(errors='replace')}"
            )
        return result

    def cli_json(self, command: str, *args: str) -> Any:
        """``pier COMMAND --output json ARGS``, decoded."""
        return json.loads(self.cli(command, "--output", "json", *args).stdout)

    def cli_popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*pier_command(), *args],
            env=self.env,
            cwd=cwd or self.home.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    # -- run records --------------------------------------------------------------------

    def run_dirs(self, job_id: str | None = None) -> list[Path]:
        """``runs/<job>/<attempt>/<replica>`` folders (of one job, or of all)."""
        base = self.runs_dir
        pattern = f"{job_id}/*/*" if job_id else "*/*/*"
        return sorted(p for p in base.glob(pattern) if p.is_dir())

    def kill_leftovers(self) -> list[str]:
        """SIGKILL every job group and supervisor still alive under this home's run dirs."""
        return kill_run_leftovers(self.runs_dir)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and report.when in ("setup", "call", "teardown"):
        for server in item.stash.get(SERVERS_KEY, []):
            text = server.log_text()
            report.sections.append((f"pier server log ({server.log_path})", text[-30000:]))
    return report


ServerFactory = Callable[..., PierServer]


@pytest.fixture
def pier_server_factory(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[ServerFactory]:
    """Make (and start) pier servers on this test's database; all are cleaned up."""
    servers: list[PierServer] = []
    request.node.stash[SERVERS_KEY] = servers

    def make(
        gpus: int | None = 4,
        interval: float = 0.2,
        extra_env: Mapping[str, str] | None = None,
        start: bool = True,
    ) -> PierServer:
        home = tmp_path / f"home{len(servers)}"
        server = PierServer(home, database_url, gpus=gpus, interval=interval, extra_env=extra_env)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    problems: list[str] = []
    for server in servers:
        server.stop()
        leftovers = server.kill_leftovers()
        if leftovers:
            problems.append(f"{server.home}: killed leftover {', '.join(leftovers)}")
    if problems:
        # Not a failure: a stopped or crashed server leaves its jobs running by design.
        print("\n".join(problems))


@pytest.fixture
def pier_server(pier_server_factory: ServerFactory) -> PierServer:
    """A running ``pier server`` with 4 simulated GPUs."""
    return pier_server_factory(gpus=4)


def job_statuses(client: Client, names: Sequence[str] | None = None) -> dict[str, str]:
    """``{name: status}`` of the default project's jobs (of ``names`` when given)."""
    jobs = {j.name: j.status.value for j in client.list_jobs("default")}
    if names is None:
        return jobs
    return {n: jobs[n] for n in names if n in jobs}
