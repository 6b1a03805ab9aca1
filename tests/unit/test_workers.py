"""The pieces that let several worker processes share one home: the control lock, the
wake socket and the published scheduler state."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from pier import workers
from pier.executors.base import Device, NodeInfo
from pier.scheduler.types import PendingInfo
from pier.workers import (
    ControlLock,
    StateReader,
    StateWriter,
    WakeSender,
    listen_for_wakes,
    wake_address,
)


def test_control_lock_is_exclusive_and_released_on_close(tmp_path: Path) -> None:
    first, second = ControlLock(tmp_path), ControlLock(tmp_path)
    assert first.try_acquire()
    assert first.try_acquire()  # idempotent for its holder
    assert not second.try_acquire()
    assert (tmp_path / "control.lock").read_text() == f"{os.getpid()}\n"
    first.release()
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()


async def test_wakes_reach_the_control_worker(tmp_path: Path) -> None:
    received: list[str | None] = []
    got = asyncio.Event()

    def wake(submitted: str | None) -> None:
        received.append(submitted)
        got.set()

    address = wake_address(tmp_path)
    transport = await listen_for_wakes(address, wake)
    sender = WakeSender(address)
    try:
        for payload in ("job-1", None, "x" * 500, "bad\nid"):
            got.clear()
            sender.send(payload)
            if payload is not None and len(payload) > 200:
                await asyncio.sleep(0.05)  # oversized: dropped, nothing arrives
                continue
            await asyncio.wait_for(got.wait(), 5)
    finally:
        sender.close()
        transport.close()
    # a non-printable id is no job id: it still wakes, as a plain wake
    assert received == ["job-1", None, None]


def test_wake_without_a_listener_is_harmless(tmp_path: Path) -> None:
    sender = WakeSender(wake_address(tmp_path))
    sender.send("job-1")  # nobody listens: the periodic pass covers it
    sender.close()


def test_homes_have_distinct_wake_addresses(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert wake_address(a) != wake_address(b)
    assert wake_address(a) == wake_address(a)
    assert wake_address(a).startswith("\0")


def test_published_state_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "STATE_CHECK_EVERY", 0.0)
    node = NodeInfo(
        name="n1",
        cpus=8.0,
        memory_bytes=2**34,
        gpus=(Device(0, "H100", 80 * 2**30, "GPU-1"),),
        labels={"gpu-model": "H100"},
        pool="a100",
    )
    pending = {"j1": PendingInfo("Quota", "project over quota", 3)}
    version = [1]
    writer = StateWriter(tmp_path, lambda: [node], lambda: pending, lambda: version[0])
    fallback = NodeInfo(name="local", cpus=1.0, memory_bytes=1)
    reader = StateReader(tmp_path, [fallback])
    assert reader.nodes() == (fallback,)  # nothing published yet
    assert reader.pending_info("j1") is None

    captured = writer.capture()
    assert captured is not None
    writer.write(captured)
    assert writer.capture() is None  # unchanged version: nothing to write
    assert reader.nodes() == (node,)
    assert reader.pending_info("j1") == PendingInfo("Quota", "project over quota", 3)

    pending = {"j2": PendingInfo("Capacity", "waiting", 0)}
    version[0] = 2
    time.sleep(0.01)  # a distinct mtime
    captured = writer.capture()
    assert captured is not None
    writer.write(captured)
    assert reader.pending_info("j1") is None
    assert reader.pending_info("j2") == PendingInfo("Capacity", "waiting", 0)


def test_a_torn_state_file_keeps_the_last_good_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "STATE_CHECK_EVERY", 0.0)
    pending = {"j1": PendingInfo("Quota", "over quota", 1)}
    writer = StateWriter(tmp_path, list, lambda: pending, lambda: 1)
    captured = writer.capture()
    assert captured is not None
    writer.write(captured)
    reader = StateReader(tmp_path, [])
    assert reader.pending_info("j1") is not None
    time.sleep(0.01)
    (tmp_path / workers.STATE_FILE).write_text('{"nodes": [')
    assert reader.pending_info("j1") == PendingInfo("Quota", "over quota", 1)
