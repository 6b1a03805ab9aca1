"""The pod template's spec and its one container -> a task role (pure)."""

from __future__ import annotations

import math
from typing import Any

from pier.api.dialects.k8s_yaml._shared import (
    FRACTION_ANNOTATION,
    GPU_MODEL_SELECTOR,
    GPU_RESOURCE,
    NODE_POOL_SELECTOR,
    PRIORITY_CLASSES,
    SCHEDULERS,
    SHM_PATH,
    Doc,
    Loc,
)
from pier.spec import JobKind, parse_cpu, parse_memory

__all__ = ["pod_task"]

_POD = (
    "containers",
    "restartPolicy",
    "schedulerName",
    "nodeSelector",
    "priorityClassName",
    "hostIPC",
    "hostNetwork",
    "terminationGracePeriodSeconds",
    "volumes",
)
_CONTAINER = (
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "workingDir",
    "resources",
    "ports",
    "volumeMounts",
    "stdin",
    "tty",
    "securityContext",
)


def pod_task(
    d: Doc,
    pod: dict[str, Any],
    path: Loc,
    kind: JobKind,
    fraction: str | None,
    replicas: int,
) -> tuple[dict[str, Any], bool | None, int | None]:
    d.only(pod, path, _POD, "pod spec")
    restart = pod.get("restartPolicy")
    allowed_restart = "Never" if kind is JobKind.TRAIN else "Always"
    if restart is not None and restart != allowed_restart:
        why = (
            "pier retries the whole job (spec.backoffLimit times)"
            if kind is JobKind.TRAIN
            else "a StatefulSet's pods always restart"
        )
        raise d.fail((*path, "restartPolicy"), f"must be {allowed_restart}: {why}")
    scheduler = pod.get("schedulerName")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise d.fail(
            (*path, "schedulerName"),
            f"'{scheduler}' is not pier's scheduler (use runai-scheduler or pier)",
        )
    preemptible = None
    if "priorityClassName" in pod:
        klass = pod["priorityClassName"]
        if klass not in PRIORITY_CLASSES:
            raise d.fail(
                (*path, "priorityClassName"),
                f"'{klass}' is not one of {', '.join(PRIORITY_CLASSES)}",
            )
        preemptible = PRIORITY_CLASSES[klass]
        d.origin(("preemptible",), (*path, "priorityClassName"))
    grace = None
    if "terminationGracePeriodSeconds" in pod:
        grace = d.integer(
            pod["terminationGracePeriodSeconds"], (*path, "terminationGracePeriodSeconds")
        )
        d.origin(("lifecycle", "stop_grace_period"), (*path, "terminationGracePeriodSeconds"))
    containers = d.items(pod.get("containers"), (*path, "containers"))
    if len(containers) != 1:
        raise d.fail(
            (*path, "containers"),
            f"has {len(containers)} containers; pier runs exactly one per pod",
        )
    cpath: Loc = (*path, "containers", 0)
    task = _container(d, d.mapping(containers[0], cpath), cpath, fraction)
    task["replicas"] = replicas
    d.origin(
        ("tasks", 0, "replicas"), ("spec", "parallelism" if kind is JobKind.TRAIN else "replicas")
    )
    resources = task["resources"]
    selector = d.string_map(pod.get("nodeSelector"), (*path, "nodeSelector"))
    if NODE_POOL_SELECTOR in selector:
        resources["node_pool"] = selector.pop(NODE_POOL_SELECTOR)
        d.origin(
            ("tasks", 0, "resources", "node_pool"), (*path, "nodeSelector", NODE_POOL_SELECTOR)
        )
    if GPU_MODEL_SELECTOR in selector:
        resources["gpu_model"] = selector.pop(GPU_MODEL_SELECTOR)
        d.origin(
            ("tasks", 0, "resources", "gpu_model"), (*path, "nodeSelector", GPU_MODEL_SELECTOR)
        )
    resources["node_selector"] = selector
    d.origin(("tasks", 0, "resources", "node_selector"), (*path, "nodeSelector"))
    for key, target in (("hostIPC", "host_ipc"), ("hostNetwork", "host_network")):
        if key in pod:
            task[target] = d.boolean(pod[key], (*path, key))
            d.origin(("tasks", 0, target), (*path, key))
    _volumes(d, pod, path, task, containers[0].get("volumeMounts"), (*cpath, "volumeMounts"))
    return task, preemptible, grace


