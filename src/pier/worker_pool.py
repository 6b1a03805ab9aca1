"""The parent process of ``pier server --workers N``: N uvicorn worker processes, each with
its own listening socket on the same port (``SO_REUSEPORT``), and the control process
(scheduler + executor, no HTTP); any of them is restarted when it dies.

Why not uvicorn's own ``--workers``: its workers share one listening socket, and Linux hands
a new connection to whichever process waits in ``accept`` first, so long-lived keep-alive
connections pile onto one worker (measured: 14 of 16 connections on one of two workers,
and no gain in throughput). With one socket per worker the kernel spreads connections by
their address hash, evenly.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

__all__ = ["WorkerPool", "port_in_use", "reuse_port_socket"]

log = logging.getLogger("pier.server")

RESTART_CHECK_SECONDS = 0.5
PARENT_CHECK_SECONDS = 1.0
LISTEN_BACKLOG = 2048


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes of this user may bind to the same
    address too (the kernel balances connections over them)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def port_in_use(host: str, port: int) -> bool:
    """Whether something already accepts connections there (``SO_REUSEPORT`` would let a
    second server of the same user bind silently beside it)."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    with contextlib.suppress(OSError), socket.create_connection((target, port), timeout=1):
        return True
    return False


def _exit_with_parent(parent: int, grace: float) -> None:
    """A worker must not outlive the pool (a pool killed with SIGKILL cannot stop it): once
    the parent is gone, shut down as on SIGTERM, and for good after ``grace`` seconds."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    log.warning("worker %d: the server process %d is gone; stopping", os.getpid(), parent)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os._exit(1)


def _watch_parent(parent: int, grace: float) -> None:
    threading.Thread(
        target=_exit_with_parent, args=(parent, grace), name="pier-parent-watch", daemon=True
    ).start()


def _worker_main(config: uvicorn.Config, parent: int) -> None:  # pragma: no cover - a child
    config.configure_logging()  # unpickled configs skip __init__, which sets logging up
    _watch_parent(parent, (config.timeout_graceful_shutdown or 5) + 10)
    sock = reuse_port_socket(config.host, config.port)
    uvicorn.Server(config).run(sockets=[sock])


def _control_main(
    control: Callable[[], None], parent: int, grace: float
) -> None:  # pragma: no cover - a child
    _watch_parent(parent, grace)
    control()


class WorkerPool:
    """Runs ``count`` workers of ``config`` (an import-string app), and one process running
    ``control`` (a module-level function, so that it can be spawned; it must return on
    SIGTERM), until SIGINT/SIGTERM."""

    def __init__(
        self, config: uvicorn.Config, count: int, control: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.count = count
        self.control = control
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")

    def _start(self, index: int) -> BaseProcess:
        grace = (self.config.timeout_graceful_shutdown or 5) + 10
        if index == self.count:
            process = self._context.Process(
                target=_control_main,
                args=(self.control, os.getpid(), grace),
                name="pier-control",
                daemon=False,
            )
        else:
            process = self._context.Process(
                target=_worker_main,
                args=(self.config, os.getpid()),
                name="pier-worker",
                daemon=False,
            )
        process.start()
        return process

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def run(self) -> None:
        if port_in_use(self.config.host, self.config.port):
            raise OSError(f"address {self.config.host}:{self.config.port} is already in use")
        # Bound once here: a port we may not use fails now, not in every worker.
        reuse_port_socket(self.config.host, self.config.port).close()
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        total = self.count + (self.control is not None)
        processes = [self._start(i) for i in range(total)]
        log.info(
            "started %d worker processes on %s:%d (pids %s)%s",
            self.count,
            self.config.host,
            self.config.port,
            ", ".join(str(p.pid) for p in processes[: self.count]),
            f" and the control process (pid {processes[-1].pid})" if self.control else "",
        )
        try:
            while not self._stop.wait(RESTART_CHECK_SECONDS):
                for index, process in enumerate(processes):
                    if not process.is_alive():
                        log.warning(
                            "%s %s exited with %s; starting another",
                            process.name,
                            process.pid,
                            process.exitcode,
                        )
                        processes[index] = self._start(index)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()  # SIGTERM: uvicorn's graceful shutdown
            grace = (self.config.timeout_graceful_shutdown or 5) + 5
            for process in processes:
                process.join(grace)
                if process.is_alive():
                    process.kill()
                    process.join()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
