"""``pier server``: wire the store, executor, scheduler loop and API together: in one
process, or (``workers > 1``) in several uvicorn API worker processes and one control
process that runs the control loop (see ``pier.workers``)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
import uvloop
from fastapi import FastAPI

from pier import gc_tuning
from pier.api.app import create_app
from pier.config import Settings
from pier.executors.base import Executor
from pier.executors.containers import detect_runtime
from pier.executors.gpus import detect_local_node
from pier.executors.local import LocalExecutor
from pier.runtime import Runtime
from pier.scheduler.fifo import FifoPolicy
from pier.scheduler.gittins import GittinsPolicy
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import Policy
from pier.services import accounts
from pier.services.context import IDLE_SCHEDULER, SchedulerHandle, ServiceContext
from pier.store.db import Database
from pier.store.migrate import upgrade
from pier.worker_pool import WorkerPool
from pier.workers import (
    TAKEOVER_EVERY,
    ControlLock,
    StateReader,
    StateWriter,
    WakeSender,
    WorkerScheduler,
    listen_for_wakes,
    wake_address,
)

__all__ = [
    "Server",
    "build",
    "build_worker",
    "control_main",
    "make_executor",
    "make_policy",
    "run_control",
    "serve",
    "worker_app",
    "write_credentials",
]

WORKER_SETTINGS_ENV = "PIER__WORKER_SETTINGS"
"""How ``serve`` hands its settings to uvicorn's worker processes (spawned: they inherit
the environment, not the parent's objects)."""

log = logging.getLogger("pier.server")


@dataclass
class Server:
    settings: Settings
    db: Database
    runtime: Runtime
    ctx: ServiceContext
    app: FastAPI
    bootstrap: accounts.BootstrapResult


def write_credentials(path: Path, url: str, user: str, token: str) -> None:
    """The CLI's credentials, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "user": user, "token": token}, f)
    os.replace(tmp, path)


def make_policy(settings: Settings) -> Policy:
    """The scheduling policy ``scheduler_policy`` names (docs/scheduler.md)."""
    if settings.scheduler_policy == "las":
        return LasPolicy()
    if settings.scheduler_policy == "gittins":
        return GittinsPolicy()
    if settings.scheduler_policy == "fifo":
        return FifoPolicy()
    return QuotaPolicy()


def make_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names."""
    if settings.executor == "ray":
        if not settings.ray_address:
            raise ValueError("executor 'ray' needs ray_address (PIER_RAY_ADDRESS=http://HOST:8265)")
        # Ray is an optional extra (pip install 'pier[ray]'): imported only when chosen.
        ray_executor = importlib.import_module("pier.executors.ray")
        token = settings.ray_token.get_secret_value() if settings.ray_token else None
        executor: Executor = ray_executor.RayExecutor(settings.ray_address, token=token)
        return executor
    node = detect_local_node(
        local_gpus=settings.local_gpus,
        gpu_model=settings.local_gpu_model,
        cpus=settings.local_cpus,
        memory_bytes=settings.local_memory,
    )
    return LocalExecutor(
        settings.runs_dir,
        node,
        cgroup_root=settings.cgroup_root,
        container_runtime=detect_runtime(settings.container_runtime),
    )


def _runtime(settings: Settings, db: Database, executor: Executor) -> Runtime:
    return Runtime(
        db,
        executor,
        make_policy(settings),
        clock=time.time,
        interval=settings.scheduler_interval_seconds,
    )


def _context(
    settings: Settings, db: Database, scheduler: SchedulerHandle, executor: Executor | None
) -> ServiceContext:
    return ServiceContext(
        db=db,
        clock=time.time,
        scheduler=scheduler,
        token_ttl_seconds=settings.token_ttl_seconds,
        files_dir=settings.home / "files",
        elastic_capacity=settings.executor == "ray",  # Ray clusters grow and shrink
        runs_images=isinstance(executor, LocalExecutor) and executor.container_runtime is not None,
    )


