"""The probe ``sitecustomize`` loads when ``PIER_BENCH_TRACE`` is set (see there)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from pier.api import app as app_module
from pier.api import batching, render
from pier.runtime import Runtime
from pier.store.db import Database

_DIR = os.environ["PIER_BENCH_TRACE"]

_now = time.perf_counter_ns
_data: dict[str, list[Any]] = {
    "gc": [],
    "requests": [],
    "service": [],
    "writes": [],
    "passes": [],
    "lag": [],
    "cpu": [],
}
_gc_start = [0, 0]
_cpu = time.thread_time_ns


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_start[0], _gc_start[1] = _now(), _cpu()
    else:
        wall, cpu = _now() - _gc_start[0], _cpu() - _gc_start[1]
        _data["gc"].append((_gc_start[0], wall, info["generation"], cpu))


gc.callbacks.append(_on_gc)


def _sample_cpu() -> None:
    while True:
        _data["cpu"].append((_now(), time.process_time_ns()))
        time.sleep(0.1)


threading.Thread(target=_sample_cpu, name="pier-probe-cpu", daemon=True).start()


def _dump() -> None:
    path = os.path.join(_DIR, f"trace-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump({"pid": os.getpid(), **_data}, f)


atexit.register(_dump)
# uvicorn re-raises SIGTERM after its graceful shutdown (default action: no atexit)
_raise_signal = signal.raise_signal


def _dump_then_raise(signum: int) -> None:
    _dump()
    _raise_signal(signum)


signal.raise_signal = _dump_then_raise


def _install() -> None:
    lag_started = [False]

    async def _lag_probe() -> None:
        while True:
            t = _now()
            await asyncio.sleep(0.001)
            late = _now() - t - 1_000_000
            if late > 2_000_000:
                _data["lag"].append((t, late))

    original_create = app_module.create_app

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = original_create(*args, **kwargs)
        inner = app.build_middleware_stack

        def build() -> Any:
            stack = inner()

            async def probe(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    await stack(scope, receive, send)
                    return
                if not lag_started[0]:
                    lag_started[0] = True
                    asyncio.get_running_loop().create_task(_lag_probe())
                t0 = _now()
                try:
                    await stack(scope, receive, send)
                finally:
                    _data["requests"].append((t0, _now() - t0))

            return probe

        app.build_middleware_stack = build
        return app

    app_module.create_app = create_app

    original_call = render.call

    async def call(*args: Any, **kwargs: Any) -> Any:
        t0 = _now()
        try:
            return await original_call(*args, **kwargs)
        finally:
            _data["service"].append((t0, _now() - t0))

    render.call = call
    batching.call = call  # type: ignore[attr-defined]

    original_serialised = Database._serialised

    @contextlib.contextmanager
    def serialised(self: Database) -> Iterator[None]:
        t0 = _now()
        with original_serialised(self):
            t1 = _now()
            try:
                yield
            finally:
                _data["writes"].append((t0, t1 - t0, _now() - t1))

    Database._serialised = serialised  # type: ignore[method-assign]

    original_pass = Runtime.run_pass

    async def run_pass(self: Runtime) -> None:
        t0 = _now()
        last_full = self._last_full_pass
        try:
            await original_pass(self)
        finally:
            _data["passes"].append((t0, _now() - t0, self._last_full_pass != last_full))

    Runtime.run_pass = run_pass  # type: ignore[method-assign]


_install()