def _container(
    d: Doc, container: dict[str, Any], path: Loc, fraction: str | None
) -> dict[str, Any]:
    d.only(container, path, _CONTAINER, "container")
    task: dict[str, Any] = {}
    t: Loc = ("tasks", 0)
    d.origin(t, path)
    if "name" in container:
        task["name"] = d.string(container["name"], (*path, "name"))
        d.origin((*t, "name"), (*path, "name"))
    for key, target in (("image", "image"), ("workingDir", "working_dir")):
        if key in container:
            task[target] = d.string(container[key], (*path, key))
            d.origin((*t, target), (*path, key))
    if "imagePullPolicy" in container:
        task["image_pull_policy"] = container["imagePullPolicy"]
        d.origin((*t, "image_pull_policy"), (*path, "imagePullPolicy"))
    for key in ("command", "args"):
        task[key] = d.strings(container.get(key), (*path, key))
        d.origin((*t, key), (*path, key))
    for key in ("stdin", "tty"):
        if key in container:
            task[key] = d.boolean(container[key], (*path, key))
            d.origin((*t, key), (*path, key))
    security = d.mapping(container.get("securityContext"), (*path, "securityContext"))
    d.only(security, (*path, "securityContext"), ("allowPrivilegeEscalation",), "securityContext")
    if "allowPrivilegeEscalation" in security:
        spath = (*path, "securityContext", "allowPrivilegeEscalation")
        task["prevent_privilege_escalation"] = not d.boolean(
            security["allowPrivilegeEscalation"], spath
        )
        d.origin((*t, "prevent_privilege_escalation"), spath)
    task["env"] = _env(d, container.get("env"), (*path, "env"))
    d.origin((*t, "env"), (*path, "env"))
    task["ports"] = _ports(d, container.get("ports"), (*path, "ports"))
    task["resources"] = _resources(d, container.get("resources"), (*path, "resources"), fraction)
    return task


def _env(d: Doc, value: Any, path: Loc) -> dict[str, str]:
    env: dict[str, str] = {}
    for i, item in enumerate(d.items(value, path)):
        entry = d.mapping(item, (*path, i))
        d.only(entry, (*path, i), ("name", "value"), "env")
        key = d.string(entry.get("name"), (*path, i, "name"))
        raw = entry.get("value", "")
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise d.fail((*path, i, "value"), "must be a string")
        env[key] = raw if isinstance(raw, str) else str(raw)
    return env


def _ports(d: Doc, value: Any, path: Loc) -> list[dict[str, Any]]:
    ports = []
    for i, item in enumerate(d.items(value, path)):
        entry = d.mapping(item, (*path, i))
        d.only(entry, (*path, i), ("containerPort", "hostPort", "protocol", "name"), "port")
        port: dict[str, Any] = {
            "container_port": d.integer(entry.get("containerPort"), (*path, i, "containerPort"), 1)
        }
        if "hostPort" in entry:
            port["host_port"] = d.integer(entry["hostPort"], (*path, i, "hostPort"), 1)
        if "protocol" in entry:
            protocol = entry["protocol"]
            if protocol not in ("TCP", "UDP"):
                raise d.fail((*path, i, "protocol"), "must be TCP or UDP")
            port["protocol"] = protocol.lower()
        if "name" in entry:
            port["name"] = d.string(entry["name"], (*path, i, "name"))
        d.origin(("tasks", 0, "ports", i), (*path, i))
        ports.append(port)
    return ports


def _quantity(d: Doc, value: Any, path: Loc, what: str) -> Any:
    try:
        return parse_cpu(value) if what == "cpu" else parse_memory(value)
    except ValueError as exc:
        raise d.fail(path, str(exc)) from None


def _whole_gpus(d: Doc, value: Any, path: Loc) -> int:
    number: float
    if isinstance(value, bool):
        raise d.fail(path, "must be a whole number of GPUs")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise d.fail(path, f"'{value}' is not a number of GPUs") from None
    else:
        raise d.fail(path, "must be a whole number of GPUs")
    if not math.isfinite(number) or number < 0:
        raise d.fail(path, f"{value!r} GPUs: must be a whole number, 0 or more")
    if number != int(number):
        raise d.fail(
            path,
            f"{value!r} GPUs: must be whole; ask for a fraction with the pod template "
            f"annotation {FRACTION_ANNOTATION}",
        )
    return int(number)


def _resources(d: Doc, value: Any, path: Loc, fraction: str | None) -> dict[str, Any]:
    r: Loc = ("tasks", 0, "resources")
    block = d.mapping(value, path)
    d.only(block, path, ("limits", "requests"), "resources")
    limits = d.mapping(block.get("limits"), (*path, "limits"))
    requests = d.mapping(block.get("requests"), (*path, "requests"))
    resources: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for section, values in (("requests", requests), ("limits", limits)):
        for key, amount in values.items():
            kpath = (*path, section, key)
            if key in ("cpu", "memory"):
                target = key if section == "requests" else f"{key}_limit"
                resources[target] = _quantity(d, amount, kpath, key)
                d.origin((*r, target), kpath)
            elif "/" in key:
                count = _whole_gpus(d, amount, kpath) if key == GPU_RESOURCE else None
                number = float(count) if count is not None else _custom(d, amount, kpath)
                other = limits if section == "requests" else requests
                if key in other and section == "requests":
                    continue  # the limit carries it; equality is checked below
                if section == "limits" and key in requests:
                    rpath = (*path, "requests", key)
                    theirs = (
                        _whole_gpus(d, requests[key], rpath)
                        if key == GPU_RESOURCE
                        else _custom(d, requests[key], rpath)
                    )
                    if theirs != number:
                        raise d.fail(rpath, f"must equal limits.{key} (an extended resource)")
                if key == GPU_RESOURCE:
                    resources["gpu"] = number
                    d.origin((*r, "gpu"), kpath)
                else:
                    custom[key] = number
            else:
                raise d.fail(
                    kpath,
                    f"resource '{key}' is not supported by pier "
                    "(cpu, memory, nvidia.com/gpu or an extended vendor/name resource)",
                )
    if custom:
        resources["custom"] = custom
        d.origin((*r, "custom"), (*path, "limits"))
    if fraction is not None:
        apath: Loc = ("spec", "template", "metadata", "annotations", FRACTION_ANNOTATION)
        if resources.get("gpu"):
            raise d.fail(apath, f"give {FRACTION_ANNOTATION} or limits.{GPU_RESOURCE}, not both")
        try:
            share = float(fraction)
        except ValueError:
            raise d.fail(apath, f"'{fraction}' is not a number such as \"0.5\"") from None
        if not 0 < share < 1:
            raise d.fail(apath, f"'{fraction}' must be strictly between 0 and 1")
        resources["gpu"] = share
        d.origin((*r, "gpu"), apath)
    return resources