def _prepare(settings: Settings) -> tuple[Database, accounts.BootstrapResult]:
    """Home, schema, first admin and the local CLI's credentials: once per server start."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.effective_database_url)
    upgrade(db.engine)
    return db, _bootstrap(settings, _context(settings, db, IDLE_SCHEDULER, None))


def build(settings: Settings) -> Server:
    """Everything but the listening socket: migrate, bootstrap, executor, runtime, app."""
    db, result = _prepare(settings)
    executor = make_executor(settings)
    runtime = _runtime(settings, db, executor)
    ctx = _context(settings, db, runtime, executor)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        gc_tuning.settle()
        try:
            yield
        finally:
            await runtime.close()

    app = create_app(
        ctx,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        metrics_public=settings.metrics_public,
    )
    return Server(settings, db, runtime, ctx, app, result)


def build_worker(settings: Settings) -> FastAPI:
    """One of several API worker processes (``workers > 1``) on an already prepared home:
    it serves the API and hands the control process work (``pier.workers``); it runs no
    scheduling, so its requests never wait for a pass (GIL) or its garbage collections."""
    db = Database(settings.effective_database_url)
    executor = make_executor(settings)
    handle = WorkerScheduler(
        WakeSender(wake_address(settings.home)),
        StateReader(settings.home, executor.capacity()),
        executor,
    )
    ctx = _context(settings, db, handle, executor)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        gc_tuning.settle()
        try:
            yield
        finally:
            db.dispose()

    return create_app(
        ctx,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        metrics_public=settings.metrics_public,
    )


async def run_control(settings: Settings, stop: asyncio.Event) -> None:
    """The control process of ``workers > 1``: once it holds the home's control lock, the
    control loop (scheduler + executor) until ``stop`` is set; no HTTP."""
    lock = ControlLock(settings.home)
    while not lock.try_acquire():  # a previous control process may still be closing
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TAKEOVER_EVERY):
                await stop.wait()
        if stop.is_set():
            return
    db = Database(settings.effective_database_url)
    runtime = _runtime(settings, db, make_executor(settings))
    try:
        await runtime.start()
        transport = await listen_for_wakes(wake_address(settings.home), runtime.wake)
        state = StateWriter(
            settings.home, runtime.nodes, runtime.pending_all, lambda: runtime.passes
        )
        writer = asyncio.create_task(state.run(), name="pier-state-writer")
        log.info("control process %d runs the control loop", os.getpid())
        gc_tuning.settle()
        await stop.wait()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        transport.close()
    finally:
        await runtime.close()
        lock.release()
        db.dispose()


async def _control_until_signal(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_control(settings, stop)


def control_main() -> None:  # pragma: no cover - the control process (tests/e2e)
    """The control process's entry point (``WorkerPool``; settings from the environment)."""
    settings = Settings.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_control_until_signal(settings))


def worker_app() -> FastAPI:
    """uvicorn's factory in each worker process (``serve`` with ``workers > 1``)."""
    settings = Settings.model_validate_json(os.environ[WORKER_SETTINGS_ENV])
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return build_worker(settings)


def _bootstrap(settings: Settings, ctx: ServiceContext) -> accounts.BootstrapResult:
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    result = accounts.bootstrap(ctx, settings.admin_user, password)
    token = result.token
    if token is None and not settings.credentials_file.exists():
        # The local CLI lost its credentials: the machine's owner runs the server, so hand
        # the CLI a fresh admin token (it is written for the owner's eyes only).
        token = accounts.issue_token_for(ctx, settings.admin_user, name="local-cli")
    if token is not None:
        write_credentials(
            settings.credentials_file, settings.effective_url, settings.admin_user, token
        )
    return result


def _banner(s: Settings, db: Database, b: accounts.BootstrapResult) -> str:
    database = db.engine.url.render_as_string()
    workers = f", {s.workers} worker processes" if s.workers > 1 else ""
    lines = [f"pier {s.effective_url}  (home {s.home}, database {database}{workers})"]
    if b.admin_created:
        lines.append(f"created admin user '{b.admin_name}' and project 'default'")
        if b.admin_password:
            lines.append(f"admin password (shown once): {b.admin_password}")
    lines.append(f"the local CLI is logged in through {s.credentials_file}")
    lines.append(
        f"from another machine: pier login --url http://<this-host>:{s.port} -u {s.admin_user}"
        + (
            "  (start with --host 0.0.0.0 to listen beyond this machine)"
            if s.host == "127.0.0.1"
            else ""
        )
    )
    return "\n".join(lines)


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.workers > 1:
        db, result = _prepare(settings)
        print(_banner(settings, db, result), file=sys.stderr, flush=True)
        db.dispose()
        # The admin password has done its work (bootstrap): it does not travel further.
        os.environ[WORKER_SETTINGS_ENV] = settings.model_dump_json(exclude={"admin_password"})
        config = uvicorn.Config(
            "pier.server:worker_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        WorkerPool(config, settings.workers, control=control_main).run()
        return
    server = build(settings)
    print(_banner(settings, server.db, server.bootstrap), file=sys.stderr, flush=True)
    config = uvicorn.Config(
        server.app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
