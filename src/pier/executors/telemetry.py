"""Measured usage of a running job: CPU load and memory of its process trees, and GPU duty
cycle and memory share of its devices.

- CPU: user + system seconds consumed by every process of the job between two samples,
  divided by the wall time between them (``1.0`` = one core fully busy). A process that
  appeared meanwhile counts from its start; the very first sample measures over a short
  window of its own.
- Memory: the sum of the processes' resident set sizes, in megabytes (2**20 bytes, as the
  Neuro SDK's ``memory_mb``). Pages shared between forked workers count once per process.
- The processes of a replica: its job process (pid and start ticks as the supervisor
  recorded them, so a reused pid is never measured), every descendant, and every process
  still in its process group (a daemonised child whose parent died).
- GPU: through NVML where a device is present. ``gpu_duty_cycle`` is the percent of the
  past ``DUTY_WINDOW`` (10 s, as the Neuro SDK defines it) the job's devices were busy: the
  mean of NVML's utilisation samples of that window (where the driver keeps none, its
  current utilisation rate), averaged over the devices; ``gpu_memory`` is used / total
  memory over them, counting only the job's own processes when it has a share of a device
  (others use the rest). Both are ``None`` when the job has no device, when NVML is
  unavailable, or when a device index is not one NVML knows (simulated GPUs).

:class:`GpuProbe` is the seam for unit tests; :class:`NvmlProbe` is the real one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import psutil
import pynvml

from pier.executors import runrecord as rr
from pier.executors.base import ProcessGroup

__all__ = [
    "MB",
    "GpuProbe",
    "GpuSample",
    "NvmlProbe",
    "UsageMeter",
    "UsageSample",
    "default_gpu_probe",
]

MB = 2**20
PRIME_WINDOW = 0.2
"""Seconds the first sample of a meter measures CPU over (it has no earlier sample)."""
DUTY_WINDOW = 10.0
"""Seconds of GPU utilisation samples the duty cycle averages."""


@dataclass(frozen=True, slots=True)
class GpuSample:
    utilization: int
    """Percent of the past ``DUTY_WINDOW`` the device was busy (0-100)."""
    memory_used: int
    memory_total: int
    process_memory: int | None
    """Bytes used by the given processes; None where NVML cannot tell per process."""


class GpuProbe(Protocol):
    def sample(self, index: int, pids: Collection[int]) -> GpuSample | None:
        """Device ``index`` now, or None when there is no such device (or no NVML)."""
        ...


class NvmlProbe:
    """NVML, initialised on first use; every failure (no library, no driver, no device)
    answers None. Thread-safe (NVML is; initialisation is guarded)."""

    def __init__(
        self, nvml: ModuleType | Any = pynvml, clock: Callable[[], float] = time.time
    ) -> None:
        self._nvml = nvml
        self._clock = clock
        self._lock = threading.Lock()
        self._ready: bool | None = None

    def available(self) -> bool:
        with self._lock:
            if self._ready is None:
                try:
                    self._nvml.nvmlInit()
                    self._ready = True
                except Exception:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
                    self._ready = False
            return self._ready

    def sample(self, index: int, pids: Collection[int]) -> GpuSample | None:
        if index < 0 or not self.available():
            return None
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            utilization = self._duty_cycle(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception:  # an index NVML does not know, a device that fell off the bus
            return None
        process_memory: int | None = None
        with contextlib.suppress(Exception):  # not supported on every device and driver
            running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            process_memory = sum(int(p.usedGpuMemory or 0) for p in running if int(p.pid) in pids)
        return GpuSample(
            utilization=max(0, min(100, utilization)),
            memory_used=int(memory.used),
            memory_total=int(memory.total),
            process_memory=process_memory,
        )

    def _duty_cycle(self, handle: Any) -> int:
        nvml = self._nvml
        since = int((self._clock() - DUTY_WINDOW) * 1_000_000)  # NVML: microseconds
        with contextlib.suppress(Exception):  # NOT_FOUND (no samples yet), NOT_SUPPORTED
            _kind, samples = nvml.nvmlDeviceGetSamples(
                handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, since
            )
            values = [int(s.sampleValue.uiVal) for s in samples if int(s.timeStamp) >= since]
            if values:
                return round(sum(values) / len(values))
        return int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)


_default_probe: NvmlProbe | None = None
_default_lock = threading.Lock()


def default_gpu_probe() -> NvmlProbe:
    """The process-wide NVML probe (NVML is initialised once per process)."""
    global _default_probe
    with _default_lock:
        if _default_probe is None:
            _default_probe = NvmlProbe()
        return _default_probe


@dataclass(frozen=True, slots=True)
class UsageSample:
    timestamp: float
    """Seconds since the epoch, like ``time.time()``."""
    cpu: float
    memory: float
    """Megabytes (2**20 bytes)."""
    gpu_duty_cycle: int | None
    gpu_memory: float | None
    """Used share of the job's GPU memory, 0..1."""
    processes: int


