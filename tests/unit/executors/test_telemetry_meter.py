"""UsageMeter and NvmlProbe: real processes of this test, GPUs behind the GpuProbe seam."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from pier.executors.base import ProcessGroup
from pier.executors.runrecord import _stat
from pier.executors.telemetry import MB, GpuSample, NvmlProbe, UsageMeter


def _group(proc: subprocess.Popen[bytes]) -> ProcessGroup:
    stat = _stat(proc.pid)
    assert stat is not None
    return ProcessGroup(proc.pid, os.getpgid(proc.pid), stat[2])


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    """A process group: a shell whose child holds 32 MiB and keeps a core busy."""
    code = "x = b'\\x01' * (32 * 2**20)\nwhile True: pass"
    proc = subprocess.Popen(
        ["bash", "-c", f'{sys.executable} -c "{code}"; true'], start_new_session=True
    )
    time.sleep(0.5)
    yield proc
    os.killpg(proc.pid, 9)
    proc.wait()


class FakeGpu:
    def __init__(self, samples: dict[int, GpuSample]) -> None:
        self.samples = samples
        self.asked: list[tuple[int, frozenset[int]]] = []

    def sample(self, index: int, pids: Collection[int]) -> GpuSample | None:
        self.asked.append((index, frozenset(pids)))
        return self.samples.get(index)


def test_cpu_and_memory_of_the_whole_tree(burner: subprocess.Popen[bytes]) -> None:
    meter = UsageMeter(gpu=FakeGpu({}), prime_window=0.3)
    first = meter.sample([_group(burner)])
    assert first.processes == 2
    assert first.memory >= 32
    assert 0.05 < first.cpu <= 1.2
    time.sleep(0.3)
    second = meter.sample([_group(burner)])
    assert 0.05 < second.cpu <= 1.2 and second.memory >= 32
    assert first.gpu_duty_cycle is None and first.gpu_memory is None


def test_a_reused_pid_or_ended_job_is_not_measured(burner: subprocess.Popen[bytes]) -> None:
    group = _group(burner)
    wrong_ticks = ProcessGroup(group.pid, group.pgid, group.ticks + 1)
    sample = UsageMeter(gpu=FakeGpu({}), prime_window=0).sample([wrong_ticks])
    assert sample.processes == 0 and sample.cpu == 0 and sample.memory == 0


def test_gpu_duty_cycle_and_memory_share(burner: subprocess.Popen[bytes]) -> None:
    gpu = FakeGpu(
        {
            0: GpuSample(
                utilization=80, memory_used=4 * MB, memory_total=16 * MB, process_memory=1 * MB
            ),
            1: GpuSample(
                utilization=40, memory_used=12 * MB, memory_total=16 * MB, process_memory=None
            ),
        }
    )
    whole = UsageMeter([0, 1], gpu=gpu, prime_window=0).sample([_group(burner)])
    assert whole.gpu_duty_cycle == 60
    assert whole.gpu_memory == 0.5  # (4 + 12) / 32
    assert burner.pid in gpu.asked[0][1]  # the job's pids are handed to NVML
    share = UsageMeter([0], shared=True, gpu=gpu, prime_window=0).sample([_group(burner)])
    assert share.gpu_memory == 0.0625  # its own process' 1 MiB of 16
    # one device NVML does not know (simulated): no GPU figures at all
    unknown = UsageMeter([0, 7], gpu=gpu, prime_window=0).sample([_group(burner)])
    assert unknown.gpu_duty_cycle is None and unknown.gpu_memory is None


class FakeNvml:
    """The few pynvml calls NvmlProbe makes; ``fail_init`` as on a machine without a GPU."""

    NVML_GPU_UTILIZATION_SAMPLES = 1

    def __init__(self, fail_init: bool = False, processes: Any = None, samples: Any = None) -> None:
        self.fail_init = fail_init
        self.inits = 0
        self.processes = processes
        self.samples = samples
        self.since: list[int] = []

    def nvmlDeviceGetSamples(self, handle: int, kind: int, since: int) -> Any:
        assert kind == self.NVML_GPU_UTILIZATION_SAMPLES
        self.since.append(since)
        if self.samples is None:
            raise RuntimeError("Not Found")
        return 1, [
            SimpleNamespace(timeStamp=t, sampleValue=SimpleNamespace(uiVal=v))
            for t, v in self.samples
        ]

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if index >= 1:
            raise RuntimeError("Invalid Argument")
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=37, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=2 * MB, total=8 * MB, free=6 * MB)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> Any:
        if self.processes is None:
            raise RuntimeError("Not Supported")
        return self.processes


def test_nvml_probe_without_a_gpu_answers_none_and_initialises_once() -> None:
    nvml = FakeNvml(fail_init=True)
    probe = NvmlProbe(nvml)
    assert probe.sample(0, {1}) is None
    assert probe.sample(0, {1}) is None
    assert nvml.inits == 1 and probe.available() is False


def test_nvml_probe_reads_a_device_and_its_processes() -> None:
    procs = [
        SimpleNamespace(pid=10, usedGpuMemory=MB),
        SimpleNamespace(pid=11, usedGpuMemory=None),
        SimpleNamespace(pid=99, usedGpuMemory=5 * MB),
    ]
    probe = NvmlProbe(FakeNvml(processes=procs))
    assert probe.sample(0, {10, 11}) == GpuSample(37, 2 * MB, 8 * MB, MB)
    assert probe.sample(1, {10}) is None  # no such device
    assert probe.sample(-1, {10}) is None
    unsupported = NvmlProbe(FakeNvml(processes=None)).sample(0, {10})
    assert unsupported == GpuSample(37, 2 * MB, 8 * MB, None)


def test_an_idle_job_shows_no_load() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        time.sleep(0.2)
        meter = UsageMeter(gpu=FakeGpu({}), prime_window=0.3)
        sample = meter.sample([_group(proc)])
        assert sample.processes == 1
        assert sample.cpu < 0.02
        assert 0 < sample.memory < 20
    finally:
        proc.kill()
        proc.wait()


def test_duty_cycle_averages_the_last_ten_seconds_of_samples() -> None:
    now = 1_800_000_000.0
    us = 1_000_000
    nvml = FakeNvml(
        processes=[],
        samples=[(int((now - 30) * us), 100), (int((now - 8) * us), 20), (int((now - 1) * us), 60)],
    )
    probe = NvmlProbe(nvml, clock=lambda: now)
    sample = probe.sample(0, {1})
    assert sample is not None and sample.utilization == 40  # (20 + 60) / 2: 30 s ago is out
    assert nvml.since == [int((now - 10) * us)]
    assert sample.process_memory == 0
