"""Translation between pier and Ray: inventory, submissions, outcomes (pure functions)."""

from __future__ import annotations

from typing import Any

from pier.executors.base import LaunchRequest, ReplicaKey, ReplicaPlacement
from pier.executors.ray_mapping import (
    NODE_ID_LABEL,
    Pin,
    nodes_from_ray,
    outcome_of,
    replica_submission,
    submission_id,
)
from pier.spec import JobSpec


def ray_node(node_id: str, **fields: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "node_id": node_id,
        "node_ip": "10.0.0.1",
        "node_name": "10.0.0.1",
        "is_head_node": False,
        "state": "ALIVE",
        "resources_total": {"CPU": 8.0, "memory": 16e9, "GPU": 2.0},
        "labels": {NODE_ID_LABEL: node_id},
    }
    node.update(fields)
    return node


def test_alive_nodes_become_the_inventory_head_first() -> None:
    raw = [
        ray_node("bb" * 28, node_name="10.0.0.2"),
        ray_node("aa" * 28, node_name="10.0.0.1", is_head_node=True),
        ray_node("cc" * 28, node_name="10.0.0.3", state="DEAD"),
    ]
    inventory = nodes_from_ray(raw)
    assert [n.name for n in inventory.nodes] == ["10.0.0.1", "10.0.0.2"]
    assert inventory.pins == {"10.0.0.1": Pin("aa" * 28), "10.0.0.2": Pin("bb" * 28)}
    node = inventory.nodes[1]
    assert node.cpus == 8 and node.memory_bytes == 16_000_000_000
    assert [d.index for d in node.gpus] == [0, 1] and node.gpus[0].model == "gpu"
    assert node.pool == "default"


def test_nodes_sharing_an_address_are_told_apart_and_labels_name_them() -> None:
    raw = [
        ray_node("aa" * 28),
        ray_node("bb" * 28),
        ray_node("cc" * 28, labels={"pier.dev/node": "big-box", "pier.dev/pool": "a100"}),
    ]
    names = [n.name for n in nodes_from_ray(raw).nodes]
    assert names == ["10.0.0.1-aaaaaaaa", "10.0.0.1-bbbbbbbb", "big-box"]
    assert nodes_from_ray(raw).nodes[2].pool == "a100"


def test_pool_and_gpu_model_from_custom_resources() -> None:
    resources = {
        "CPU": 4.0,
        "memory": 1e9,
        "GPU": 4.0,
        "accelerator_type:H100": 1.0,
        "pier-pool:training": 1.0,
    }
    (node,) = nodes_from_ray([ray_node("aa" * 28, resources_total=resources)]).nodes
    assert node.pool == "training"
    assert {d.model for d in node.gpus} == {"H100"} and len(node.gpus) == 4


def launch(spec: dict[str, Any], placement: ReplicaPlacement) -> LaunchRequest:
    return LaunchRequest(
        job_id="0b6f",
        attempt=3,
        spec=JobSpec.model_validate(spec),
        placements=(placement,),
        env={"PIER_JOB_NAME": "train-1", "PIER_PROJECT": "vision"},
    )


def test_a_replica_becomes_a_pinned_submission_with_its_resources() -> None:
    spec = {
        "tasks": [
            {
                "name": "worker",
                "replicas": 2,
                "command": ["python", "train.py"],
                "args": ["--lr", "0.1 x"],
                "env": {"A": "1"},
                "working_dir": "/shared/code",
                "resources": {"gpu": 2, "cpu": 4, "memory": "8Gi", "custom": {"special": 1}},
            }
        ]
    }
    request = launch(spec, ReplicaPlacement("worker", 1, "n1", (0, 1)))
    sub = replica_submission(request, request.placements[0], request.spec.tasks[0], Pin("ab" * 28))
    assert sub.submission_id == "pier-0b6f-3-worker-1" == submission_id(sub.key)
    kw = sub.kwargs
    assert kw["entrypoint"] == (
        "cd /shared/code && exec env PIER_JOB_NAME=train-1 PIER_PROJECT=vision "
        "PIER_TASK_ROLE=worker PIER_REPLICA_INDEX=1 PIER_NUM_REPLICAS=2 PIER_JOB_ID=0b6f "
        "PIER_ATTEMPT=3 python train.py --lr '0.1 x'"
    )
    assert kw["entrypoint_num_gpus"] == 2 and kw["entrypoint_num_cpus"] == 4
    assert kw["entrypoint_memory"] == 8 * 1024**3
    assert kw["entrypoint_resources"] == {"special": 1.0}
    assert kw["entrypoint_label_selector"] == {NODE_ID_LABEL: "ab" * 28}
    # The task's env in the runtime env (Ray passes it to the job's tasks too); pier's own
    # per-replica variables on the entrypoint, so alike jobs share a runtime env.
    assert kw["runtime_env"] == {"env_vars": {"A": "1"}}
    assert "PIER_GPU_FRACTION" not in kw["entrypoint"]
    assert kw["metadata"] == {
        "pier_job_id": "0b6f",
        "pier_attempt": "3",
        "pier_replica": "worker-1",
        "pier_job_name": "train-1",
        "pier_project": "vision",
    }
    assert sub.key == ReplicaKey("0b6f", 3, "worker", 1)