class UsageMeter:
    """Successive samples of one job attempt's usage. Blocking (reads /proc and NVML):
    call :meth:`sample` from a worker thread, with the attempt's job processes as the
    executor recorded them.

    ``devices``: the GPU indexes the job was placed on; ``shared``: it holds only a share of
    them.
    """

    def __init__(
        self,
        devices: Sequence[int] = (),
        *,
        shared: bool = False,
        gpu: GpuProbe | None = None,
        clock: Callable[[], float] = time.time,
        prime_window: float = PRIME_WINDOW,
    ) -> None:
        self._devices = tuple(devices)
        self._shared = shared
        self._gpu = gpu if gpu is not None else default_gpu_probe()
        self._clock = clock
        self._prime_window = prime_window
        self._previous: dict[tuple[int, float], float] | None = None
        self._previous_at = 0.0

    def sample(self, processes: Sequence[ProcessGroup]) -> UsageSample:
        if self._previous is None:
            self._previous, _ = self._cpu_seconds(_tree(processes))
            self._previous_at = time.monotonic()
            time.sleep(self._prime_window)
        tree = _tree(processes)
        seconds, memory = self._cpu_seconds(tree)
        now = time.monotonic()
        elapsed = max(now - self._previous_at, 1e-6)
        wall_start = time.time() - elapsed
        busy = 0.0
        for key, total in seconds.items():
            before = self._previous.get(key)
            if before is not None:
                busy += max(0.0, total - before)
            elif key[1] >= wall_start - 0.05:  # started since the last sample: all of it
                busy += total
        self._previous, self._previous_at = seconds, now
        duty, gpu_memory = self._gpu_usage({p.pid for p in tree})
        return UsageSample(
            timestamp=self._clock(),
            cpu=round(busy / elapsed, 4),
            memory=round(memory / MB, 2),
            gpu_duty_cycle=duty,
            gpu_memory=gpu_memory,
            processes=len(tree),
        )

    @staticmethod
    def _cpu_seconds(tree: Sequence[psutil.Process]) -> tuple[dict[tuple[int, float], float], int]:
        seconds: dict[tuple[int, float], float] = {}
        memory = 0
        for proc in tree:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
                    created = proc.create_time()
            except psutil.Error:  # exited meanwhile
                continue
            seconds[(proc.pid, created)] = times.user + times.system
            memory += rss
        return seconds, memory

    def _gpu_usage(self, pids: Collection[int]) -> tuple[int | None, float | None]:
        if not self._devices:
            return None, None
        samples = [self._gpu.sample(index, pids) for index in self._devices]
        known = [s for s in samples if s is not None]
        if len(known) != len(samples):
            return None, None
        duty = round(sum(s.utilization for s in known) / len(known))
        total = sum(s.memory_total for s in known)
        if self._shared and all(s.process_memory is not None for s in known):
            used = sum(s.process_memory or 0 for s in known)
        else:
            used = sum(s.memory_used for s in known)
        share = round(min(1.0, used / total), 4) if total > 0 else None
        return duty, share


def _tree(processes: Sequence[ProcessGroup]) -> list[psutil.Process]:
    """Every live process of the given replicas (see the module docstring)."""
    found: dict[int, psutil.Process] = {}
    groups: set[int] = set()
    for group in processes:
        if not rr.is_alive(group.pid, group.ticks):
            continue
        groups.add(group.pgid)
        try:
            leader = psutil.Process(group.pid)
            found[leader.pid] = leader
            for child in leader.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            continue
    if groups:
        for proc in psutil.process_iter():
            if proc.pid in found:
                continue
            with contextlib.suppress(OSError):
                if os.getpgid(proc.pid) in groups:
                    found[proc.pid] = proc
    return list(found.values())
