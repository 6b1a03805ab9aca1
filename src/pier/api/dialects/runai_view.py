"""The Run:AI dialect's way out: a JobSpec as Run:AI job parameters, a job as the seed's job
info, and the answer to a submission. Pure; no I/O. The choices are listed in
:mod:`pier.api.dialects.runai`."""

from __future__ import annotations

from typing import Any

from pier.models import JobView
from pier.spec import JobKind, JobSpec, PvcMount
from pier.status import TERMINAL, JobStatus

__all__ = ["READ_ONLY", "job_info", "spec_to_job", "submitted"]

READ_ONLY = ":ro"
"""Suffix of a ``volume`` target mounted read-only."""
_PULL_NAMES = {"Always": "always", "IfNotPresent": "ifNotPresent", "Never": "never"}

_BINARY = (("Ei", 1024**6), ("Pi", 1024**5), ("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2))
_DECIMAL = (("E", 1000**6), ("P", 1000**5), ("T", 1000**4), ("G", 1000**3), ("M", 1000**2))
_MORE_UNITS = (("Ki", 1024), ("K", 1000))


def _quantity(size: int) -> str:
    """Bytes as the shortest exact quantity: 10**9 -> '1G', 2**30 -> '1Gi'."""
    exact = [(f, s) for s, f in (*_BINARY, *_DECIMAL, *_MORE_UNITS) if size and size % f == 0]
    if not exact:
        return str(size)
    factor, suffix = max(exact)
    return f"{size // factor}{suffix}"


def _duration(seconds: float) -> str | float:
    if seconds != int(seconds):
        return seconds
    whole = int(seconds)
    for unit, length in (("h", 3600), ("m", 60)):
        if whole and whole % length == 0:
            return f"{whole // length}{unit}"
    return f"{whole}s"


def _number(value: float) -> int | float:
    return int(value) if value == int(value) else value


def spec_to_job(spec: JobSpec) -> dict[str, Any]:
    """The job parameters a Run:AI client would send for ``spec`` (defaults left out).

    A Run:AI job is one container: a spec with several task roles (from OpenPAI) is shown by
    its first. Fields Run:AI cannot express (GPU model, node labels, shm size, custom
    resources, a PVC's claim name) are not shown here; the native API shows them."""
    task = spec.tasks[0]
    res = task.resources
    lc = spec.lifecycle
    job: dict[str, Any] = {"project": spec.project, "image": task.image}
    optional: dict[str, Any] = {
        "name": spec.name,
        "jobNamePrefix": spec.name_prefix,
        "interactive": True if spec.kind is JobKind.INTERACTIVE else None,
        "command": list(task.command) or None,
        "arguments": list(task.args) or None,
        "environment": dict(task.env) or None,
        "imagePullPolicy": _PULL_NAMES[task.image_pull_policy] if task.image_pull_policy else None,
        "stdin": task.stdin or None,
        "tty": task.tty or None,
        "workingDir": task.working_dir,
        "createHomeDir": task.create_home_dir or None,
        "gpu": _number(res.gpu) if res.gpu else None,
        "cpu": _number(res.cpu) if res.cpu is not None else None,
        "cpuLimit": _number(res.cpu_limit) if res.cpu_limit is not None else None,
        "memory": _quantity(res.memory) if res.memory is not None else None,
        "memoryLimit": _quantity(res.memory_limit) if res.memory_limit is not None else None,
        "largeShm": res.large_shm or None,
        "pvc": [_pvc(p) for p in task.pvcs] or None,
        "volume": {
            v.host_path: v.mount_path + (READ_ONLY if v.read_only else "") for v in task.volumes
        }
        or None,
        "hostIpc": task.host_ipc or None,
        "hostNetwork": task.host_network or None,
        "ports": [
            {"container": p.container_port}
            | ({"external": p.host_port} if p.host_port is not None else {})
            for p in task.ports
        ]
        or None,
        "backoffLimit": lc.backoff_limit,
        "completions": lc.completions,
        "parallelism": lc.parallelism,
        "elastic": spec.elastic or None,
        "preemptible": spec.preemptible,
        "serviceType": spec.service_type,
        "ttlAfterFinish": (
            _duration(lc.ttl_after_finish) if lc.ttl_after_finish is not None else None
        ),
        "preventPrivilegeEscalation": task.prevent_privilege_escalation,
        "nodeType": res.node_pool,
    }
    job.update({key: value for key, value in optional.items() if value is not None})
    return job


def _pvc(pvc: PvcMount) -> dict[str, Any]:
    out: dict[str, Any] = {"path": pvc.mount_path}
    if pvc.storage_class is not None:
        out["storageClass"] = pvc.storage_class
    if pvc.size is not None:
        out["size"] = _quantity(pvc.size)
    if pvc.read_only:
        out["readOnly"] = True
    return out


def _status(status: JobStatus) -> str:
    return "Failed" if status is JobStatus.STOPPED else status.value


def _joined(values: list[str]) -> str:
    return ",".join(dict.fromkeys(values))


def job_info(view: JobView) -> dict[str, Any]:
    """One element of ``GET /api/job``'s ``data``: exactly the seed's fields."""
    holding = view.status not in TERMINAL
    gpus = sum(r.gpu_fraction or len(r.devices) for r in view.replicas) if holding else 0
    return {
        "id": view.id,
        "project": view.project,
        "name": view.name,
        "status": _status(view.status),
        "type": "Interactive" if view.kind == JobKind.INTERACTIVE.value else "Train",
        "nodes": _joined([r.node for r in view.replicas]),
        "createdAt": int(view.created_at * 1000),
        "images": _joined([t.image for t in view.spec.tasks if t.image]),
        "user": view.owner,
        "currentAllocatedGPUs": _number(gpus),
    }


def submitted(view: JobView) -> dict[str, Any]:
    """The answer to ``POST /api/job``."""
    return {"name": view.name}