def _custom(d: Doc, value: Any, path: Loc) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise d.fail(path, "must be a number")
    try:
        number = float(value)
    except ValueError:
        raise d.fail(path, f"'{value}' is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise d.fail(path, "must be a number, 0 or more")
    return number


def _volumes(
    d: Doc,
    pod: dict[str, Any],
    path: Loc,
    task: dict[str, Any],
    mounts_value: Any,
    mounts_path: Loc,
) -> None:
    vpath: Loc = (*path, "volumes")
    volumes: dict[str, tuple[int, dict[str, Any]]] = {}
    for i, item in enumerate(d.items(pod.get("volumes"), vpath)):
        entry = d.mapping(item, (*vpath, i))
        d.only(
            entry, (*vpath, i), ("name", "hostPath", "persistentVolumeClaim", "emptyDir"), "volume"
        )
        if len(entry) != 2:
            raise d.fail(
                (*vpath, i), "needs a name and one of hostPath, persistentVolumeClaim, emptyDir"
            )
        volumes[d.string(entry.get("name"), (*vpath, i, "name"))] = (i, entry)
    used: set[str] = set()
    host: list[dict[str, Any]] = []
    pvcs: list[dict[str, Any]] = []
    for i, item in enumerate(d.items(mounts_value, mounts_path)):
        mpath = (*mounts_path, i)
        mount = d.mapping(item, mpath)
        d.only(mount, mpath, ("name", "mountPath", "readOnly"), "volumeMount")
        name = d.string(mount.get("name"), (*mpath, "name"))
        target = d.string(mount.get("mountPath"), (*mpath, "mountPath"))
        read_only = d.boolean(mount.get("readOnly", False), (*mpath, "readOnly"))
        if name not in volumes:
            raise d.fail(
                (*mpath, "name"), f"no volume named '{name}' in spec.template.spec.volumes"
            )
        used.add(name)
        vi, volume = volumes[name]
        if "hostPath" in volume:
            source = d.mapping(volume["hostPath"], (*vpath, vi, "hostPath"))
            d.only(source, (*vpath, vi, "hostPath"), ("path",), "hostPath")
            d.origin(("tasks", 0, "volumes", len(host)), mpath)
            host.append(
                {
                    "host_path": d.string(source.get("path"), (*vpath, vi, "hostPath", "path")),
                    "mount_path": target,
                    "read_only": read_only,
                }
            )
        elif "persistentVolumeClaim" in volume:
            ppath = (*vpath, vi, "persistentVolumeClaim")
            source = d.mapping(volume["persistentVolumeClaim"], ppath)
            d.only(source, ppath, ("claimName",), "persistentVolumeClaim")
            d.origin(("tasks", 0, "pvcs", len(pvcs)), mpath)
            pvcs.append(
                {
                    "claim_name": d.string(source.get("claimName"), (*ppath, "claimName")),
                    "mount_path": target,
                    "read_only": read_only,
                }
            )
        else:
            epath = (*vpath, vi, "emptyDir")
            source = d.mapping(volume["emptyDir"], epath)
            d.only(source, epath, ("medium", "sizeLimit"), "emptyDir")
            if source.get("medium") != "Memory" or target != SHM_PATH:
                raise d.fail(epath, f"pier supports emptyDir only as medium: Memory at {SHM_PATH}")
            task["resources"]["large_shm"] = True
            if "sizeLimit" in source:
                task["resources"]["shm"] = _quantity(
                    d, source["sizeLimit"], (*epath, "sizeLimit"), "memory"
                )
                d.origin(("tasks", 0, "resources", "shm"), (*epath, "sizeLimit"))
    for name, (vi, _) in volumes.items():
        if name not in used:
            raise d.fail((*vpath, vi), f"volume '{name}' is not mounted by the container")
    task["volumes"] = host
    task["pvcs"] = pvcs
