"""detect_local_node: simulated inventories and NVML through an injected fake module."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from pier.executors import detect_local_node
from pier.executors.base import Device
from pier.executors.gpus import framework_memory_defaults, nvml_devices, visible_devices_env


class NVMLError(Exception):
    pass


def fake_nvml(names: list[Any], *, fail_init: bool = False, fail_at: int | None = None) -> Any:
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def handle(index: int) -> int:
        if index == fail_at:
            raise NVMLError("GPU is lost")
        return index

    return SimpleNamespace(
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(names),
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetName=lambda h: names[h],
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=(h + 1) * 80 * 2**30),
        nvmlDeviceGetUUID=lambda h: f"GPU-{h:04d}".encode() if h % 2 else f"GPU-{h:04d}",
    )


def test_simulated_gpus() -> None:
    node = detect_local_node(
        local_gpus=4, gpu_model="H100", cpus=8, memory_bytes=2**35, name="sim-node"
    )
    assert node.name == "sim-node"
    assert node.cpus == 8.0 and node.memory_bytes == 2**35
    assert [d.index for d in node.gpus] == [0, 1, 2, 3]
    assert {d.model for d in node.gpus} == {"H100"}
    assert len({d.uuid for d in node.gpus}) == 4
    assert node.labels["gpu-model"] == "H100"


def test_simulated_zero_gpus_has_no_model_label() -> None:
    node = detect_local_node(local_gpus=0, gpu_model="H100", cpus=None, memory_bytes=None)
    assert node.gpus == () and "gpu-model" not in node.labels


def test_negative_simulated_gpus_rejected() -> None:
    with pytest.raises(ValueError):
        detect_local_node(local_gpus=-1, gpu_model="x", cpus=None, memory_bytes=None)


def test_defaults_come_from_the_machine() -> None:
    node = detect_local_node(
        local_gpus=None, gpu_model="ignored", cpus=None, memory_bytes=None, nvml=fake_nvml([])
    )
    assert node.name == socket.gethostname()
    assert node.cpus == float(len(os.sched_getaffinity(0)))
    assert node.memory_bytes == psutil.virtual_memory().total
    assert node.gpus == ()


def test_nvml_inventory() -> None:
    nvml = fake_nvml([b"NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"])
    node = detect_local_node(
        local_gpus=None, gpu_model="ignored", cpus=2, memory_bytes=1, nvml=nvml
    )
    assert node.gpus == (
        Device(0, "NVIDIA A100-SXM4-80GB", 80 * 2**30, "GPU-0000"),
        Device(1, "NVIDIA A100-SXM4-80GB", 160 * 2**30, "GPU-0001"),
    )
    assert node.labels == {"gpu-model": "NVIDIA A100-SXM4-80GB"}
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_unavailable_means_no_gpus() -> None:
    assert nvml_devices(fake_nvml(["x"], fail_init=True)) == ()


def test_nvml_error_while_listing_means_no_gpus() -> None:
    nvml = fake_nvml(["a", "b"], fail_at=1)
    assert nvml_devices(nvml) == ()
    assert nvml.calls == ["init", "shutdown"]


def test_real_nvml_on_this_machine_does_not_raise() -> None:
    node = detect_local_node(local_gpus=None, gpu_model="x", cpus=None, memory_bytes=None)
    assert all(d.model for d in node.gpus)


def test_visible_devices_are_numbered_in_nvml_order() -> None:
    assert visible_devices_env([2, 0], 0.0) == {
        "CUDA_VISIBLE_DEVICES": "2,0",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    # no device: every device hidden, not "all visible"
    assert visible_devices_env([], 0.0)["CUDA_VISIBLE_DEVICES"] == ""
    assert visible_devices_env([1], 0.25)["PIER_GPU_FRACTION"] == "0.25"


def test_framework_memory_defaults_keep_a_share_within_its_fraction() -> None:
    assert framework_memory_defaults(0.0) == {}
    half = framework_memory_defaults(0.5)
    assert half["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    # two halves together stay below the whole device, leaving room for CUDA contexts
    assert 2 * float(half["XLA_PYTHON_CLIENT_MEM_FRACTION"]) < 1.0
    assert float(framework_memory_defaults(0.25)["XLA_PYTHON_CLIENT_MEM_FRACTION"]) < 0.25