def test_fractions_stay_fractions_and_cpu_only_jobs_ask_no_gpu() -> None:
    spec = {"tasks": [{"command": ["true"], "resources": {"gpu": 0.25}}]}
    request = launch(spec, ReplicaPlacement("main", 0, "n1", (1,), 0.25))
    sub = replica_submission(request, request.placements[0], request.spec.tasks[0], Pin("id"))
    assert sub.kwargs["entrypoint_num_gpus"] == 0.25
    assert "PIER_GPU_FRACTION=0.25 true" in sub.kwargs["entrypoint"]
    cpu_only = launch({"tasks": [{"command": ["true"]}]}, ReplicaPlacement("main", 0, "n1"))
    sub = replica_submission(cpu_only, cpu_only.placements[0], cpu_only.spec.tasks[0], Pin("id"))
    assert "entrypoint_num_gpus" not in sub.kwargs and "entrypoint_memory" not in sub.kwargs
    assert sub.kwargs["runtime_env"] == {}  # no env of its own: Ray's pre-started workers serve


def test_package_working_dirs_and_pip_go_to_the_runtime_env() -> None:
    spec = {
        "tasks": [
            {
                "command": ["python", "main.py"],
                "working_dir": "s3://bucket/code.zip",
                "runtime_env": {"pip": ["requests"]},
            }
        ]
    }
    request = launch(spec, ReplicaPlacement("main", 0, "n1"))
    sub = replica_submission(request, request.placements[0], request.spec.tasks[0], Pin("id"))
    assert sub.kwargs["entrypoint"].endswith(" python main.py")
    assert sub.kwargs["runtime_env"]["working_dir"] == "s3://bucket/code.zip"
    assert sub.kwargs["runtime_env"]["pip"] == ["requests"]


def test_ray_states_map_to_exits_and_requeues() -> None:
    assert outcome_of("PENDING", None, None, "") is None
    assert outcome_of("RUNNING", None, None, "") is None
    assert outcome_of("SUCCEEDED", 0, None, "").exit_code == 0  # type: ignore[union-attr]
    assert outcome_of("STOPPED", None, None, "").exit_code == 143  # type: ignore[union-attr]
    failed = outcome_of("FAILED", 3, "JOB_ENTRYPOINT_COMMAND_ERROR", "exit 3")
    assert failed is not None and failed.exit_code == 3 and failed.lost is None
    signalled = outcome_of("FAILED", -9, "JOB_ENTRYPOINT_COMMAND_ERROR", "")
    assert signalled is not None and signalled.exit_code == 137
    lost = outcome_of("FAILED", None, "JOB_SUPERVISOR_ACTOR_DIED", "node died")
    assert lost is not None and lost.exit_code is None
    assert lost.lost is not None and "node died" in lost.lost
    setup = outcome_of("FAILED", None, "RUNTIME_ENV_SETUP_FAILURE", "pip failed")
    assert setup is not None and setup.exit_code == 1 and setup.lost is None


def test_a_node_with_its_own_ip_is_pinned_by_its_node_resource() -> None:
    raw = [
        ray_node(
            "aa" * 28,
            node_ip="10.0.0.1",
            node_name="10.0.0.1",
            resources_total={"CPU": 2.0, "node:10.0.0.1": 1.0},
        ),
        ray_node(
            "bb" * 28,
            node_ip="10.0.0.2",
            node_name="10.0.0.2",
            resources_total={"CPU": 2.0, "node:10.0.0.2": 1.0},
        ),
        ray_node(
            "cc" * 28,
            node_ip="10.0.0.2",
            node_name="10.0.0.2",
            resources_total={"CPU": 2.0, "node:10.0.0.2": 1.0},
        ),
    ]
    pins = nodes_from_ray(raw).pins
    assert pins["10.0.0.1"] == Pin("aa" * 28, "node:10.0.0.1")
    assert pins["10.0.0.2-bbbbbbbb"] == Pin("bb" * 28)  # shares its IP: label selector
    spec = {"tasks": [{"command": ["true"], "resources": {"custom": {"special": 1}}}]}
    request = launch(spec, ReplicaPlacement("main", 0, "10.0.0.1"))
    sub = replica_submission(
        request, request.placements[0], request.spec.tasks[0], pins["10.0.0.1"]
    )
    assert sub.kwargs["entrypoint_resources"] == {"special": 1.0, "node:10.0.0.1": 0.001}
    assert "entrypoint_label_selector" not in sub.kwargs
