"""Seed 001, Run:AI jobs as Kubernetes YAML: the seed's Job and StatefulSet, filled in, are
submitted over real HTTP (the API and the ``pier`` CLI against a real server), run on the
local executor, are deleted by kind, and export back to manifests that Kubernetes' own schema
accepts and that re-apply to the same job. On SQLite and PostgreSQL (``shared_api``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from tests.integration.conftest import Api
from tests.integration.conftest import shared_api as shared_api  # the fixture
from tests.seed_examples import SEED_BUILD, SEED_TRAIN
from typer.testing import CliRunner, Result

from pier.cli.main import app

K8S_VERSION = "1.30"
YAML = {"Content-Type": "application/yaml"}


# "The runai submit CLI command includes many more flags ... [they] can be added to the
# YAML above": the train job's command, which an image alone would carry (see the test that
# submits the seed's Train manifest as it stands).
TRAIN_COMMAND = """\
        command: ["sh", "-c"]
        args: ["echo trained on GPU $CUDA_VISIBLE_DEVICES"]
"""


def fill(
    template: str,
    name: str,
    user: str,
    gpus: str = "1",
    namespace: str | None = None,
    command: bool = True,
) -> str:
    text = (
        template.replace("<JOB-NAME>", name)
        .replace("<USER-NAME>", user)
        .replace("<IMAGE-NAME>", "gcr.io/run-ai-demo/quickstart")
        .replace("<REQUESTED-GPUs>", gpus)
    )
    if template is SEED_TRAIN and command:
        text = text.replace("        resources:\n", TRAIN_COMMAND + "        resources:\n", 1)
    if namespace is not None:
        text = text.replace(
            "metadata:\n  name:", f"metadata:\n  namespace: {namespace}\n  name:", 1
        )
    return text


def fraction(text: str, share: str = "0.5") -> str:
    """The seed's "Using Fractional GPUs": the limit goes, the template annotation comes."""
    doc = yaml.safe_load(text)
    del doc["spec"]["template"]["spec"]["containers"][0]["resources"]
    doc["spec"]["template"]["metadata"]["annotations"] = {"gpu-fraction": share}
    return yaml.safe_dump(doc, sort_keys=False)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Team:
    """A project with a member, on the shared server."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.project = unique("proj")
        self.user = unique("user")
        api.project(self.project, gpu_quota=4)
        self.token = api.user(self.user, self.project)

    def apply(self, text: str, token: str | None = None, **params: str) -> httpx.Response:
        return self.api.client.post(
            "/v1/manifests",
            content=text.encode(),
            params=params,
            headers={**YAML, **self.api.headers(token or self.token)},
        )

    def jobs(self) -> list[str]:
        r = self.api.client.get(
            "/v1/jobs", params={"project": self.project}, headers=self.api.headers()
        )
        assert r.status_code == 200, r.text
        return [j["name"] for j in r.json()["items"]]

    def export(self, name: str, token: str | None = None, **params: str) -> httpx.Response:
        return self.api.client.get(
            f"/v1/jobs/{name}/manifest",
            params={"project": self.project, **params},
            headers=self.api.headers(token or self.token),
        )


@pytest.fixture
def team(shared_api: Api) -> Team:
    return Team(shared_api)


runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("PIER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIER_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pier(team: Team, *args: str, code: int = 0) -> Result:
    env = {"PIER_URL": str(team.api.client.base_url).rstrip("/"), "PIER_TOKEN": team.token}
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, f"pier {' '.join(args)} -> {result.exit_code}\n{result.output}"
    return result


# ---- submitting the seed's manifests -----------------------------------------------------


def test_train_job_runs_to_completion_via_the_api(team: Team) -> None:
    name = unique("train")
    r = team.apply(fill(SEED_TRAIN, name, team.user, namespace=f"runai-{team.project}"))
    assert r.status_code == 201, r.text
    [item] = r.json()["items"]
    assert (item["kind"], item["name"], item["project"]) == ("Job", name, team.project)
    job = item["job"]
    assert (job["kind"], job["owner"], job["gpu"], job["preemptible"]) == (
        "train",
        team.user,
        1.0,
        True,
    )
    assert job["spec"]["labels"] == {"user": team.user}
    done = team.api.wait(job["id"], timeout=30)
    assert done["status"] == "Succeeded", done
    logs = team.api.client.get(f"/v1/jobs/{job['id']}/logs", headers=team.api.headers())
    assert logs.text.strip() in {f"trained on GPU {d}" for d in range(4)}, logs.text


def test_the_seed_train_manifest_as_it_stands_needs_a_command(team: Team) -> None:
    """Its image's entrypoint would run on Kubernetes; the local executor runs commands and
    has no container runtime, so it says so, naming the field, and keeps nothing."""
    name = unique("train")
    r = team.apply(fill(SEED_TRAIN, name, team.user, command=False), project=team.project)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"][0]["loc"] == [
        "body",
        0,
        "spec",
        "template",
        "spec",
        "containers",
        0,
        "command",
    ]
    assert error["message"].startswith(
        f"document 1 (Job {name}): spec.template.spec.containers[0].command: "
    )
    assert "no container runtime" in error["message"]
    assert name not in team.jobs()


def test_build_statefulset_runs_until_deleted_as_sts_via_the_cli(team: Team, cli_env: Path) -> None:
    name = unique("build")
    r = team.apply(fraction(fill(SEED_BUILD, name, team.user)), project=team.project)
    assert r.status_code == 201, r.text
    job = r.json()["items"][0]["job"]
    assert (job["kind"], job["gpu"], job["preemptible"]) == ("interactive", 0.5, False)
    running = team.api.wait(job["id"], until=lambda j: j["status"] == "Running", timeout=30)
    assert running["replicas"][0]["gpu_fraction"] == 0.5
    # a StatefulSet is not a Job: kubectl finds no job of that name, nor does pier
    wrong = pier(team, "delete", "job", name, "-p", team.project, code=1)
    assert "not found" in wrong.output and "statefulset" in wrong.output
    assert team.api.job(job["id"])["status"] == "Running"
    pier(team, "delete", "sts", name, "-p", team.project)
    gone = team.api.client.get(f"/v1/jobs/{job['id']}", headers=team.api.headers())
    assert gone.status_code == 404


def test_multi_document_file_via_cli_apply_then_delete_by_kind(team: Team, cli_env: Path) -> None:
    train, build = unique("train"), unique("build")
    path = cli_env / "workloads.yaml"
    path.write_text(
        fill(SEED_TRAIN, train, team.user)
        + "---\n"
        + fill(SEED_BUILD, build, team.user, gpus="1", namespace=team.project)
    )
    result = pier(team, "apply", "-f", str(path), "-n", f"runai-{team.project}")
    assert result.output.splitlines() == [
        f"job.batch/{train} created (project {team.project})",
        f"statefulset.apps/{build} created (project {team.project})",
    ]
    assert team.api.job(train, project=team.project) and team.api.job(build, project=team.project)
    done = team.api.wait(team.api.job(train, project=team.project)["id"], timeout=30)
    assert done["status"] == "Succeeded"
    pier(team, "delete", "job", train, "-p", team.project)
    pier(team, "delete", f"statefulset/{build}", "-p", team.project)
    assert set(team.jobs()) & {train, build} == set()
    # plain ``pier delete NAME`` still works
    plain = unique("plain")
    path.write_text(fill(SEED_TRAIN, plain, team.user))
    applied = pier(team, "apply", "-f", str(path), "-p", team.project, "-o", "json")
    assert '"name": "' + plain + '"' in applied.output
    pier(team, "delete", plain, "-p", team.project)
    assert plain not in team.jobs()


def test_both_namespace_forms_and_the_project_option_agree(team: Team) -> None:
    for namespace in (team.project, f"runai-{team.project}"):
        name = unique("ns")
        r = team.apply(fill(SEED_TRAIN, name, team.user, namespace=namespace), project=team.project)
        assert r.status_code == 201, r.text
        assert r.json()["items"][0]["project"] == team.project
    other = Team(team.api)
    r = team.apply(
        fill(SEED_TRAIN, unique("ns"), team.user, namespace=team.project), project=other.project
    )
    assert r.status_code == 404  # the member of one project cannot name the other at all


# ---- all or nothing, and bad input -------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda t: t.replace("nvidia.com/gpu: 1", 'nvidia.com/gpu: "lots"'), 422, "nvidia.com/gpu"),
        (lambda t: t.replace("nvidia.com/gpu: 1", "nvidia.com/gpu: -1"), 422, "nvidia.com/gpu"),
        (
            lambda t: t.replace("nvidia.com/gpu: 1", "nvidia.com/gpu: 1\n            memory: 12XB"),
            422,
            "limits.memory: unknown unit 'XB'",
        ),
        (
            lambda t: t.replace("kind: Job", "kind: Deployment").replace("batch/v1", "apps/v1"),
            422,
            "kind: Deployment (apps/v1) is not supported",
        ),
        (
            lambda t: t.replace("        image: gcr.io/run-ai-demo/quickstart\n", "").replace(
                TRAIN_COMMAND, ""
            ),
            422,
            "containers[0].command",
        ),
        (
            lambda t: t.replace(
                "metadata:\n  name:", "metadata:\n  namespace: runai-nowhere\n  name:", 1
            ),
            404,
            "metadata.namespace: namespace 'runai-nowhere'",
        ),
    ],
)
def test_one_bad_document_keeps_the_whole_file_out(
    team: Team, mutate: Any, status: int, field: str
) -> None:
    good, bad = unique("good"), unique("bad")
    text = fill(SEED_TRAIN, good, team.user) + "---\n" + mutate(fill(SEED_TRAIN, bad, team.user))
    r = team.apply(text, project=team.project)
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("document 2 ") and field in message, message
    assert r.json()["error"]["details"][0]["loc"][:2] == ["body", 1]
    assert good not in team.jobs() and bad not in team.jobs()


def test_duplicate_names_in_the_file_and_in_the_project(team: Team) -> None:
    name, fresh = unique("dup"), unique("fresh")
    r = team.apply(
        fill(SEED_TRAIN, name, team.user) + "---\n" + fill(SEED_BUILD, name, team.user),
        project=team.project,
    )
    assert r.status_code == 422 and "is also the name of document 1" in r.text
    assert team.apply(fill(SEED_TRAIN, name, team.user), project=team.project).status_code == 201
    # the second document clashes with the stored job: the first is rolled back with it
    r = team.apply(
        fill(SEED_TRAIN, fresh, team.user) + "---\n" + fill(SEED_TRAIN, name, team.user),
        project=team.project,
    )
    assert r.status_code == 409, r.text
    assert r.json()["error"]["message"].startswith(f"document 2 (Job {name}): metadata.name: ")
    assert fresh not in team.jobs()


def test_other_kinds_and_fields_are_named(team: Team) -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec: {}\n"
    r = team.apply(service, project=team.project)
    assert r.status_code == 422 and "Service (v1) is not supported" in r.text
    text = fill(SEED_TRAIN, unique("t"), team.user).replace(
        "      restartPolicy: Never\n", "      restartPolicy: Never\n      tolerations: []\n"
    )
    r = team.apply(text, project=team.project)
    assert r.status_code == 422
    assert (
        "spec.template.spec.tolerations: pod spec field 'tolerations' is not supported"
        in (r.json()["error"]["message"])
    )
    r = team.apply("a: [", project=team.project)
    assert r.status_code == 422 and "not valid YAML" in r.text


def test_json_body_is_accepted(team: Team) -> None:
    name = unique("json")
    doc = yaml.safe_load(fill(SEED_TRAIN, name, team.user))
    r = team.api.client.post(
        "/v1/manifests",
        json=doc,
        params={"project": team.project},
        headers=team.api.headers(team.token),
    )
    assert r.status_code == 201, r.text


# ---- who may do what ----------------------------------------------------------------------


def test_a_member_of_b_cannot_apply_into_a_nor_export_its_jobs(team: Team) -> None:
    other = Team(team.api)
    name = unique("mine")
    assert team.apply(fill(SEED_TRAIN, name, team.user), project=team.project).status_code == 201
    r = other.apply(fill(SEED_TRAIN, unique("x"), other.user, namespace=team.project))
    assert r.status_code == 404 and f"namespace '{team.project}'" in r.text
    r = other.apply(fill(SEED_TRAIN, unique("x"), other.user), project=team.project)
    assert r.status_code == 404
    r = other.export(name)
    assert r.status_code == 404
    job_id = team.api.job(name, project=team.project)["id"]
    r = team.api.client.get(f"/v1/jobs/{job_id}/manifest", headers=team.api.headers(other.token))
    assert r.status_code == 404


def test_the_user_label_never_speaks_for_someone_else(team: Team) -> None:
    name = unique("imposter")
    r = team.apply(fill(SEED_TRAIN, name, "admin"), project=team.project)
    assert r.status_code == 403, r.text
    assert "spec.template.metadata.labels.user" in r.json()["error"]["message"]
    assert name not in team.jobs()
    # an admin may label a job with another user's name; the admin still owns it
    r = team.apply(
        fill(SEED_TRAIN, name, team.user), token=team.api.admin_token, project=team.project
    )
    assert r.status_code == 201, r.text
    assert r.json()["items"][0]["job"]["owner"] == "admin"


def test_apply_needs_a_token(team: Team) -> None:
    r = team.api.client.post("/v1/manifests", content=fill(SEED_TRAIN, "x", "y").encode())
    assert r.status_code == 401


# ---- export ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [SEED_TRAIN, SEED_BUILD])
def test_export_renders_a_valid_manifest_that_reapplies_to_the_same_job(
    team: Team, cli_env: Path, template: str
) -> None:
    name = unique("orig")
    text = (
        fraction(fill(template, name, team.user))
        if template is SEED_BUILD
        else fill(template, name, team.user)
    )
    assert team.apply(text, project=team.project).status_code == 201
    r = team.export(name)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    manifest = yaml.safe_load(r.text)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["metadata"]["namespace"] == f"runai-{team.project}"
    assert team.export(name, format="json").json() == manifest
    cli = pier(team, "export", name, "--format", "k8s", "-p", team.project)
    assert yaml.safe_load(cli.output) == manifest

    copy_name = unique("copy")
    manifest["metadata"]["name"] = copy_name
    if template is SEED_BUILD:
        manifest["spec"]["selector"]["matchLabels"]["release"] = copy_name
        manifest["spec"]["template"]["metadata"]["labels"]["release"] = copy_name
    r = team.apply(yaml.safe_dump(manifest))
    assert r.status_code == 201, r.text
    original = team.api.job(name, project=team.project)["spec"]
    copied = r.json()["items"][0]["job"]["spec"]
    assert {**copied, "name": name} == original
    for ref in (name, copy_name):
        pier(team, "delete", ref, "-p", team.project)


def test_export_names_what_a_manifest_cannot_carry(team: Team) -> None:
    job = team.api.submit(
        ["true"],
        token=team.token,
        name=unique("ray"),
        project=team.project,
        task={"runtime_env": {"pip": ["numpy"]}},
    )
    r = team.export(job["name"])
    assert r.status_code == 422
    assert "tasks[0].runtime_env" in r.json()["error"]["message"]


def test_cli_apply_names_the_bad_document_and_keeps_nothing(team: Team, cli_env: Path) -> None:
    good, bad = unique("good"), unique("bad")
    path = cli_env / "two.yaml"
    path.write_text(
        fill(SEED_TRAIN, good, team.user)
        + "---\n"
        + fill(SEED_TRAIN, bad, team.user).replace("nvidia.com/gpu: 1", "nvidia.com/gpu: -1")
    )
    result = pier(team, "apply", "-f", str(path), "-p", team.project, code=1)
    first = result.output.splitlines()[0]
    assert first.startswith(f"error: document 2 (Job {bad}): spec.template.spec.containers[0]")
    assert "limits[nvidia.com/gpu]" in first
    assert {good, bad} & set(team.jobs()) == set()
    missing = pier(team, "apply", "-f", str(cli_env / "nope.yaml"), code=2)
    assert "cannot read" in missing.output
