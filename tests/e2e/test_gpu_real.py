"""Real NVIDIA GPUs through NVML and the CUDA driver: the inventory a server reports, the
device a whole-GPU job sees, and two half-GPU jobs sharing one device.

CI has no GPU, so these skip there (the simulated inventory drives the same placement and
environment code in tests/integration); run them on a GPU host with
``pytest tests/e2e/test_gpu_real.py``. What they check can only be seen on real hardware:
that pier's device index is the device CUDA opens, and that frameworks which preallocate
device memory stay within a fractional share.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
from tests.e2e.conftest import PierServer, ServerFactory

from pier.executors.gpus import nvml_devices
from pier.sdk import Client

REAL_GPUS = nvml_devices()
pytestmark = pytest.mark.skipif(not REAL_GPUS, reason="no NVIDIA GPU visible through NVML")

# The UUIDs of the devices CUDA lets this process open, from the driver API itself (no
# framework needed), in NVML's "GPU-8-4-4-4-12" form.
CUDA_UUIDS = r"""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
count = ctypes.c_int()
assert cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
uuids = []
for i in range(count.value):
    device = ctypes.c_int()
    assert cuda.cuDeviceGet(ctypes.byref(device), i) == 0
    raw = (ctypes.c_ubyte * 16)()
    assert cuda.cuDeviceGetUuid(raw, device) == 0
    h = bytes(raw).hex()
    uuids.append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
print("UUIDS", " ".join(uuids))
"""

# Holds a JAX array on the GPU until the gate file exists. JAX preallocates 75 % of the
# device at its first use unless told otherwise: two of these on halves of one device only
# both run when pier's fractional-share defaults are in the environment.
JAX_HOLD = r"""
import os, sys, time
import jax, jax.numpy as jnp
x = jnp.ones((1024, 1024))
share = os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"]
print("JAX", jax.devices()[0].platform, float(x.sum()), share, flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
"""


def _client(factory: ServerFactory) -> Client:
    server: PierServer = factory(gpus=None)  # no simulated inventory: what NVML reports
    return server.client()


def test_server_reports_the_gpus_nvml_sees(pier_server_factory: ServerFactory) -> None:
    client = _client(pier_server_factory)
    (node,) = client.nodes()
    assert [(g.index, g.model) for g in node.gpus] == [(d.index, d.model) for d in REAL_GPUS]
    assert all(g.memory_bytes > 0 for g in node.gpus)
    assert node.labels["gpu-model"] == REAL_GPUS[0].model


def test_whole_gpu_job_opens_exactly_its_device(pier_server_factory: ServerFactory) -> None:
    client = _client(pier_server_factory)
    job = client.submit(
        {
            "name": "cuda-probe",
            "tasks": [
                {
                    "command": [sys.executable, "-c", CUDA_UUIDS],
                    "resources": {"gpu": 1},
                }
            ],
        }
    )
    done = client.wait(job.id, timeout=120)
    text = _text(client, job.id)
    assert done.status.value == "Succeeded", text
    (replica,) = done.replicas
    (index,) = replica.devices
    line = next(x for x in text.splitlines() if x.startswith("UUIDS"))
    assert line.split()[1:] == [REAL_GPUS[index].uuid]


def test_no_gpu_job_sees_no_device(pier_server_factory: ServerFactory) -> None:
    client = _client(pier_server_factory)
    job = client.submit(
        {"name": "cpu-probe", "tasks": [{"command": [sys.executable, "-c", CUDA_UUIDS]}]}
    )
    assert client.wait(job.id, timeout=120).status.value == "Succeeded"
    line = next(x for x in _text(client, job.id).splitlines() if x.startswith("UUIDS"))
    assert line.split()[1:] == []


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_two_half_gpu_jax_jobs_share_one_device(
    pier_server_factory: ServerFactory, tmp_path: Path
) -> None:
    client = _client(pier_server_factory)
    gate = tmp_path / "gate"
    jobs = [
        client.submit(
            {
                "name": f"jax-half-{i}",
                "tasks": [
                    {
                        "command": [sys.executable, "-c", JAX_HOLD, str(gate)],
                        "resources": {"gpu": 0.5},
                    }
                ],
            }
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 180
    while True:  # both hold their JAX array at the same time
        texts = [_text(client, j.id) for j in jobs]
        if all("JAX gpu" in t for t in texts):
            break
        states = [client.get_job(j.id).status.value for j in jobs]
        assert "Failed" not in states, texts
        assert time.monotonic() < deadline, (states, texts)
        time.sleep(0.2)
    views = [client.get_job(j.id) for j in jobs]
    assert views[0].replicas[0].devices == views[1].replicas[0].devices
    gate.touch()
    for job in jobs:
        assert client.wait(job.id, timeout=120).status.value == "Succeeded"


def _text(client: Client, job_id: str) -> str:
    return "".join(chunk.decode(errors="replace") for chunk in client.logs(job_id))
