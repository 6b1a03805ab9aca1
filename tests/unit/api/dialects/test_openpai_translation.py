"""OpenPAI v1 <-> pier, as pure functions: the job config's rules and defaults, the JobSpec
it becomes, and the views pier's jobs and projects become."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from pydantic import BaseModel

from pier.api.dialects import openpai as pai
from pier.api.dialects import openpai_views as views
from pier.models import JobView, ReplicaView
from pier.services.openpai_support import ClusterCapacity, VcUsage
from pier.spec import JobSpec, Port, Resources, TaskRole
from pier.status import JobStatus

MIB = 1024**2


def _config(**fields: Any) -> dict[str, Any]:
    return {
        "jobName": "exampleJob",
        "image": "pai.run.tensorflow",
        "taskRoles": [{"name": "main", "command": "python train.py"}],
        **fields,
    }


def _spec(raw: dict[str, Any], user: str = "alice") -> JobSpec:
    return pai.job_spec(pai.parse(pai.JobConfig, raw), raw, user)


def _error(raw: object, model: type[BaseModel] = pai.JobConfig) -> str:
    with pytest.raises(pai.OpenPaiError) as caught:
        pai.parse(model, raw)
    assert (caught.value.status_code, caught.value.code) == (400, "InvalidParametersError")
    return caught.value.message


# -- the job config's rules -----------------------------------------------------------------


def test_defaults_are_openpais() -> None:
    config = pai.parse(pai.JobConfig, _config())
    assert (config.vc, config.retryCount, config.gpuType, config.jobEnvs) == ("default", 0, "", {})
    role = config.taskRoles[0]
    assert (role.taskNumber, role.cpuNumber, role.memoryMB, role.shmMB, role.gpuNumber) == (
        1,
        1,
        100,
        64,
        0,
    )
    assert (role.portList, role.minFailedTaskCount, role.minSucceededTaskCount) == ([], 1, None)
    assert pai.parse(pai.JobConfig, _config(virtualCluster="")).vc == "default"


def test_integers_convert_as_joi_does() -> None:
    role = {"name": "main", "command": "x", "taskNumber": "2", "gpuNumber": 1.0}
    parsed = pai.parse(pai.JobConfig, _config(taskRoles=[role])).taskRoles[0]
    assert (parsed.taskNumber, parsed.gpuNumber) == (2, 1)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"jobName": None}, '"jobName": input should be a valid string'),
        ({"jobName": "my job"}, '"jobName": string should match pattern'),
        ({"jobName": "x" * 84}, '"jobName": string should have at most 83 characters'),
        ({"image": ""}, '"image": string should have at least 1 character'),
        ({"taskRoles": []}, '"taskRoles": list should have at least 1 item'),
        ({"retryCount": -3}, '"retryCount": input should be greater than or equal to -2'),
        ({"retryCount": -2}, '"retryCount" -2 (run again even after success) is not supported'),
        ({"jobEnvs": {"A": None}}, '"jobEnvs.A": must be a string, number or boolean'),
        ({"extras": {}}, '"extras" is not allowed'),
        (
            {"taskRoles": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]},
            '"taskRoles" names must be unique',
        ),
    ],
)
def test_bad_job_fields_are_named(change: dict[str, Any], problem: str) -> None:
    assert problem in _error(_config(**change))


@pytest.mark.parametrize(
    ("role", "problem"),
    [
        ({"gpuNumber": -1}, '"taskRoles[0].gpuNumber": input should be greater than or equal to 0'),
        ({"gpuNumber": "lots"}, '"taskRoles[0].gpuNumber": must be an integer (got "lots")'),
        ({"gpuNumber": True}, '"taskRoles[0].gpuNumber": must be an integer (got true)'),
        ({"cpuNumber": 0.5}, '"taskRoles[0].cpuNumber": must be an integer (got 0.5)'),
        ({"taskNumber": 0}, '"taskRoles[0].taskNumber": input should be greater than or equal'),
        ({"command": ""}, '"taskRoles[0].command": string should have at least 1 character'),
        ({"command": None}, '"taskRoles[0].command": input should be a valid string'),
        ({"name": "a b"}, '"taskRoles[0].name": string should match pattern'),
        ({"shmMB": 101}, '"taskRoles[0]": "shmMB" (101) must not exceed "memoryMB" (100)'),
        ({"minFailedTaskCount": 2}, '"minFailedTaskCount" (2) must not be greater than'),
        ({"minSucceededTaskCount": 0}, "minSucceededTaskCount"),
        ({"portList": [{"beginAt": 1}]}, '"taskRoles[0].portList[0].label" is required'),
        ({"portList": [{"label": "x", "beginAt": 65535, "portNumber": 2}]}, "end past 65535"),
    ],
)
def test_bad_task_role_fields_are_named(role: dict[str, Any], problem: str) -> None:
    assert problem in _error(_config(taskRoles=[{"name": "main", "command": "x", **role}]))


def test_missing_fields_are_all_named() -> None:
    message = _error({"image": "x", "taskRoles": [{"name": "main"}]})
    assert message == '"jobName" is required; "taskRoles[0].command" is required'
    assert _error([1, 2]) == "the body must be a JSON object"


# -- job config -> JobSpec ------------------------------------------------------------------


def test_a_config_becomes_a_gang_of_task_roles() -> None:
    raw = _config(
        virtualCluster="vc1",
        gpuType="sim-a100",
        retryCount=2,
        taskRoles=[
            {"name": "ps", "taskNumber": 1, "cpuNumber": 2, "memoryMB": 2048, "command": "ps"},
            {
                "name": "Worker_1",
                "taskNumber": 4,
                "gpuNumber": 2,
                "shmMB": 32,
                "minFailedTaskCount": None,
                "minSucceededTaskCount": 3,
                "command": "work",
            },
        ],
    )
    spec = _spec(raw)
    assert (spec.name, spec.project, spec.backoff_limit) == ("examplejob", "vc1", 2)
    assert [t.name for t in spec.tasks] == ["ps", "worker-1"]
    ps, worker = spec.tasks
    assert ps.resources == Resources(
        gpu=0, gpu_model="sim-a100", cpu=2, memory=2048 * MIB, shm=64 * MIB
    )
    assert (worker.replicas, worker.resources.gpu, worker.resources.shm) == (4, 2, 32 * MIB)
    assert (ps.min_failed, ps.min_succeeded) == (1, None)
    assert (worker.min_failed, worker.min_succeeded) == (-1, 3)
    assert spec.replica_count == 5 and spec.total_gpu == 8
    assert {t.image for t in spec.tasks} == {"pai.run.tensorflow"}
    assert json.loads(spec.metadata[pai.CONFIG_ANNOTATION]) == raw


def test_retry_forever_is_pier_most() -> None:
    assert _spec(_config(retryCount=-1)).backoff_limit == pai.RETRY_FOREVER


@pytest.mark.parametrize(
    ("names", "pier_names"),
    [
        (["Main"], ["main"]),
        (["a.b", "a_b", "a~b"], ["a-b", "a-b-2", "a-b-3"]),
        (["~~~"], ["task"]),
        (["x" * 63], ["x" * 56]),
    ],
)
def test_role_names_become_unique_pier_names(names: list[str], pier_names: list[str]) -> None:
    roles = [{"name": name, "command": "x"} for name in names]
    assert [t.name for t in _spec(_config(taskRoles=roles)).tasks] == pier_names


def test_job_names_become_pier_names() -> None:
    assert _spec(_config(jobName="My.Job_2024")).name == "my-job-2024"
    assert _spec(_config(jobName="...")).name == "job"


def test_task_environment() -> None:
    raw = _config(
        dataDir="hdfs://data/$PAI_USER_NAME/$PAI_JOB_NAME",
        outputDir="/out/$PAI_USERNAME",
        jobEnvs={"LR": 0.5, "EPOCHS": 10, "DEBUG": True, "PAI_JOB_NAME": "mine", "STEPS": 2.0},
        taskRoles=[
            {"name": "ps", "command": "x"},
            {
                "name": "worker",
                "taskNumber": 2,
                "gpuNumber": 1,
                "command": "y",
                "portList": [{"label": "ssh", "beginAt": 2222}, {"label": "http", "beginAt": 0}],
            },
        ],
    )
    env = _spec(raw, user="bob").tasks[1].env
    expected = {
        "PAI_USER_NAME": "bob",
        "PAI_JOB_VC_NAME": "default",
        "PAI_TASK_ROLE_COUNT": "2",
        "PAI_TASK_ROLE_LIST": "ps,worker",
        "PAI_TASK_ROLE_TASK_COUNT_ps": "1",
        "PAI_TASK_ROLE_TASK_COUNT_worker": "2",
        "PAI_CURRENT_TASK_ROLE_NAME": "worker",
        "PAI_RESOURCE": "1,1,100,64",
        "PAI_MIN_FAILED_TASK_COUNT_worker": "1",
        "PAI_MIN_SUCCEEDED_TASK_COUNT_worker": "",
        "PAI_DATA_DIR": "hdfs://data/bob/exampleJob",
        "PAI_OUTPUT_DIR": "/out/bob",
        "PAI_CODE_DIR": "",
        "PAI_CONTAINER_HOST_ssh_PORT_LIST": "2222",
        "PAI_CONTAINER_SSH_PORT": "2222",
        "PAI_PORT_LIST_worker_0_ssh": "2222",
        "PAI_PORT_LIST_worker_1_ssh": "2222",
        # jobEnvs last, in JavaScript's spelling; they win
        "PAI_JOB_NAME": "mine",
        "LR": "0.5",
        "EPOCHS": "10",
        "DEBUG": "true",
        "STEPS": "2",
    }
    assert env == expected


def test_fixed_ports_are_ports_and_ssh_is_exposed() -> None:
    role = {
        "name": "main",
        "command": "x",
        "portList": [
            {"label": "ssh", "beginAt": 2222},
            {"label": "tb", "beginAt": 6006, "portNumber": 2},
            {"label": "any", "beginAt": 0, "portNumber": 3},
        ],
    }
    ports = _spec(_config(taskRoles=[role])).tasks[0].ports
    assert ports == [
        Port(container_port=2222, host_port=2222, name="ssh", expose="ssh"),
        Port(container_port=6006, host_port=6006, name="tb"),
        Port(container_port=6007, host_port=6007, name="tb"),
    ]


def test_the_command_runs_under_bash_with_the_replica_index() -> None:
    command = 'echo "$PAI_TASK_INDEX/$PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX" "$0"; exit 4'
    task = _spec(_config(taskRoles=[{"name": "main", "command": command}])).tasks[0]
    done = subprocess.run(
        task.argv,
        env={"PATH": os.defpath, "PIER_REPLICA_INDEX": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (4, "3/3 /bin/bash\n")


def test_an_impossible_spec_is_bad_input() -> None:
    roles = [
        {"name": f"r{i}", "command": "x", "taskNumber": 1024, "gpuNumber": 1} for i in range(5)
    ]
    with pytest.raises(pai.OpenPaiError) as caught:
        _spec(_config(taskRoles=roles))
    assert caught.value.code == "InvalidParametersError"
    assert "5120 GPUs" in caught.value.message


# -- JobSpec -> job config, views -----------------------------------------------------------


def _view(spec: JobSpec, status: JobStatus = JobStatus.SUCCEEDED, **fields: Any) -> JobView:
    values: dict[str, Any] = {
        "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "name": spec.name or "job",
        "project": spec.project or "default",
        "owner": "alice",
        "status": status,
        "kind": "train",
        "preemptible": True,
        "gpu": spec.total_gpu,
        "created_at": 1700000000.25,
        "updated_at": 1700000010.0,
        "spec": spec,
        **fields,
    }
    return JobView(**values)


def test_the_config_reads_back_as_submitted() -> None:
    raw = _config(taskRoles=[{"name": "main", "command": "x", "taskNumber": "2"}])
    spec = _spec(raw)
    assert views.job_config_of(spec, "exampleJob", "default") == raw


def test_a_native_job_gets_a_derived_config() -> None:
    spec = JobSpec(
        name="native",
        tasks=[
            TaskRole(
                name="main",
                replicas=2,
                image="python:3.12",
                command=["python", "-c", "print('hi there')"],
                resources=Resources(gpu=0.5, cpu=1.5, memory="1Gi", gpu_model="a100"),
                ports=[Port(container_port=22, expose="ssh", name="ssh")],
                min_failed=-1,
            )
        ],
    )
    assert views.job_config_of(spec, "native", "lab") == {
        "jobName": "native",
        "image": "python:3.12",
        "virtualCluster": "lab",
        "retryCount": 6,
        "gpuType": "a100",
        "taskRoles": [
            {
                "name": "main",
                "taskNumber": 2,
                "cpuNumber": 1.5,
                "memoryMB": 1024,
                "gpuNumber": 0.5,
                "portList": [{"label": "ssh", "beginAt": 22}],
                "command": "python -c 'print('\"'\"'hi there'\"'\"')'",
                "minFailedTaskCount": None,
                "minSucceededTaskCount": None,
            }
        ],
    }


def test_job_name_comes_from_the_submission_id() -> None:
    spec = _spec(_config())
    key = "openpai/0f8fad5b-d9cb-469f-a165-70867728950e/exampleJob"
    assert views.job_name_of(_view(spec, submission_id=key)) == "exampleJob"
    assert views.job_name_of(_view(spec)) == "examplejob"
    assert views.job_name_of(_view(spec, submission_id="app-123")) == "examplejob"


@pytest.mark.parametrize(
    ("status", "state", "sub_state"),
    [
        (JobStatus.PENDING, "WAITING", "FRAMEWORK_WAITING"),
        (JobStatus.RUNNING, "RUNNING", "APPLICATION_RUNNING"),
        (JobStatus.SUCCEEDED, "SUCCEEDED", "FRAMEWORK_COMPLETED"),
        (JobStatus.FAILED, "FAILED", "FRAMEWORK_COMPLETED"),
        (JobStatus.STOPPED, "STOPPED", "FRAMEWORK_COMPLETED"),
        (JobStatus.UNKNOWN, "UNKNOWN", "UNKNOWN"),
    ],
)
def test_states(status: JobStatus, state: str, sub_state: str) -> None:
    summary = views.job_summary(_view(_spec(_config()), status))
    assert (summary["state"], summary["subState"]) == (state, sub_state)


def test_job_status_of_a_failed_job() -> None:
    view = _view(
        _spec(_config()),
        JobStatus.FAILED,
        exit_code=3,
        reason="Error",
        message="replica main-0 exited with code 3",
        attempt=2,
        retries=1,
        started_at=1700000001.5,
        finished_at=1700000002.125,
        submission_id="openpai/p/exampleJob",
    )
    assert views.job_status(view) == {
        "name": "exampleJob",
        "username": "alice",
        "virtualCluster": "default",
        "state": "FAILED",
        "subState": "FRAMEWORK_COMPLETED",
        "executionType": "START",
        "retries": 1,
        "createdTime": 1700000000250,
        "completedTime": 1700000002125,
        "appId": "0f8fad5b-d9cb-469f-a165-70867728950e_2",
        "appProgress": 1,
        "appTrackingUrl": "/v1/jobs/0f8fad5b-d9cb-469f-a165-70867728950e/logs",
        "appLaunchedTime": 1700000001500,
        "appCompletedTime": 1700000002125,
        "appExitCode": 3,
        "appExitDiagnostics": "Error: replica main-0 exited with code 3",
    }


def test_a_live_job_has_no_exit_yet() -> None:
    view = _view(_spec(_config()), JobStatus.RUNNING, exit_code=None, stop_requested=True)
    status = views.job_status(view)
    assert status["appExitCode"] is None and status["appExitDiagnostics"] is None
    assert (status["completedTime"], status["appProgress"], status["appId"]) == (None, 0, None)
    assert status["executionType"] == "STOP"


def test_ssh_info() -> None:
    role = {
        "name": "w",
        "taskNumber": 2,
        "command": "x",
        "portList": [{"label": "ssh", "beginAt": 2222}],
    }
    spec = _spec(_config(taskRoles=[role, {"name": "ps", "command": "y"}]))
    replicas = [
        ReplicaView(task="w", index=0, node="node-a"),
        ReplicaView(task="w", index=1, node="node-b"),
        ReplicaView(task="ps", index=0, node="node-a"),
    ]
    running = views.ssh_info(_view(spec, JobStatus.RUNNING, replicas=replicas))
    job_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert running == {
        "containers": [
            {"id": f"{job_id}-w-0", "sshIp": "node-a", "sshPort": "2222"},
            {"id": f"{job_id}-w-1", "sshIp": "node-b", "sshPort": "2222"},
        ],
        "keyPair": None,
    }
    assert views.ssh_info(_view(spec, JobStatus.PENDING))["containers"] == []
    with pytest.raises(pai.OpenPaiError) as caught:
        views.ssh_info(_view(_spec(_config()), JobStatus.RUNNING, replicas=replicas))
    assert (caught.value.status_code, caught.value.code) == (404, "NoJobSshInfoError")
    assert caught.value.message.startswith("SSH is not available for job examplejob")


def _usage(**fields: Any) -> VcUsage:
    values: dict[str, Any] = {
        "name": "vc",
        "gpu_quota": 0.0,
        "max_gpu": None,
        "cpu_quota": None,
        "jobs_running": 0,
        "jobs_pending": 0,
        "gpu_used": 0.0,
        "cpu_used": 0.0,
        "memory_used": 0,
        **fields,
    }
    return VcUsage(**values)


def test_virtual_cluster_percentages_are_of_the_cluster_gpus() -> None:
    cluster = ClusterCapacity(gpus=12, cpus=64, memory=256 * 1024**3)
    usage = _usage(
        gpu_quota=4,
        max_gpu=6,
        jobs_running=2,
        jobs_pending=3,
        gpu_used=5,
        cpu_used=6.5,
        memory_used=3 * 1024**3 + 1,
    )
    assert views.vc_view(usage, cluster) == {
        "capacity": 33.33,
        "maxCapacity": 50,
        "usedCapacity": 41.67,
        "numActiveJobs": 2,
        "numJobs": 5,
        "numPendingJobs": 3,
        "resourcesUsed": {"memory": 3073, "vCores": 6.5, "GPUs": 5},
    }
    unlimited = views.vc_view(_usage(gpu_quota=20), cluster)
    assert (unlimited["capacity"], unlimited["maxCapacity"]) == (100, 100)


def test_a_cluster_without_gpus_counts_cores() -> None:
    cluster = ClusterCapacity(gpus=0, cpus=8, memory=0)
    view = views.vc_view(_usage(cpu_quota=2, cpu_used=4), cluster)
    assert (view["capacity"], view["maxCapacity"], view["usedCapacity"]) == (25, 100, 50)
    empty = views.vc_view(_usage(), ClusterCapacity(gpus=0, cpus=0, memory=0))
    assert (empty["capacity"], empty["maxCapacity"], empty["usedCapacity"]) == (0, 0, 0)


# -- errors and other bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "expected_status", "expected"),
    [
        (404, "JobNotFound", 404, {"error": "JobNotFound", "message": "m"}),
        (401, "unauthenticated", 401, {"error": "UnauthorizedUserError", "message": "m"}),
        (422, "invalid", 400, {"error": "InvalidParametersError", "message": "m"}),
        (400, "malformed_json", 400, {"error": "InvalidParametersError", "message": "m"}),
        (403, "forbidden", 403, {"error": "ForbiddenUserError", "message": "m"}),
        (404, "not_found", 404, {"error": "NotFoundError", "message": "m"}),
        (
            500,
            "internal",
            500,
            {"error": "InternalServerError", "message": "internal server error"},
        ),
        (418, "teapot", 418, {"error": "UnknownError", "message": "m"}),
    ],
)
def test_errors_render_in_openpais_shape(
    status: int, code: str, expected_status: int, expected: dict[str, str]
) -> None:
    response = pai.render_error(status, code, "m", [])
    assert response.status_code == expected_status
    assert json.loads(bytes(response.body)) == expected


def test_form_bodies_and_token_requests() -> None:
    form = pai.form_body(b"username=alice&password=p%40ss+word&expiration=3600")
    assert form == {"username": "alice", "password": "p@ss word", "expiration": "3600"}
    token = pai.parse(pai.TokenRequest, form)
    assert token.expiration == 3600
    assert pai.parse(pai.TokenRequest, {"username": "a", "password": "secret"}).expiration == 86400
    assert '"expiration"' in _error({**form, "expiration": "59"}, pai.TokenRequest)


def test_user_bodies() -> None:
    assert pai.parse(pai.UserUpdate, {"username": "bob", "modify": True}).password == ""
    problem = _error({"username": "bob", "modify": False}, pai.UserUpdate)
    assert '"password" is required to create a user: at least 6 characters' in problem
    short = _error({"username": "bob", "password": "12345", "modify": True}, pai.UserUpdate)
    assert '"password" is too short' in short
    vcs = pai.parse(pai.UserVirtualClusters, {"virtualClusters": "vc2,vc1,,vc2"})
    assert vcs.names == ["vc1", "vc2"]
    assert pai.parse(pai.UserVirtualClusters, {"virtualClusters": ""}).names == []
    assert pai.parse(pai.ExecutionType, {"value": "STOP"}).value == "STOP"
    assert '"value"' in _error({"value": "stop"}, pai.ExecutionType)


def test_a_refused_password_is_not_echoed() -> None:
    problem = _error({"username": "alice", "password": "abc12"}, pai.TokenRequest)
    assert problem == '"password": string should have at least 6 characters'
    assert "abc12" not in _error(
        {"username": "bob", "password": "abc12", "modify": True}, pai.UserUpdate
    )
