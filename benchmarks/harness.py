"""What every benchmark shares: a pier server in a throwaway home, a fresh PostgreSQL
database, machine facts, a tiny API client and JSON-line output.

Only 127.0.0.1 is ever contacted; only processes started here are ever signalled (by pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

import pier
from benchmarks.loadgen import Connection, Response, build_request

__all__ = [
    "HOST",
    "ApiClient",
    "PierServer",
    "emit",
    "machine_info",
    "postgres_database",
    "probe_env",
]

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
SERVE = "from pier.config import Settings; from pier.server import serve; serve(Settings())"
TERMINAL = frozenset({"Succeeded", "Failed", "Stopped"})


def emit(bench: str, **fields: Any) -> None:
    """One machine-readable result line (prefixed so it is easy to grep from a log)."""
    print("RESULT " + json.dumps({"bench": bench, **fields}, sort_keys=True), flush=True)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **_pier_under_test(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def _pier_under_test() -> dict[str, Any]:
    """Which pier the servers import: run_all.sh's frozen copy of HEAD, or the working tree."""
    src = Path(pier.__file__).resolve().parent.parent
    snapshot = os.environ.get("PIER_BENCH_COMMIT")
    if snapshot and not src.is_relative_to(ROOT):
        return {"pier_commit": snapshot, "pier_src": "snapshot of HEAD"}
    dirty = bool(_git("status", "--porcelain", "--", "src"))
    return {
        "pier_commit": _git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else ""),
        "pier_src": str(src),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class ApiClient:
    """Sequential JSON calls over one keep-alive connection."""

    IDLE_REOPEN_S = 2.0  # uvicorn closes keep-alive connections idle for 5 s

    def __init__(self, conn: Connection, port: int, token: str) -> None:
        self.conn = conn
        self.port = port
        self.host = f"{HOST}:{port}"
        self.token = token
        self._used = time.monotonic()

    @classmethod
    async def open(cls, port: int, token: str) -> ApiClient:
        return cls(await Connection.open(HOST, port), port, token)

    def raw(self, method: str, path: str, body: Any = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        return build_request(method, path, host=self.host, token=self.token, body=data)

    async def call(self, method: str, path: str, body: Any = None) -> Response:
        if time.monotonic() - self._used > self.IDLE_REOPEN_S:
            await self.conn.close()
            self.conn = await Connection.open(HOST, self.port)
        response = await self.conn.send(self.raw(method, path, body))
        self._used = time.monotonic()
        return response

    async def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.call(method, path, body)
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {response.body[:300]!r}")
        return response.json()

    async def wait_status(
        self, job_id: str, statuses: frozenset[str], timeout: float = 60.0, poll: float = 0.05
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = await self.json("GET", f"/v1/jobs/{job_id}")
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']}")
            await asyncio.sleep(poll)

    async def close(self) -> None:
        await self.conn.close()


class PierServer:
    """``serve(Settings())`` in a child process with its own ``PIER_HOME`` and port."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        local_gpus: int | None = None,
        home: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.own_home = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="pier-bench-"))
        self.port = free_port()
        self.database_url = database_url
        self.local_gpus = local_gpus
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def start(self, timeout: float = 60.0) -> PierServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIER_")}
        env.update(PIER_HOME=str(self.home), PIER_PORT=str(self.port), PIER_HOST=HOST)
        if self.database_url:
            env["PIER_DATABASE_URL"] = self.database_url
        if self.local_gpus is not None:
            env["PIER_LOCAL_GPUS"] = str(self.local_gpus)
        env.update(self.extra_env)
        log = open(self.home / "server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE], env=env, stdout=log, stderr=log, cwd=self.home
        )
        log.close()
        deadline = time.monotonic() + timeout
        creds = self.home / "credentials.json"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home / 'server.log').read_text()}")
            if creds.exists() and _http_ok(self.port):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("server did not come up")
            time.sleep(0.05)
        self.token = json.loads(creds.read_text())["token"]
        return self

    def server_processes(self) -> list[psutil.Process]:
        """The server process and, with ``PIER_WORKERS`` > 1, its worker processes (job
        processes and their supervisors excluded)."""
        main = self.process
        workers = []
        for child in main.children():
            with contextlib.suppress(psutil.Error):
                if any("spawn_main" in part for part in child.cmdline()):
                    workers.append(child)
        return [main, *workers]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server's processes (reaped children excluded)."""
        total = 0.0
        for proc in self.server_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                total += float(t.user + t.system)
        return total

    def cpu_by_process(self) -> dict[int, float]:
        """``cpu_seconds`` per server process (pid -> user + system seconds)."""
        found = {}
        for proc in self.server_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                found[proc.pid] = float(t.user + t.system)
        return found

    def children_cpu_seconds(self) -> float:
        """User + system CPU of the server processes' reaped children: the supervisors and
        the jobs they ran (a supervisor waits for its job, so the job's CPU is in it)."""
        total = 0.0
        for proc in self.server_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = proc.cpu_times()
                total += float(t.children_user + t.children_system)
        return total

    def rss_mib(self) -> float:
        return round(self.process.memory_info().rss / 2**20, 1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        if self.own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> PierServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.cleanup()


def _http_ok(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(f"GET /v1/health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the server of ``admin_url`` (its ``postgres`` database), dropped
    afterwards; yields the new database's URL."""
    import psycopg  # noqa: PLC0415 - only the PostgreSQL runs need it

    name = f"pier_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def probe_env(folder: Path) -> dict[str, str]:
    """The server environment that loads ``benchmarks/probe`` (its ``sitecustomize``) and
    has it write its traces into ``folder`` (see ``benchmarks.trace_summary``)."""
    path = [str(ROOT / "benchmarks" / "probe"), os.environ.get("PYTHONPATH", "")]
    return {
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "PIER_BENCH_TRACE": str(folder.resolve()),
    }


@contextlib.contextmanager
def py_spy(pid: int, out: Path | None, rate: int = 200, gil: bool = True) -> Iterator[None]:
    """Sample ``pid`` with py-spy (collapsed stacks to ``out``) while the block runs; a no-op
    when ``out`` is None. With ``gil``, only the thread holding the GIL is sampled: where the
    Python CPU time goes. Summarise the file with ``python -m benchmarks.pyspy_top``."""
    if out is None:
        yield
        return
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [exe, "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out)]
    proc = subprocess.Popen(
        [*argv, "--threads", "--subprocesses", *(["--gil"] if gil else [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached before the measured part starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        proc.wait(timeout=60)


class CpuMeter:
    """Busy CPU of the whole machine over a window, to show how much the neighbours took:
    ``machine_busy_cores`` counts every process (the server, this client, PostgreSQL, and
    anything else running on the machine)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._busy0 = self._busy()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0))

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self._t0
        return {"machine_busy_cores": round((self._busy() - self._busy0) / max(wall, 1e-9), 2)}
