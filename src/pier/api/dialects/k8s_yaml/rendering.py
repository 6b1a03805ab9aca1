"""A :class:`~pier.spec.JobSpec` -> its ``batch/v1 Job`` or ``apps/v1 StatefulSet``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from pier.api.dialects.k8s_yaml._shared import (
    DEFAULT_SCHEDULER,
    DESCRIPTION_ANNOTATION,
    FRACTION_ANNOTATION,
    GPU_MODEL_SELECTOR,
    GPU_RESOURCE,
    NODE_POOL_SELECTOR,
    RELEASE_LABEL,
    SHM_PATH,
    Loc,
    Unrepresentable,
    path_text,
)
from pier.services.manifests import NAMESPACE_PREFIX
from pier.spec import JobKind, JobSpec, TaskRole

__all__ = ["render_manifest", "render_yaml"]


def _unrepresentable(loc: Loc, what: str) -> Unrepresentable:
    return Unrepresentable(
        f"{path_text(loc)}: {what}; a Kubernetes manifest cannot carry it",
        loc=["spec", *loc],
    )


def _cpu_text(cores: float) -> int | str:
    if cores == int(cores):
        return int(cores)
    milli = cores * 1000
    if milli == int(milli) and int(milli) / 1000 == cores:
        return f"{int(milli)}m"
    return repr(cores)


def _memory_text(size: int) -> int | str:
    for suffix, unit in (
        ("Ei", 1024**6),
        ("Pi", 1024**5),
        ("Ti", 1024**4),
        ("Gi", 1024**3),
        ("Mi", 1024**2),
        ("Ki", 1024),
    ):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    for suffix, unit in (
        ("E", 1000**6),
        ("P", 1000**5),
        ("T", 1000**4),
        ("G", 1000**3),
        ("M", 1000**2),
        ("k", 1000),
    ):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def _number_text(value: float) -> int | str:
    return int(value) if value == int(value) else repr(value)


def _whole_seconds(value: float, loc: Loc) -> int:
    if value != int(value):
        raise _unrepresentable(loc, f"{value} is not a whole number of seconds")
    return int(value)


def _check_representable(spec: JobSpec) -> TaskRole:
    if len(spec.tasks) != 1:
        raise _unrepresentable(("tasks",), f"{len(spec.tasks)} task roles (one pod template)")
    task = spec.tasks[0]
    checks: list[tuple[Loc, bool, str]] = [
        (("submission_id",), spec.submission_id is not None, "a submission id"),
        (("elastic",), spec.elastic, "elastic scaling"),
        (("service_type",), spec.service_type is not None, "a service type"),
        (
            ("lifecycle", "schedule_timeout"),
            spec.lifecycle.schedule_timeout is not None,
            "a schedule timeout",
        ),
        (("tasks", 0, "runtime_env"), task.runtime_env is not None, "a Ray runtime_env"),
        (("tasks", 0, "create_home_dir"), task.create_home_dir, "create_home_dir"),
        (("tasks", 0, "min_failed"), task.min_failed is not None, "min_failed"),
        (("tasks", 0, "min_succeeded"), task.min_succeeded is not None, "min_succeeded"),
        (
            ("tasks", 0, "resources", "shm"),
            task.resources.shm is not None and not task.resources.large_shm,
            "shm without large_shm",
        ),
    ]
    if spec.kind is JobKind.INTERACTIVE:
        lc = spec.lifecycle
        checks += [
            (
                ("lifecycle", "backoff_limit"),
                lc.backoff_limit is not None,
                "a backoff limit on an interactive job (a StatefulSet)",
            ),
            (
                ("lifecycle", "completions"),
                lc.completions is not None,
                "completions on an interactive job",
            ),
            (
                ("lifecycle", "ttl_after_finish"),
                lc.ttl_after_finish is not None,
                "ttl_after_finish on an interactive job",
            ),
        ]
    if spec.lifecycle.parallelism is not None and spec.lifecycle.parallelism != task.replicas:
        checks.append((("lifecycle", "parallelism"), True, "parallelism other than replicas"))
    for i, port in enumerate(task.ports):
        checks.append(
            (
                ("tasks", 0, "ports", i),
                port.expose is not None or not port.requires_auth,
                "an exposed port",
            )
        )
    for i, pvc in enumerate(task.pvcs):
        checks.append(
            (
                ("tasks", 0, "pvcs", i),
                pvc.claim_name is None or pvc.storage_class is not None or pvc.size is not None,
                "a volume claim to create (only an existing claimName)",
            )
        )
    reserved = {NODE_POOL_SELECTOR, GPU_MODEL_SELECTOR} & set(task.resources.node_selector)
    checks.append(
        (
            ("tasks", 0, "resources", "node_selector"),
            bool(reserved),
            f"node_selector key {', '.join(sorted(reserved))} (reserved)",
        )
    )
    for loc, bad, what in checks:
        if bad:
            raise _unrepresentable(loc, what)
    return task


def render_manifest(
    spec: JobSpec,
    *,
    namespace_prefix: str = NAMESPACE_PREFIX,
    scheduler: str = DEFAULT_SCHEDULER,
) -> dict[str, Any]:
    """The ``batch/v1 Job`` (train) or ``apps/v1 StatefulSet`` (interactive) of ``spec``;
    :class:`Unrepresentable` names a field no manifest can carry."""
    task = _check_representable(spec)
    res = task.resources
    metadata: dict[str, Any] = {}
    if spec.name is not None:
        metadata["name"] = spec.name
    if spec.name_prefix is not None:
        metadata["generateName"] = f"{spec.name_prefix}-"
    if spec.project is not None:
        metadata["namespace"] = f"{namespace_prefix}{spec.project}"
    annotations = dict(spec.metadata)
    if spec.description is not None:
        annotations[DESCRIPTION_ANNOTATION] = spec.description
    if annotations:
        metadata["annotations"] = annotations
    pod_labels = dict(spec.labels)
    pod_annotations: dict[str, str] = {}
    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if res.gpu >= 1:
        limits[GPU_RESOURCE] = int(res.gpu)
    elif res.gpu > 0:
        pod_annotations[FRACTION_ANNOTATION] = repr(res.gpu)
    if res.cpu is not None:
        requests["cpu"] = _cpu_text(res.cpu)
    if res.memory is not None:
        requests["memory"] = _memory_text(res.memory)
    if res.cpu_limit is not None:
        limits["cpu"] = _cpu_text(res.cpu_limit)
    if res.memory_limit is not None:
        limits["memory"] = _memory_text(res.memory_limit)
    for key, amount in res.custom.items():
        limits[key] = _number_text(amount)
    container: dict[str, Any] = {"name": task.name}
    if task.image is not None:
        container["image"] = task.image
    if task.image_pull_policy is not None:
        container["imagePullPolicy"] = task.image_pull_policy
    if task.command:
        container["command"] = list(task.command)
    if task.args:
        container["args"] = list(task.args)
    if task.env:
        container["env"] = [{"name": k, "value": v} for k, v in task.env.items()]
    if task.working_dir is not None:
        container["workingDir"] = task.working_dir
    if limits or requests:
        container["resources"] = {
            k: v for k, v in (("limits", limits), ("requests", requests)) if v
        }
    if task.ports:
        container["ports"] = [_port(p) for p in task.ports]
    if task.stdin:
        container["stdin"] = True
    if task.tty:
        container["tty"] = True
    if task.prevent_privilege_escalation is not None:
        container["securityContext"] = {
            "allowPrivilegeEscalation": not task.prevent_privilege_escalation
        }
    volumes, mounts = _render_volumes(task)
    if mounts:
        container["volumeMounts"] = mounts
    pod: dict[str, Any] = {"schedulerName": scheduler, "containers": [container]}
    pod["restartPolicy"] = "Never" if spec.kind is JobKind.TRAIN else "Always"
    selector = dict(res.node_selector)
    if res.node_pool is not None:
        selector[NODE_POOL_SELECTOR] = res.node_pool
    if res.gpu_model is not None:
        selector[GPU_MODEL_SELECTOR] = res.gpu_model
    if selector:
        pod["nodeSelector"] = selector
    if spec.preemptible is not None:
        pod["priorityClassName"] = _priority_class(spec.kind, spec.preemptible)
    if task.host_ipc:
        pod["hostIPC"] = True
    if task.host_network:
        pod["hostNetwork"] = True
    grace = spec.lifecycle.stop_grace_period
    if grace != 10.0:
        pod["terminationGracePeriodSeconds"] = _whole_seconds(
            grace, ("lifecycle", "stop_grace_period")
        )
    if volumes:
        pod["volumes"] = volumes
    template_metadata: dict[str, Any] = {}
    spec_body: dict[str, Any] = {}
    if spec.kind is JobKind.TRAIN:
        lc = spec.lifecycle
        if lc.backoff_limit is not None:
            spec_body["backoffLimit"] = lc.backoff_limit
        if lc.completions is not None:
            spec_body["completions"] = lc.completions
        if task.replicas > 1:
            spec_body["parallelism"] = task.replicas
        if lc.ttl_after_finish is not None:
            spec_body["ttlSecondsAfterFinished"] = _whole_seconds(
                lc.ttl_after_finish, ("lifecycle", "ttl_after_finish")
            )
        api_version, kind = "batch/v1", "Job"
    else:
        release = pod_labels.setdefault(RELEASE_LABEL, spec.name or spec.name_prefix or "job")
        spec_body["serviceName"] = spec.name or spec.name_prefix or "job"
        spec_body["replicas"] = task.replicas
        spec_body["selector"] = {"matchLabels": {RELEASE_LABEL: release}}
        api_version, kind = "apps/v1", "StatefulSet"
    if pod_labels:
        template_metadata["labels"] = pod_labels
    if pod_annotations:
        template_metadata["annotations"] = pod_annotations
    template: dict[str, Any] = {}
    if template_metadata:
        template["metadata"] = template_metadata
    template["spec"] = pod
    spec_body["template"] = template
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec_body}


def _priority_class(kind: JobKind, preemptible: bool) -> str:
    if not preemptible:
        return "build"
    return "train" if kind is JobKind.TRAIN else "interactive-preemptible"


def _port(port: Any) -> dict[str, Any]:
    rendered: dict[str, Any] = {"containerPort": port.container_port}
    if port.host_port is not None:
        rendered["hostPort"] = port.host_port
    if port.protocol != "tcp":
        rendered["protocol"] = port.protocol.upper()
    if port.name is not None:
        rendered["name"] = port.name
    return rendered


def _render_volumes(task: TaskRole) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []

    def mount(name: str, path: str, read_only: bool) -> None:
        entry: dict[str, Any] = {"name": name, "mountPath": path}
        if read_only:
            entry["readOnly"] = True
        mounts.append(entry)

    for i, volume in enumerate(task.volumes):
        volumes.append({"name": f"host-{i}", "hostPath": {"path": volume.host_path}})
        mount(f"host-{i}", volume.mount_path, volume.read_only)
    for i, pvc in enumerate(task.pvcs):
        volumes.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": pvc.claim_name}})
        mount(f"pvc-{i}", pvc.mount_path, pvc.read_only)
    if task.resources.large_shm:
        empty: dict[str, Any] = {"medium": "Memory"}
        if task.resources.shm is not None:
            empty["sizeLimit"] = _memory_text(task.resources.shm)
        volumes.append({"name": "dshm", "emptyDir": empty})
        mount("dshm", SHM_PATH, False)
    return volumes, mounts


def render_yaml(manifests: Sequence[Mapping[str, Any]]) -> str:
    """Manifests as one multi-document YAML text (keys in the order written)."""
    return yaml.dump_all(
        [dict(m) for m in manifests],
        Dumper=_DUMPER,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


# libyaml's dumper where built (several times faster than the pure-Python one).
_DUMPER: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
