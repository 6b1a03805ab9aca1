"""What this machine offers for placement: CPUs, memory and GPUs (NVML or simulated)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import psutil
import pynvml

from pier.executors.base import Device, NodeInfo

__all__ = [
    "SIMULATED_GPU_MEMORY",
    "SIMULATED_UUID_PREFIX",
    "detect_local_node",
    "framework_memory_defaults",
    "nvml_devices",
    "visible_devices_env",
]

SIMULATED_GPU_MEMORY = 0
"""Device memory reported for simulated GPUs: 0 means unknown (nothing is allocated)."""
SIMULATED_UUID_PREFIX = "SIM-"
"""The UUIDs of simulated devices start with it (a container gets no such device)."""


def detect_local_node(
    *,
    local_gpus: int | None,
    gpu_model: str,
    cpus: float | None,
    memory_bytes: int | None,
    name: str | None = None,
    nvml: ModuleType | Any = pynvml,
) -> NodeInfo:
    """This machine as a node.

    ``local_gpus`` set: that many simulated ``gpu_model`` devices (tests, demos, CPU hosts
    that should look like GPU hosts). Unset: the devices NVML reports, none if it fails.
    ``nvml`` is the ``pynvml`` module, injectable for tests.
    """
    if local_gpus is not None:
        if local_gpus < 0:
            raise ValueError("local_gpus must not be negative")
        gpus = tuple(
            Device(
                index=i,
                model=gpu_model,
                memory_bytes=SIMULATED_GPU_MEMORY,
                uuid=f"{SIMULATED_UUID_PREFIX}{i}",
            )
            for i in range(local_gpus)
        )
    else:
        gpus = nvml_devices(nvml)
    labels = {"gpu-model": gpus[0].model} if gpus else {}
    return NodeInfo(
        name=name or socket.gethostname(),
        cpus=float(cpus) if cpus is not None else float(_cpu_count()),
        memory_bytes=memory_bytes if memory_bytes is not None else psutil.virtual_memory().total,
        gpus=gpus,
        labels=labels,
    )


def nvml_devices(nvml: ModuleType | Any = pynvml) -> tuple[Device, ...]:
    """GPUs as NVML sees them; none on any NVML error (no driver, no library, no device)."""
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no GPUs here
        return ()
    try:
        devices = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            devices.append(
                Device(
                    index=index,
                    model=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                    uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                )
            )
        return tuple(devices)
    except Exception:  # a half-working driver: better no GPUs than a wrong inventory
        return ()
    finally:
        with contextlib.suppress(Exception):  # a broken NVML has nothing left to report
            nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    # older nvidia-ml-py versions return bytes
    return value.decode() if isinstance(value, bytes) else str(value)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def visible_devices_env(devices: Sequence[int], fraction: float) -> dict[str, str]:
    """What makes a replica's CUDA programs see exactly its devices.

    The indexes are NVML's, which number devices in PCI bus order; CUDA's own default order
    is "fastest first", so ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` is what makes index N the same
    device for both on a machine of mixed GPUs. An empty list hides every device.
    """
    env = {
        "CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    if fraction > 0:
        env["PIER_GPU_FRACTION"] = f"{fraction:g}"
    return env


# Of its share of a device, the part a preallocating framework may take: the rest is left
# for the CUDA contexts (about 0.5 GiB each) of the replicas sharing the device.
_PREALLOCATE_OF_SHARE = 0.9


def framework_memory_defaults(fraction: float) -> dict[str, str]:
    """Defaults (a task's own env overrides them) that keep frameworks which grab most of a
    device's memory at start within a fractional share: JAX preallocates 75 % of the device
    and TensorFlow all of it, so without these the second job on a shared device fails with
    out-of-memory. PyTorch allocates on demand; it needs nothing (a job may still call
    ``torch.cuda.set_per_process_memory_fraction(float(os.environ["PIER_GPU_FRACTION"]))``).
    Nothing for whole devices."""
    if fraction <= 0:
        return {}
    return {
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{fraction * _PREALLOCATE_OF_SHARE:.3f}",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
