"""A real Ray cluster on 127.0.0.1 for tests and benchmarks: a head and one worker node.

Every node is a ``ray start --block`` in its own session. Both nodes share one short
``--temp-dir``: Ray reads a job's log through the session directory it learnt from the head,
so two nodes on one machine with different temp dirs would lose the logs of jobs on the
second node. Stopping a node signals exactly the processes it started (its ``ray start``
process and that process' descendants) by pid; tearing the cluster down also sweeps any
process whose command line names the cluster's temp dir (daemons Ray re-parented). Never
``ray stop`` or a kill by name: other Ray clusters may be running on the same machine.

Run as a script to keep a cluster up by hand: ``python tests/integration/executors/ray_cluster.py``.
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
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

__all__ = ["RayCluster", "RayNode", "free_port", "ray_cluster"]

RAY_BIN = Path(sys.executable).with_name("ray")

# Small settings for a shared 2-core machine: no memory monitor, no usage stats, and the
# node's own IP kept at 127.0.0.1 (Ray would otherwise move to the primary interface).
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_memory_monitor_refresh_ms": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    "RAY_JOB_STOP_WAIT_TIME_S": "3",
    "RAY_enable_metrics_collection": "0",
    "RAY_PROMETHEUS_HOST": "",
}
OBJECT_STORE_BYTES = 100 * 1024 * 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports(n: int) -> list[int]:
    """``n`` distinct free ports (held open together so none is handed out twice)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class RayNode:
    """One ``ray start --block`` and everything it spawned."""

    name: str
    argv: list[str]
    temp_dir: Path
    log_path: Path
    sweep: bool = False
    """Also count every process naming ``temp_dir`` as this node's (for the last node
    stopped: the temp dir is shared)."""
    proc: subprocess.Popen[bytes] | None = None
    known: set[int] = field(default_factory=set)

    def start(self) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **RAY_ENV},
                start_new_session=True,
            )
        finally:
            log.close()

    def processes(self) -> list[psutil.Process]:
        """Every live process of this node (see the module docstring)."""
        found: dict[int, psutil.Process] = {}
        if self.proc is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(self.proc.pid)
                found[root.pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
        marker = str(self.temp_dir)
        for proc in psutil.process_iter(["pid", "cmdline"]) if self.sweep else ():
            with contextlib.suppress(psutil.Error):
                if proc.pid in found or proc.pid == os.getpid():
                    continue
                if any(marker in arg for arg in proc.info["cmdline"] or ()):
                    found[proc.pid] = proc
        self.known.update(found)
        return list(found.values())

    def kill(self, sig: signal.Signals = signal.SIGKILL, wait: float = 15.0) -> None:
        """Signal every process of the node; SIGKILL whatever outlives ``wait``."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _, alive = psutil.wait_procs(procs, timeout=wait)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        # Ray respawns nothing once its parents are gone, but a last sweep catches a worker
        # forked while the first signals were in flight.
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.proc = None


@dataclass
class RayCluster:
    """A head (``head_gpus`` logical GPUs, pool ``head``) and a worker node (pool
    ``workers``, label ``zone=b``, custom resource ``special``)."""

    root: Path
    gcs_port: int
    dashboard_port: int
    head: RayNode
    worker: RayNode | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def alive_nodes(self) -> list[dict[str, object]]:
        response = httpx.get(f"{self.address}/api/v0/nodes", params={"limit": 100}, timeout=10)
        response.raise_for_status()
        nodes = response.json()["data"]["result"]["result"]
        return [n for n in nodes if n.get("state") == "ALIVE"]

    def wait_ready(self, nodes: int, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                alive = self.alive_nodes()
                if len(alive) >= nodes:
                    # The Jobs API answers a little after the state API.
                    httpx.get(f"{self.address}/api/jobs/", timeout=10).raise_for_status()
                    return
                last = f"{len(alive)} node(s) alive"
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                last = exc
            for node in (self.head, self.worker):
                if node is not None and node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(
                        f"ray node {node.name} exited; log:\n{node.log_path.read_text()[-3000:]}"
                    )
            time.sleep(0.5)
        raise TimeoutError(f"Ray cluster not ready after {timeout}s: {last}")

    def kill_head(self) -> None:
        """SIGKILL the head. Its worker node goes too: without GCS fault tolerance a raylet
        exits once its GCS is gone (after a reconnect timeout, here at once), and a new
        head would refuse to start on the port its processes still name."""
        self.head.kill(signal.SIGKILL)
        if self.worker is not None:
            self.worker.kill(signal.SIGKILL)
            self.worker = None

    def restart_head(self, timeout: float = 180.0) -> None:
        """Start the head again on the same ports (its jobs are gone: no GCS persistence)."""
        self.head.start()
        self.wait_ready(1, timeout)

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.kill(signal.SIGTERM, wait=10)
        self.head.sweep = True
        self.head.kill(signal.SIGTERM, wait=10)


def _head_argv(temp_dir: Path, gcs: int, dashboard: int, ports: list[int], gpus: int) -> list[str]:
    return [
        str(RAY_BIN),
        "start",
        "--head",
        "--block",
        f"--port={gcs}",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        "--include-dashboard=true",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--num-cpus=2",
        f"--num-gpus={gpus}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--labels=pier.dev/pool=head",
        *_node_ports(ports),
        f"--ray-client-server-port={ports[6]}",
    ]


def _worker_argv(temp_dir: Path, gcs: int, ports: list[int], gpus: int) -> list[str]:
    return [
        str(RAY_BIN),
        "start",
        "--block",
        f"--address=127.0.0.1:{gcs}",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--num-cpus=2",
        f"--num-gpus={gpus}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--labels=pier.dev/pool=workers,zone=b",
        "--resources=" + json.dumps({"special": 2}),
        *_node_ports(ports),
    ]


def _node_ports(ports: list[int]) -> list[str]:
    return [
        f"--node-manager-port={ports[0]}",
        f"--object-manager-port={ports[1]}",
        f"--dashboard-agent-listen-port={ports[2]}",
        f"--dashboard-agent-grpc-port={ports[3]}",
        f"--runtime-env-agent-port={ports[4]}",
        f"--metrics-export-port={ports[5]}",
        "--min-worker-port=0",
        "--max-worker-port=0",
    ]


@contextlib.contextmanager
def ray_cluster(
    *, head_gpus: int = 1, worker_gpus: int = 2, with_worker: bool = True
) -> Iterator[RayCluster]:
    # Unix socket paths are limited to ~107 bytes: keep the temp dir short.
    root = Path(tempfile.mkdtemp(prefix="pray", dir="/tmp"))
    gcs, dashboard, *rest = _ports(2 + 7 + 6)
    temp_dir = root / "t"
    head_argv = _head_argv(temp_dir, gcs, dashboard, rest[:7], head_gpus)
    head = RayNode("head", head_argv, temp_dir, root / "head.log")
    cluster = RayCluster(root, gcs, dashboard, head)
    try:
        head.start()
        cluster.wait_ready(1)
        if with_worker:
            worker_argv = _worker_argv(temp_dir, gcs, rest[7:], worker_gpus)
            worker = RayNode("worker", worker_argv, temp_dir, root / "worker.log")
            cluster.worker = worker
            worker.start()
            cluster.wait_ready(2)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with ray_cluster() as c:
        print(c.address, flush=True)
        for n in c.alive_nodes():
            print(json.dumps(n, indent=1))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
