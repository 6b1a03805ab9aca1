"""Pure translation between pier and Ray: Ray nodes -> pier's inventory, a placed replica ->
a Ray job submission, a Ray job's details -> a replica's exit. No I/O, no Ray import.

Inventory (one :class:`NodeInfo` per ALIVE Ray node):

- name: the node's ``pier.dev/node`` label; else Ray's ``node_name`` (its IP) when no other
  alive node has it; else ``<node_name>-<first 8 hex digits of the node id>``.
- pool: the ``pier.dev/pool`` label; else a custom resource ``pier-pool:<name>``; else
  ``default``.
- labels: every Ray label (``ray.io/node-id`` included, so a ``node_selector`` can name one).
- cpus / memory: the node's ``CPU`` and ``memory`` resources; GPUs: ``GPU`` (whole devices),
  model from the ``accelerator_type:<model>`` resource (else ``gpu``).

Submission of one replica: entrypoint = ``exec env PIER_...=... <argv>``, shell-quoted (after
``cd <dir> &&`` for an absolute ``working_dir``); the task's ``env`` in the runtime env;
``entrypoint_num_gpus`` = the replica's GPUs (fractions stay fractions),
``entrypoint_num_cpus`` / ``entrypoint_memory`` = its requests, ``entrypoint_resources`` = its
custom resources; and it is pinned to the node pier placed it on (which also enforces pool,
labels and model): ``node:<ip>: 0.001`` in ``entrypoint_resources`` when that IP is the
node's alone, else ``entrypoint_label_selector = {"ray.io/node-id": <id>}``.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pier.executors.base import Device, LaunchRequest, NodeInfo, ReplicaKey, ReplicaPlacement
from pier.spec import TaskRole

__all__ = [
    "NODE_ID_LABEL",
    "NODE_LABEL",
    "POOL_LABEL",
    "POOL_RESOURCE_PREFIX",
    "Pin",
    "RayNodes",
    "RayOutcome",
    "ReplicaSubmission",
    "nodes_from_ray",
    "outcome_of",
    "replica_submission",
    "submission_id",
]

NODE_LABEL = "pier.dev/node"
POOL_LABEL = "pier.dev/pool"
POOL_RESOURCE_PREFIX = "pier-pool:"
NODE_ID_LABEL = "ray.io/node-id"
ACCELERATOR_PREFIX = "accelerator_type:"
DEFAULT_GPU_MODEL = "gpu"

# Ray job error types that say the platform, not the job, failed: the Jobs API's supervisor
# actor (and with it the entrypoint) died or never got a place. Requeued without counting.
PLATFORM_ERRORS = frozenset(
    {
        "JOB_SUPERVISOR_ACTOR_DIED",
        "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE",
        "JOB_SUPERVISOR_ACTOR_START_FAILURE",
        "JOB_SUPERVISOR_ACTOR_START_TIMEOUT",
        "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE",
    }
)
SIGTERM_EXIT = 143
PIN_AMOUNT = 0.001  # of a node's ``node:<ip>`` resource (1.0): up to 1,000 replicas per node


@dataclass(frozen=True, slots=True)
class Pin:
    """How to keep a replica on one Ray node: Ray's own ``node:<ip>`` resource when no other
    node has that IP, else a label selector on the node id (measured ~0.3 s slower per job
    in Ray 2.60, so only where needed)."""

    node_id: str
    node_resource: str | None = None


@dataclass(frozen=True, slots=True)
class RayNodes:
    """The inventory and, per pier node name, how to pin replicas to that node."""

    nodes: tuple[NodeInfo, ...]
    pins: Mapping[str, Pin]


def nodes_from_ray(raw: Sequence[Mapping[str, Any]]) -> RayNodes:
    """Map the state API's node list (``/api/v0/nodes``) to pier's inventory."""
    alive = [n for n in raw if n.get("state") == "ALIVE" and n.get("node_id")]
    names = Counter(str(n.get("node_name") or n.get("node_ip") or "") for n in alive)
    ips = Counter(str(n.get("node_ip") or "") for n in alive)
    nodes: list[NodeInfo] = []
    pins: dict[str, Pin] = {}
    for n in sorted(alive, key=lambda n: (not n.get("is_head_node"), str(n["node_id"]))):
        node_id = str(n["node_id"])
        labels = {str(k): str(v) for k, v in (n.get("labels") or {}).items()}
        resources = {str(k): float(v) for k, v in (n.get("resources_total") or {}).items()}
        base = str(n.get("node_name") or n.get("node_ip") or node_id[:8])
        name = labels.get(NODE_LABEL) or (base if names[base] == 1 else f"{base}-{node_id[:8]}")
        if name in pins:  # two nodes claim one pier.dev/node label: keep both visible
            name = f"{name}-{node_id[:8]}"
        model = next(
            (
                k.removeprefix(ACCELERATOR_PREFIX)
                for k in resources
                if k.startswith(ACCELERATOR_PREFIX)
            ),
            DEFAULT_GPU_MODEL,
        )
        pool = labels.get(POOL_LABEL) or next(
            (
                k.removeprefix(POOL_RESOURCE_PREFIX)
                for k in resources
                if k.startswith(POOL_RESOURCE_PREFIX)
            ),
            "default",
        )
        gpus = tuple(Device(i, model) for i in range(int(resources.get("GPU", 0.0) + 1e-9)))
        nodes.append(
            NodeInfo(
                name=name,
                cpus=resources.get("CPU", 0.0),
                memory_bytes=int(resources.get("memory", 0.0)),
                gpus=gpus,
                labels=labels,
                pool=pool,
            )
        )
        ip = str(n.get("node_ip") or "")
        resource = f"node:{ip}"
        unique = ip and ips[ip] == 1 and resources.get(resource, 0.0) >= 1.0
        pins[name] = Pin(node_id, resource if unique else None)
    return RayNodes(tuple(nodes), pins)


def _suffix(resources: Mapping[str, float], prefix: str) -> str | None:
    """``X`` of the first resource named ``<prefix>X``."""
    return next((k.removeprefix(prefix) for k in resources if k.startswith(prefix)), None)


def submission_id(key: ReplicaKey) -> str:
    """Ray's id of one replica's job: pier's job id, attempt and replica, from the characters
    Ray's client puts into URLs unquoted (``[A-Za-z0-9._-]``)."""
    return f"pier-{key.job_id}-{key.attempt}-{key.task}-{key.index}"


