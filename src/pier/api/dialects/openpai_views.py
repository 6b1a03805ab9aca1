"""OpenPAI REST server v1 (seed 004): pier's jobs, job specs and projects in OpenPAI's
response shapes (pure; the choices are listed in :mod:`pier.api.dialects.openpai`)."""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

from pier.api.dialects.openpai import BASH, CONFIG_ANNOTATION, MIB, TASK_WRAPPER, OpenPaiError
from pier.models import JobView, TokenView
from pier.services.openpai_support import SUBMISSION_PREFIX, ClusterCapacity, VcUsage
from pier.spec import JobSpec, TaskRole
from pier.status import TERMINAL, JobStatus

__all__ = [
    "job_config_of",
    "job_name_of",
    "job_status",
    "job_summary",
    "ssh_info",
    "token_view",
    "vc_view",
]


def job_name_of(view: JobView) -> str:
    """The job's OpenPAI name: the one it was submitted with, else its pier name."""
    key = view.submission_id or ""
    if key.startswith(SUBMISSION_PREFIX) and key.count("/") >= 2:
        return key.split("/", 2)[2]
    return view.name


# -- JobSpec -> job config ------------------------------------------------------------------


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _command_of(task: TaskRole) -> str:
    if task.command[:3] == [BASH, "-c", TASK_WRAPPER] and task.args:
        return task.args[-1]
    return shlex.join(task.argv)


def _derived_role(task: TaskRole) -> dict[str, Any]:
    res = task.resources
    role: dict[str, Any] = {"name": task.name, "taskNumber": task.replicas}
    if res.cpu is not None:
        role["cpuNumber"] = _number(res.cpu)
    if res.memory is not None:
        role["memoryMB"] = math.ceil(res.memory / MIB)
    if res.shm is not None:
        role["shmMB"] = math.ceil(res.shm / MIB)
    role["gpuNumber"] = _number(res.gpu)
    role["portList"] = [
        {"label": port.name or str(port.container_port), "beginAt": port.container_port}
        for port in task.ports
    ]
    role["command"] = _command_of(task)
    role["minFailedTaskCount"] = None if task.min_failed == -1 else (task.min_failed or 1)
    role["minSucceededTaskCount"] = task.min_succeeded
    return role


def job_config_of(spec: JobSpec, job_name: str, vc: str) -> dict[str, Any]:
    """The job's OpenPAI config: as submitted when it came through OpenPAI, else derived from
    its JobSpec."""
    stored = spec.metadata.get(CONFIG_ANNOTATION)
    if stored is not None:
        config: dict[str, Any] = json.loads(stored)
        return config
    first = spec.tasks[0]
    derived: dict[str, Any] = {
        "jobName": job_name,
        "image": first.image or "",
        "virtualCluster": vc,
        "retryCount": spec.backoff_limit,
    }
    if first.resources.gpu_model:
        derived["gpuType"] = first.resources.gpu_model
    derived["taskRoles"] = [_derived_role(task) for task in spec.tasks]
    return derived


# -- views ----------------------------------------------------------------------------------

_STATE = {
    JobStatus.PENDING: "WAITING",
    JobStatus.RUNNING: "RUNNING",
    JobStatus.SUCCEEDED: "SUCCEEDED",
    JobStatus.FAILED: "FAILED",
    JobStatus.STOPPED: "STOPPED",
    JobStatus.UNKNOWN: "UNKNOWN",
}
_SUB_STATE = {
    JobStatus.PENDING: "FRAMEWORK_WAITING",
    JobStatus.RUNNING: "APPLICATION_RUNNING",
    JobStatus.UNKNOWN: "UNKNOWN",
}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _execution_type(view: JobView) -> str:
    return "STOP" if view.stop_requested or view.status is JobStatus.STOPPED else "START"


def job_summary(view: JobView) -> dict[str, Any]:
    """One entry of ``GET /api/v1/jobs`` (the fields OpenPAI's list gives)."""
    done = view.status in TERMINAL
    return {
        "name": job_name_of(view),
        "username": view.owner,
        "state": _STATE[view.status],
        "subState": _SUB_STATE.get(view.status, "FRAMEWORK_COMPLETED"),
        "executionType": _execution_type(view),
        "retries": view.retries,
        "createdTime": _ms(view.created_at),
        "completedTime": _ms(view.finished_at) if done else None,
        "appExitCode": view.exit_code if done else None,
        "virtualCluster": view.project,
    }


def job_status(view: JobView) -> dict[str, Any]:
    """``GET /api/v1/jobs/:jobName``: the seed's fields, plus the list's."""
    done = view.status in TERMINAL
    diagnostics = None
    if done:
        diagnostics = ": ".join(part for part in (view.reason, view.message) if part)
    return {
        **job_summary(view),
        "appId": f"{view.id}_{view.attempt}" if view.attempt else None,
        "appProgress": 1 if done else 0,
        "appTrackingUrl": f"/v1/jobs/{view.id}/logs",
        "appLaunchedTime": _ms(view.started_at),
        "appCompletedTime": _ms(view.finished_at) if done else None,
        "appExitDiagnostics": diagnostics,
    }


def ssh_info(view: JobView) -> dict[str, Any]:
    """``GET .../ssh``: each running task's host and ssh port; 404 when the job has none."""
    ssh_ports = {
        task.name: port.container_port
        for task in view.spec.tasks
        for port in reversed(task.ports)
        if port.expose == "ssh"
    }
    if not ssh_ports:
        raise OpenPaiError(
            404,
            "NoJobSshInfoError",
            f"SSH is not available for job {job_name_of(view)}: it declares no ssh port "
            "(a portList entry labelled 'ssh' with beginAt > 0)",
        )
    running = view.status is JobStatus.RUNNING
    containers = [
        {
            "id": f"{view.id}-{replica.task}-{replica.index}",
            "sshIp": replica.node,
            "sshPort": str(ssh_ports[replica.task]),
        }
        for replica in (view.replicas if running else [])
        if replica.task in ssh_ports
    ]
    return {"containers": containers, "keyPair": None}


def _percent(part: float, whole: float) -> int | float:
    if whole <= 0:
        return 0
    return _number(round(min(100.0, max(0.0, 100.0 * part / whole)), 2))


def vc_view(usage: VcUsage, cluster: ClusterCapacity) -> dict[str, Any]:
    """One virtual cluster's status, from its project's quotas and its jobs' real usage."""
    if cluster.gpus > 0:
        whole, deserved, used = cluster.gpus, usage.gpu_quota, usage.gpu_used
        limit = usage.max_gpu if usage.max_gpu is not None else cluster.gpus
    else:
        whole, deserved, used = cluster.cpus, usage.cpu_quota or 0.0, usage.cpu_used
        limit = cluster.cpus
    capacity = _percent(deserved, whole)
    return {
        "capacity": capacity,
        "maxCapacity": max(capacity, _percent(limit, whole)),
        "usedCapacity": _percent(used, whole),
        "numActiveJobs": usage.jobs_running,
        "numJobs": usage.jobs_running + usage.jobs_pending,
        "numPendingJobs": usage.jobs_pending,
        "resourcesUsed": {
            "memory": math.ceil(usage.memory_used / MIB),
            "vCores": _number(usage.cpu_used),
            "GPUs": _number(usage.gpu_used),
        },
    }


def token_view(token: TokenView) -> dict[str, Any]:
    return {"token": token.token, "user": token.user}
