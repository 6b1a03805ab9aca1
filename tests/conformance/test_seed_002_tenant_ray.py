"""Seed 002: the tenant job API in the Ray Jobs shape, driven by the real Ray client.

A real pier server (real store, scheduler and local executor, on SQLite and PostgreSQL) on
127.0.0.1; the stock ``ray.job_submission.JobSubmissionClient``, the ``ray job`` CLI and curl
talk to it. No Ray cluster is started: pier is the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient
from tests.conftest import BACKENDS, fresh_database
from tests.integration.conftest import Api, make_settings, serving
from tests.seed_examples import SEED_BODY

RAY = str(Path(sys.executable).with_name("ray"))
# Ray 2.60's tail_job_logs passes ssl=None to aiohttp, which deprecates it: the client's
# business, not the server's.
pytestmark = pytest.mark.filterwarnings("ignore:ssl=None is deprecated:DeprecationWarning")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Cast:
    api: Api
    url: str
    pa: str
    pb: str
    alice: str
    bob: str

    def client(self, token: str | None = None, tenant: str | None = None) -> JobSubmissionClient:
        headers = {"Authorization": f"Bearer {token or self.alice}"}
        if tenant:
            headers["X-Tenant-Id"] = tenant
        return JobSubmissionClient(self.url, headers=headers)

    def raw(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.alice}", **kwargs.pop("headers", {})}
        return self.api.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture(scope="module", params=BACKENDS)
def cast(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cast]:
    home = tmp_path_factory.mktemp("ray")
    with (
        fresh_database(request.param, home) as url,
        serving(make_settings(home / "home", url)) as api,
    ):
        pa, pb = _unique("pa"), _unique("pb")
        api.project(pa)
        api.project(pb)
        alice = api.user(_unique("alice"), pa)
        bob = api.user(_unique("bob"), pb)
        yield Cast(api, str(api.client.base_url).rstrip("/"), pa, pb, alice, bob)


def wait_terminal(client: JobSubmissionClient, sid: str, timeout: float = 60.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_job_status(sid)
        if status.is_terminal():
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{sid} still {status}")
        time.sleep(0.05)


def wait_running(client: JobSubmissionClient, sid: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get_job_status(sid) != JobStatus.RUNNING:
        assert time.monotonic() < deadline, f"{sid} never ran"
        time.sleep(0.05)


# -- the seed's own example -------------------------------------------------------------------


def test_seed_request_example_works_as_written_with_curl(cast: Cast, tmp_path: Path) -> None:
    body = {**SEED_BODY, "submission_id": _unique("app")}
    (tmp_path / "body.json").write_text(json.dumps(body))
    curl = shutil.which("curl")
    assert curl is not None
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-X",
            "POST",
            f"{cast.url}/api/jobs",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"X-Tenant-Id: {cast.pa}",
            "-H",
            f"Authorization: Bearer {cast.alice}",
            "-d",
            f"@{tmp_path / 'body.json'}",
            "-w",
            "\n%{http_code}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    answer, code = out.rsplit("\n", 1)
    assert code == "200"
    assert json.loads(answer)["submission_id"] == body["submission_id"]
    client = cast.client(tenant=cast.pa)
    info = client.get_job_info(body["submission_id"])
    assert info.entrypoint == "python script.py"
    assert info.metadata == body["metadata"]
    assert info.runtime_env is not None
    assert info.runtime_env["working_dir"] == "file:///usr1/deploy/file.zip"
    assert info.runtime_env["pip"]["packages"] == ["numpy==1.24", "scipy==1.11.0"]
    assert info.runtime_env["env_vars"]["SOURCE_REGION"] == "suzhou_std"
    job = cast.api.job(info.job_id or "")
    resources = job["spec"]["tasks"][0]["resources"]
    assert resources["cpu"] == 3 and resources["memory"] == 134217728
    assert resources["custom"] == {"NPU": 0}
    assert job["project"] == cast.pa
    # The archive is not on this machine: the job fails in its runtime_env setup, as Ray's
    # would, and says so in its log.
    assert wait_terminal(client, body["submission_id"]) == JobStatus.FAILED
    logs = client.get_job_logs(body["submission_id"])
    assert "working_dir archive /usr1/deploy/file.zip does not exist on this node" in logs


def test_seed_error_for_a_pool_label_that_matches_no_node(cast: Cast) -> None:
    sid = _unique("app")
    r = cast.raw(
        "POST",
        "/api/jobs",
        headers={"X-Pool-Label": "abc"},
        json={"entrypoint": "true", "runtime_env": {}, "submission_id": sid},
    )
    assert r.status_code == 400
    text = r.json()
    assert isinstance(text, str)
    assert text.startswith(f"create app failed, submissionId:[{sid}], err: \n")
    assert "no available resource that meets the request requirements" in text
    assert "[Affinity can't be Satisfied]" in text
    assert "node pool 'abc'" in text
    assert cast.raw("GET", f"/api/jobs/{sid}").status_code == 404  # nothing was created


def test_pool_label_that_matches_runs(cast: Cast) -> None:
    client = JobSubmissionClient(
        cast.url, headers={"Authorization": f"Bearer {cast.alice}", "X-Pool-Label": "default"}
    )
    sid = client.submit_job(entrypoint="true")
    assert wait_terminal(client, sid) == JobStatus.SUCCEEDED
    job = cast.api.job(client.get_job_info(sid).job_id or "")
    assert job["spec"]["tasks"][0]["resources"]["node_pool"] == "default"


def test_custom_resource_no_node_offers_is_unschedulable(cast: Cast) -> None:
    with pytest.raises(RuntimeError, match=r"status code 400: .*create app failed.*'NPU'"):
        cast.client().submit_job(entrypoint="true", entrypoint_resources={"NPU": 1})


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"entrypoint_num_cpus": 0.2}, "entrypoint_num_cpus"),
        ({"entrypoint_num_cpus": 17}, "entrypoint_num_cpus"),
        ({"entrypoint_memory": 134217727}, "entrypoint_memory"),
        ({"entrypoint_memory": 1125899906842625}, "entrypoint_memory"),
        ({"entrypoint_memory": 2.5e8}, "entrypoint_memory"),
        ({"entrypoint": None}, "entrypoint"),
        ({"runtime_env": None}, "runtime_env"),
        ({"entrypoint_num_gpus": 1.5}, "entrypoint_num_gpus"),
        ({"entrypoint_resources": {"NPU": -1}}, "entrypoint_resources.NPU"),
        ({"runtime_env": {"conda": "env"}}, "runtime_env.conda"),
        ({"runtime_env": {"working_dir": "s3://b/code.zip"}}, "runtime_env.working_dir"),
        ({"runtime_env": {"env_vars": {"A": 1}}}, "runtime_env.env_vars.A"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"submission_id": "has/slash"}, "submission_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_400_naming_the_field(cast: Cast, patch: dict[str, Any], field: str) -> None:
    body = {"entrypoint": "true", "runtime_env": {}, **patch}
    body = {k: v for k, v in body.items() if v is not None}
    r = cast.raw("POST", "/api/jobs/", json=body)
    assert r.status_code == 400, r.text
    message = r.json()
    assert message.startswith("create app failed, submissionId:[")
    assert f"err: {field}:" in message


def test_submit_bodies_keep_the_ordinary_size_limit(cast: Cast) -> None:
    body = {"entrypoint": "true", "runtime_env": {"env_vars": {"BIG": "x" * 2 * 1024 * 1024}}}
    assert cast.raw("POST", "/api/jobs/", json=body).status_code == 413


def test_client_surfaces_a_bad_field(cast: Cast) -> None:
    with pytest.raises(RuntimeError, match=r"400: .*entrypoint_num_cpus: 32 is out of range"):
        cast.client().submit_job(entrypoint="true", entrypoint_num_cpus=32)


# -- the Ray client, call by call ------------------------------------------------------------


def test_submit_with_resources_status_info_logs_list(cast: Cast) -> None:
    client = cast.client()
    sid = _unique("sdk")
    assert (
        client.submit_job(
            entrypoint='echo "hello $GREETING"; echo to-stderr >&2',
            submission_id=sid,
            runtime_env={"env_vars": {"GREETING": "tenant"}},
            metadata={"owner": "alice"},
            entrypoint_num_cpus=1,
            entrypoint_num_gpus=0.5,
            entrypoint_memory=256 * 1024**2,
            entrypoint_resources={"NPU": 0},
        )
        == sid
    )
    assert wait_terminal(client, sid) == JobStatus.SUCCEEDED
    info = client.get_job_info(sid)
    assert info.submission_id == sid
    assert info.type.value == "SUBMISSION"
    assert info.entrypoint == 'echo "hello $GREETING"; echo to-stderr >&2'
    assert info.driver_exit_code == 0
    assert info.message == "Job finished successfully."
    assert info.metadata == {"owner": "alice"}
    assert info.start_time is not None and info.end_time is not None
    assert info.start_time <= info.end_time
    assert client.get_job_logs(sid) == "hello tenant\nto-stderr\n"
    listed = {j.submission_id: j for j in client.list_jobs()}
    assert listed[sid].status == JobStatus.SUCCEEDED
    job = cast.api.job(info.job_id or "")
    assert job["project"] == cast.pa  # alice's default project
    assert job["name"] == sid
    assert job["spec"]["tasks"][0]["resources"]["gpu"] == 0.5


def test_generated_id_has_the_app_prefix(cast: Cast) -> None:
    client = cast.client()
    sid = client.submit_job(entrypoint="exit 3")
    assert sid.startswith("app-") and len(sid) == 20
    assert wait_terminal(client, sid) == JobStatus.FAILED
    info = client.get_job_info(sid)
    assert info.driver_exit_code == 3
    assert info.error_type == "JOB_ENTRYPOINT_COMMAND_ERROR"
    assert info.message == "Job entrypoint command failed with exit code 3."


def test_stop_then_delete(cast: Cast) -> None:
    client = cast.client()
    sid = client.submit_job(entrypoint="echo started; sleep 60")
    wait_running(client, sid)
    with pytest.raises(RuntimeError, match="non-terminal state RUNNING"):
        client.delete_job(sid)
    assert client.stop_job(sid) is True
    assert wait_terminal(client, sid, timeout=20) == JobStatus.STOPPED
    info = client.get_job_info(sid)
    assert info.driver_exit_code is None
    assert info.message == "Job was intentionally stopped."
    assert client.stop_job(sid) is False
    assert client.delete_job(sid) is True
    with pytest.raises(RuntimeError, match=f"404: .*Job {sid} does not exist"):
        client.get_job_info(sid)
    with pytest.raises(RuntimeError, match="404"):
        client.delete_job(sid)
    assert sid not in {j.submission_id for j in client.list_jobs()}


def test_duplicate_submission_id(cast: Cast) -> None:
    client = cast.client()
    sid = _unique("dup")
    client.submit_job(entrypoint="true", submission_id=sid)
    with pytest.raises(RuntimeError, match=f"Job with submission_id {sid} already exists"):
        client.submit_job(entrypoint="true", submission_id=sid)


def test_tail_job_logs_follows_to_the_end(cast: Cast) -> None:
    client = cast.client()
    sid = client.submit_job(entrypoint="for i in 1 2 3; do echo line$i; sleep 0.3; done")

    async def tail() -> str:
        return "".join([chunk async for chunk in client.tail_job_logs(sid)])

    assert asyncio.run(tail()) == "line1\nline2\nline3\n"
    assert client.get_job_status(sid) == JobStatus.SUCCEEDED


def test_unauthenticated_and_wrong_tokens_fail(cast: Cast) -> None:
    from ray.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError):
        JobSubmissionClient(cast.url)
    with pytest.raises(AuthenticationError):
        JobSubmissionClient(cast.url, headers={"Authorization": "Bearer pier_nope"})
    for method, path in [
        ("GET", "/api/version"),
        ("GET", "/api/jobs/"),
        ("POST", "/api/jobs/"),
        ("GET", "/api/jobs/x"),
        ("GET", "/api/packages/gcs/_ray_pkg_0.zip"),
    ]:
        r = cast.api.client.request(method, path, json={"entrypoint": "true", "runtime_env": {}})
        assert r.status_code == 401, (method, path)


def test_tail_needs_a_token(cast: Cast) -> None:
    import aiohttp

    sid = cast.client().submit_job(entrypoint="true")
    ws_url = cast.url.replace("http", "ws") + f"/api/jobs/{sid}/logs/tail"

    async def handshake(headers: dict[str, str]) -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(ws_url, headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(handshake({})) == 401
    assert asyncio.run(handshake({"Authorization": f"Bearer {cast.bob}"})) == 404
    assert asyncio.run(handshake({"Authorization": f"Bearer {cast.alice}"})) == 101


def test_tenants_never_see_each_others_jobs(cast: Cast) -> None:
    alice, bob = cast.client(), cast.client(cast.bob)
    sid = alice.submit_job(entrypoint="true")
    for call in (bob.get_job_info, bob.get_job_logs, bob.stop_job, bob.delete_job):
        with pytest.raises(RuntimeError, match="404"):
            call(sid)
    assert sid not in {j.submission_id for j in bob.list_jobs()}
    # Naming a tenant one is not a member of finds nothing and submits nothing.
    with pytest.raises(RuntimeError, match=f"404: .*project '{cast.pa}' not found"):
        cast.client(cast.bob, tenant=cast.pa).submit_job(entrypoint="true")
    # Naming one's own tenant scopes reads to it.
    assert sid in {j.submission_id for j in cast.client(tenant=cast.pa).list_jobs()}


def test_x_tenant_id_scopes_a_member_of_two_projects(cast: Cast) -> None:
    both = cast.api.user(_unique("carol"), cast.pa, cast.pb)
    in_b = cast.client(both, tenant=cast.pb)
    sid = in_b.submit_job(entrypoint="true")
    assert cast.api.job(in_b.get_job_info(sid).job_id or "")["project"] == cast.pb
    with pytest.raises(RuntimeError, match="404"):
        cast.client(both, tenant=cast.pa).get_job_info(sid)
    assert {j.submission_id for j in cast.client(both, tenant=cast.pa).list_jobs()}.isdisjoint(
        {sid}
    )


# -- runtime_env: working_dir and pip ---------------------------------------------------------


def test_local_working_dir_is_uploaded_once_and_becomes_the_cwd(cast: Cast, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "script.py").write_text(
        "import os\nprint('ran', os.path.getsize('blob.bin'), os.path.basename(os.getcwd()))\n"
    )
    # incompressible and over the 1 MiB limit of other requests: uploads have Ray's 100 MiB
    (code / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    client = cast.client()
    first = client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": str(code)})
    second = client.submit_job(
        entrypoint="python script.py", runtime_env={"working_dir": str(code)}
    )
    for sid in (first, second):
        assert wait_terminal(client, sid) == JobStatus.SUCCEEDED
        assert client.get_job_logs(sid).endswith(f"ran {3 * 1024 * 1024} working_dir\n")
    uri = client.get_job_info(first).runtime_env["working_dir"]  # type: ignore[index]
    assert uri.startswith("gcs://_ray_pkg_") and uri.endswith(".zip")
    name = uri.removeprefix("gcs://")
    assert cast.raw("GET", f"/api/packages/gcs/{name}").status_code == 200
    # another tenant does not see this project's package
    assert cast.raw("GET", f"/api/packages/gcs/{name}", token=cast.bob).status_code == 404
    # ... and cannot run it
    with pytest.raises(RuntimeError, match="never uploaded to this project"):
        cast.client(cast.bob).submit_job(entrypoint="true", runtime_env={"working_dir": uri})


def test_file_uri_zip_with_a_top_level_directory(cast: Cast, tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("bundle/script.py", "print(open('data.txt').read().strip())\n")
        zf.writestr("bundle/data.txt", "from the archive\n")
    client = cast.client()
    sid = client.submit_job(
        entrypoint="python script.py", runtime_env={"working_dir": f"file://{archive}"}
    )
    assert wait_terminal(client, sid) == JobStatus.SUCCEEDED
    assert client.get_job_logs(sid).endswith("from the archive\n")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/packages/s3/_ray_pkg_1.zip", b"PK", 400),
        ("/api/packages/gcs/_ray_pkg_1.zip", b"not a zip", 400),
        ("/api/packages/gcs/..zip", b"PK", 400),
        ("/api/packages/gcs/module.whl", b"PK", 400),
    ],
)
def test_bad_package_uploads_are_refused(cast: Cast, path: str, body: bytes, status: int) -> None:
    r = cast.raw("PUT", path, content=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json(), str)


def _tiny_wheel(directory: Path, value: str) -> str:
    """A pure-Python wheel made by hand (no build backend, no network)."""
    name = f"pier_probe_{uuid.uuid4().hex[:6]}"
    dist = f"{name}-1.0.dist-info"
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "".join(f"{p},,\n" for p in [*files, f"{dist}/RECORD"]))
    return name


def test_pip_packages_install_into_a_cached_env_with_the_log(cast: Cast, tmp_path: Path) -> None:
    package = _tiny_wheel(tmp_path, "probe-ok")
    runtime_env = {
        "pip": [f"{package}==1.0"],
        "env_vars": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)},
    }
    client = cast.client()
    entrypoint = f"python -c 'import {package}; print({package}.VALUE)'"
    first = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    assert wait_terminal(client, first, timeout=120) == JobStatus.SUCCEEDED, client.get_job_logs(
        first
    )
    logs = client.get_job_logs(first)
    assert f"installing pip packages ['{package}==1.0']" in logs
    assert f"Successfully installed {package.replace('_', '-')}-1.0" in logs.replace("_", "-")
    assert logs.endswith("probe-ok\n")
    second = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    assert wait_terminal(client, second, timeout=60) == JobStatus.SUCCEEDED
    logs = client.get_job_logs(second)
    assert "(cached)" in logs and "Successfully installed" not in logs
    assert logs.endswith("probe-ok\n")
    info = client.get_job_info(second)
    assert info.runtime_env["pip"] == {"packages": [f"{package}==1.0"], "pip_check": False}  # type: ignore[index]


def test_failed_pip_install_fails_the_job_with_the_reason(cast: Cast, tmp_path: Path) -> None:
    client = cast.client()
    sid = client.submit_job(
        entrypoint="echo never",
        runtime_env={
            "pip": ["pier-no-such-package==9.9"],
            "env_vars": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)},
        },
    )
    assert wait_terminal(client, sid, timeout=120) == JobStatus.FAILED
    logs = client.get_job_logs(sid)
    assert "pip install pier-no-such-package==9.9 failed" in logs
    assert "never" not in logs.replace("echo never", "")


# -- the ray job CLI -----------------------------------------------------------------------


def _ray(cast: Cast, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_JOB_HEADERS"] = json.dumps({"Authorization": f"Bearer {token or cast.alice}"})
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return subprocess.run(
        [RAY, "job", *args[:1], "--address", cast.url, *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_ray_job_cli_end_to_end(cast: Cast) -> None:
    sid = _unique("cli")
    submit = _ray(
        cast,
        "submit",
        "--submission-id",
        sid,
        "--no-wait",
        "--entrypoint-num-cpus",
        "1",
        "--metadata-json",
        '{"k": "v"}',
        "--",
        "python",
        "-c",
        "print('hi from cli')",
    )
    assert submit.returncode == 0, submit.stderr
    assert f"Job '{sid}' submitted successfully" in submit.stdout + submit.stderr
    client = cast.client()
    assert wait_terminal(client, sid) == JobStatus.SUCCEEDED
    assert client.get_job_info(sid).entrypoint == "python -c 'print('\"'\"'hi from cli'\"'\"')'"
    status = _ray(cast, "status", sid)
    assert status.returncode == 0 and "succeeded" in status.stdout + status.stderr
    logs = _ray(cast, "logs", sid)
    assert logs.returncode == 0 and "hi from cli" in logs.stdout
    listed = _ray(cast, "list")
    assert listed.returncode == 0 and sid in listed.stdout
    deleted = _ray(cast, "delete", sid)
    assert deleted.returncode == 0, deleted.stderr
    assert _ray(cast, "status", sid).returncode == 1  # gone


def test_ray_job_cli_wait_follow_and_stop(cast: Cast) -> None:
    waited = _ray(cast, "submit", "--", "bash", "-c", "echo a; sleep 0.5; echo b; exit 2")
    assert waited.returncode == 1
    assert "a\nb\n" in waited.stdout
    assert "failed" in waited.stdout + waited.stderr

    client = cast.client()
    sid = client.submit_job(entrypoint="for i in 1 2 3; do echo tick$i; sleep 0.3; done")
    followed = _ray(cast, "logs", "-f", sid)
    assert followed.returncode == 0, followed.stderr
    assert "tick1\ntick2\ntick3\n" in followed.stdout

    sleeper = client.submit_job(entrypoint="sleep 60")
    wait_running(client, sleeper)
    stopped = _ray(cast, "stop", sleeper)
    assert stopped.returncode == 0, stopped.stderr
    assert client.get_job_status(sleeper) == JobStatus.STOPPED


def test_ray_job_cli_without_a_token_fails_and_ray_token_auth_works(cast: Cast) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    command = [RAY, "job", "list", "--address", cast.url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0
    assert "401" in out.stdout + out.stderr or "Authentication" in out.stdout + out.stderr
    # Ray's own token mechanism carries a pier token unchanged.
    sid = cast.client().submit_job(entrypoint="true")
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cast.alice)
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert sid in out.stdout