@dataclass(frozen=True, slots=True)
class ReplicaSubmission:
    key: ReplicaKey
    submission_id: str
    kwargs: dict[str, Any]
    """Keyword arguments of ``JobSubmissionClient.submit_job``."""


def replica_submission(
    launch: LaunchRequest,
    placement: ReplicaPlacement,
    task: TaskRole,
    pin: Pin,
) -> ReplicaSubmission:
    key = ReplicaKey(launch.job_id, launch.attempt, task.name, placement.index)
    sid = submission_id(key)
    # pier's own variables differ per replica: set on the entrypoint, so that replicas of
    # alike jobs share one runtime env and Ray can run them on its pre-started workers (a
    # runtime env of its own costs each job a fresh worker process: ~0.7 s here). The
    # task's env goes to the runtime env, which Ray also gives the job's tasks and actors.
    own = {
        **{k: v for k, v in launch.env.items() if k not in task.env},  # as locally: task wins
        "PIER_TASK_ROLE": task.name,
        "PIER_REPLICA_INDEX": str(placement.index),
        "PIER_NUM_REPLICAS": str(task.replicas),
        "PIER_JOB_ID": launch.job_id,
        "PIER_ATTEMPT": str(launch.attempt),
    }
    if placement.gpu_fraction > 0:
        own["PIER_GPU_FRACTION"] = f"{placement.gpu_fraction:g}"
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in own.items())
    entrypoint = f"exec env {assignments} {shlex.join(task.argv)}"
    runtime_env: dict[str, Any] = {"env_vars": dict(task.env)} if task.env else {}
    if task.working_dir:
        if "://" in task.working_dir:  # a package Ray downloads onto the node
            runtime_env["working_dir"] = task.working_dir
        elif task.working_dir.startswith("/"):  # a directory on the node (shared storage)
            entrypoint = f"cd {shlex.quote(task.working_dir)} && {entrypoint}"
    if task.runtime_env is not None:
        if task.runtime_env.working_dir:
            runtime_env["working_dir"] = task.runtime_env.working_dir
        if task.runtime_env.pip:
            runtime_env["pip"] = list(task.runtime_env.pip)
    resources = task.resources
    kwargs: dict[str, Any] = {
        "entrypoint": entrypoint,
        "submission_id": sid,
        "runtime_env": runtime_env,
        "metadata": {
            "pier_job_id": launch.job_id,
            "pier_attempt": str(launch.attempt),
            "pier_replica": key.replica,
            "pier_job_name": launch.env.get("PIER_JOB_NAME", ""),
            "pier_project": launch.env.get("PIER_PROJECT", ""),
        },
    }
    if resources.gpu > 0:
        kwargs["entrypoint_num_gpus"] = placement.gpu_fraction or resources.gpu
    if resources.cpu:
        kwargs["entrypoint_num_cpus"] = resources.cpu
    if resources.memory:
        kwargs["entrypoint_memory"] = int(resources.memory)
    custom = {k: float(v) for k, v in resources.custom.items()}
    if pin.node_resource is not None:
        custom[pin.node_resource] = custom.get(pin.node_resource, 0.0) + PIN_AMOUNT
    else:
        kwargs["entrypoint_label_selector"] = {NODE_ID_LABEL: pin.node_id}
    if custom:
        kwargs["entrypoint_resources"] = custom
    return ReplicaSubmission(key, sid, kwargs)


@dataclass(frozen=True, slots=True)
class RayOutcome:
    """How a terminal Ray job ends its replica: an exit code, or a requeue (``lost``)."""

    exit_code: int | None
    lost: str | None = None


def outcome_of(
    status: str, exit_code: int | None, error_type: str | None, message: str
) -> RayOutcome | None:
    """None while the Ray job is PENDING or RUNNING."""
    if status == "SUCCEEDED":
        return RayOutcome(0)
    if status == "STOPPED":
        return RayOutcome(SIGTERM_EXIT)
    if status != "FAILED":
        return None
    if exit_code is None and error_type in PLATFORM_ERRORS:
        return RayOutcome(None, f"Ray lost the job ({error_type}): {message}".strip())
    if exit_code is None:
        return RayOutcome(1)
    # Ray reports a signal death as Python's Popen does (-N); pier says 128 + N as a shell.
    return RayOutcome(128 - exit_code if exit_code < 0 else exit_code)
