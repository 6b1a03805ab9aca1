"""Telemetry, ``/metrics``, ``pier top`` and the HTTP proxy against a real server running
real jobs (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.conftest import Api, serving
from typer.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from pier.cli.main import app
from pier.config import Settings

PY = sys.executable
# Fills 64 MiB (resident: every byte written) and keeps one core busy.
BURN = "import time\nx = b'\\x01' * (64 * 2**20)\nwhile True: pass\n"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _running(api: Api, job: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    return api.wait(job["id"], lambda j: j["status"] == "Running", token=token)


def _telemetry(api: Api, ref: str, token: str | None = None, **params: Any) -> list[Any]:
    samples = []
    with api.client.stream(
        "GET", f"/v1/jobs/{ref}/telemetry", params=params, headers=api.headers(token)
    ) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("application/x-ndjson")
        for line in r.iter_lines():
            if line:
                samples.append(json.loads(line))
            if len(samples) >= params.get("count", 3):
                break
    return samples


# ---- telemetry ------------------------------------------------------------------------------


def test_telemetry_measures_the_job_process_tree(shared_api: Api) -> None:
    project = _unique("tel")
    shared_api.project(project, gpu_quota=4)
    # the burner is a grandchild of the job's shell: the tree is measured, not just the leader
    job = shared_api.submit(
        ["bash", "-c", f'{PY} -c "$BURN"; true'],
        project=project,
        task={"env": {"BURN": BURN}, "resources": {"gpu": 1}},
    )
    _running(shared_api, job)
    samples = _telemetry(shared_api, job["id"], interval=0.5, count=3)
    assert len(samples) == 3
    last = samples[-1]
    assert set(last) >= {"timestamp", "cpu", "memory", "gpu_duty_cycle", "gpu_memory"}
    assert abs(last["timestamp"] - time.time()) < 30
    assert last["cpu"] > 0.05, samples  # a busy core: clearly more than nothing, even when crowded
    assert last["memory"] >= 64, samples  # MB resident
    assert last["processes"] >= 2
    # this machine's GPUs are simulated: NVML knows no such device
    assert last["gpu_duty_cycle"] is None and last["gpu_memory"] is None
    stamps = [s["timestamp"] for s in samples]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 0.8

    # without follow: one sample, then the stream ends
    with shared_api.client.stream(
        "GET",
        f"/v1/jobs/{job['id']}/telemetry",
        params={"follow": "false"},
        headers=shared_api.headers(),
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert len(lines) == 1 and json.loads(lines[0])["memory"] >= 64

    shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())
    shared_api.wait(job["id"])
    # an ended job: the stream ends at once, empty
    r = shared_api.client.get(f"/v1/jobs/{job['id']}/telemetry", headers=shared_api.headers())
    assert r.status_code == 200 and r.text == ""


def test_telemetry_is_access_checked_and_validated(shared_api: Api) -> None:
    pa, pb = _unique("ta"), _unique("tb")
    shared_api.project(pa)
    shared_api.project(pb)
    outsider = shared_api.user(_unique("eve"), pb)
    job = shared_api.submit(["sleep", "30"], project=pa)
    assert shared_api.client.get(f"/v1/jobs/{job['id']}/telemetry").status_code == 401
    r = shared_api.client.get(
        f"/v1/jobs/{job['id']}/telemetry", headers=shared_api.headers(outsider)
    )
    assert r.status_code == 404
    r = shared_api.client.get(
        f"/v1/jobs/{job['id']}/telemetry",
        params={"interval": "0.01"},
        headers=shared_api.headers(),
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == ["query", "interval"]
    shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


def test_pier_top_shows_a_running_job(
    shared_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIER_HOME", str(tmp_path / "cli"))
    monkeypatch.setenv("COLUMNS", "200")
    project = _unique("top")
    shared_api.project(project)
    job = shared_api.submit([PY, "-c", BURN], project=project)
    _running(shared_api, job)
    env = {"PIER_URL": str(shared_api.client.base_url), "PIER_TOKEN": shared_api.admin_token}
    runner = CliRunner()
    result = runner.invoke(
        app, ["top", job["name"], "-p", project, "-c", "2", "-n", "0.3"], env=env
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == [
        "TIME",
        "CPU",
        "MEMORY",
        "(MB)",
        "GPU",
        "DUTY",
        "GPU",
        "MEMORY",
        "PROCESSES",
    ]
    assert len(lines) == 3
    row = lines[-1].split()
    assert float(row[1]) > 0.05 and float(row[2]) >= 64 and row[3] == "-" and row[4] == "-"

    result = runner.invoke(app, ["top", job["id"], "-c", "1", "-o", "json"], env=env)
    assert result.exit_code == 0, result.output
    sample = json.loads(result.stdout)
    assert sample["memory"] >= 64 and sample["gpu_duty_cycle"] is None

    missing = runner.invoke(app, ["top", "no-such-job", "-p", project], env=env)
    assert missing.exit_code == 1 and "not found" in missing.stderr
    shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


# ---- /metrics -------------------------------------------------------------------------------


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_export_jobs_queue_and_gpu_usage(shared_api: Api) -> None:
    pa, pb = _unique("ma"), _unique("mb")
    shared_api.project(pa, gpu_quota=2, max_gpu=3)
    shared_api.project(pb, gpu_quota=1)
    member = shared_api.user(_unique("mia"), pa)
    for _ in range(2):
        shared_api.submit(["true"], project=pa)
    failed = shared_api.submit(["false"], project=pa, lifecycle={"backoff_limit": 0})
    running = shared_api.submit(["sleep", "30"], project=pa, task={"resources": {"gpu": 2}})
    # more GPUs than the cluster has left: waits in the queue
    waiting = shared_api.submit(["sleep", "30"], project=pb, task={"resources": {"gpu": 4}})
    shared_api.wait(failed["id"])
    _running(shared_api, running)

    assert shared_api.client.get("/metrics").status_code == 401
    assert (
        shared_api.client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    )

    deadline = time.monotonic() + 15
    while True:
        r = shared_api.client.get("/metrics", headers=shared_api.headers())
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        got = _samples(r.text)
        done = got.get(("pier_jobs", (("project", pa), ("status", "Succeeded")))) == 2
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got[("pier_jobs", (("project", pa), ("status", "Succeeded")))] == 2
    assert got[("pier_jobs", (("project", pa), ("status", "Failed")))] == 1
    assert got[("pier_jobs", (("project", pa), ("status", "Running")))] == 1
    assert got[("pier_jobs", (("project", pb), ("status", "Pending")))] == 1
    assert got[("pier_project_pending_jobs", (("project", pb),))] == 1
    assert got[("pier_queue_pending_jobs", ())] >= 1
    assert got[("pier_project_gpus_allocated", (("project", pa),))] == 2
    assert got[("pier_project_gpus_allocated", (("project", pb),))] == 0
    assert got[("pier_project_gpu_quota", (("project", pa),))] == 2
    assert got[("pier_project_gpu_limit", (("project", pa),))] == 3
    assert ("pier_project_gpu_limit", (("project", pb),)) not in got
    assert any(name == "pier_node_gpus" and value == 4 for (name, _), value in got.items())

    # a member sees their own project only
    mine = _samples(shared_api.client.get("/metrics", headers=shared_api.headers(member)).text)
    projects = {dict(labels).get("project") for (_, labels) in mine} - {None}
    assert projects == {pa}
    for job in (running, waiting):
        shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


# ---- the HTTP proxy -------------------------------------------------------------------------


def _http_job(api: Api, project: str, requires_auth: bool, token: str | None = None) -> Any:
    port = _free_port()
    script = (
        'echo "hello from $PIER_JOB_NAME port $PIER_HTTP_PORT base $PIER_HTTP_BASE_PATH"'
        f" > index.html && exec {PY} -m http.server {port} --bind 127.0.0.1"
    )
    job = api.submit(
        ["bash", "-c", script],
        token,
        project=project,
        task={
            "ports": [{"container_port": port, "expose": "http", "requires_auth": requires_auth}]
        },
    )
    _running(api, job)
    return job, port


def _wait_served(client: httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:
        r = client.get(url, **kwargs)
        if r.status_code != 502 or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_proxy_reaches_a_protected_http_server(shared_api: Api) -> None:
    pa, pb = _unique("pa"), _unique("pb")
    shared_api.project(pa)
    shared_api.project(pb)
    alice = shared_api.user(_unique("alice"), pa)
    bob = shared_api.user(_unique("bob"), pb)
    job, port = _http_job(shared_api, pa, requires_auth=True, token=alice)
    base = f"/v1/jobs/{job['id']}/http/"
    c = shared_api.client

    r = _wait_served(c, base, headers=shared_api.headers(alice))
    assert r.status_code == 200, r.text
    assert r.text.strip() == f"hello from {job['name']} port {port} base {base}"
    # missing and foreign credentials: 401 and 404 (as for any job route)
    assert c.get(base).status_code == 401
    assert c.get(base, headers={"Authorization": "Bearer pier_nope"}).status_code == 401
    assert c.get(base, headers=shared_api.headers(bob)).status_code == 404
    # the prefix is stripped: the server sees /index.html; HEAD and 404s pass through
    assert c.get(base + "index.html", headers=shared_api.headers(alice)).status_code == 200
    assert c.head(base + "index.html", headers=shared_api.headers(alice)).status_code == 200
    assert c.get(base + "missing", headers=shared_api.headers(alice)).status_code == 404
    # the bare prefix redirects to the slash form
    r = c.get(base.rstrip("/"), headers=shared_api.headers(alice))
    assert r.status_code == 307 and r.headers["location"] == base

    # a browser: ?pier_token= sets a path-scoped cookie and drops the parameter
    with httpx.Client(base_url=str(c.base_url)) as browser:
        r = browser.get(base, params={"pier_token": alice, "x": "1"})
        assert r.status_code == 303
        assert r.headers["location"] == base + "?x=1"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and f"Path={base}" in cookie and "SameSite=lax" in cookie
        r = browser.get(base)
        assert r.status_code == 200 and "hello from" in r.text
    shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


def test_proxy_serves_a_public_port_to_anyone(shared_api: Api) -> None:
    project = _unique("pub")
    shared_api.project(project)
    job, _ = _http_job(shared_api, project, requires_auth=False)
    base = f"/v1/jobs/{job['id']}/http/"
    r = _wait_served(shared_api.client, base)
    assert r.status_code == 200 and "hello from" in r.text
    shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())
    shared_api.wait(job["id"])
    r = shared_api.client.get(base)
    assert r.status_code == 409 and "not Running" in r.json()["error"]["message"]


def test_proxy_without_a_port_or_server(shared_api: Api) -> None:
    project = _unique("nop")
    shared_api.project(project)
    plain = shared_api.submit(["sleep", "30"], project=project)
    r = shared_api.client.get(f"/v1/jobs/{plain['id']}/http/", headers=shared_api.headers())
    assert r.status_code == 404 and "exposes no HTTP port" in r.json()["error"]["message"]
    assert shared_api.client.get(f"/v1/jobs/{plain['id']}/http/").status_code == 401
    silent = shared_api.submit(
        ["sleep", "30"],
        project=project,
        task={"ports": [{"container_port": _free_port(), "expose": "http"}]},
    )
    _running(shared_api, silent)
    r = shared_api.client.get(f"/v1/jobs/{silent['id']}/http/", headers=shared_api.headers())
    assert r.status_code == 502 and r.json()["error"]["code"] == "bad_gateway"
    for job in (plain, silent):
        shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


ECHO_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message if isinstance(message, bytes) else f"{ws.request.path} {message}")

    async def main():
        async with serve(echo, "127.0.0.1", int(sys.argv[1])):
            await asyncio.Future()

    asyncio.run(main())
    """
)


def test_proxy_relays_websockets(shared_api: Api, tmp_path: Path) -> None:
    project = _unique("ws")
    shared_api.project(project)
    member = shared_api.user(_unique("wes"), project)
    script = tmp_path / "echo.py"
    script.write_text(ECHO_SERVER)
    port = _free_port()
    job = shared_api.submit(
        [PY, str(script), str(port)],
        project=project,
        task={"ports": [{"container_port": port, "expose": "http"}]},
    )
    _running(shared_api, job)
    ws_base = str(shared_api.client.base_url).replace("http://", "ws://")
    url = f"{ws_base}/v1/jobs/{job['id']}/http/echo?room=1"
    deadline = time.monotonic() + 15
    while True:
        try:
            ws = ws_connect(url, additional_headers=shared_api.headers(member), open_timeout=5)
            break
        except InvalidStatus as exc:
            assert exc.response.status_code == 502, exc
            assert time.monotonic() < deadline
            time.sleep(0.1)
    with ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "/echo?room=1 hi"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == b"\x00\x01"
    # the token as a query parameter works for websockets too, and is not passed on
    with ws_connect(f"{url}&pier_token={member}", open_timeout=5) as ws:
        ws.send("again")
        assert ws.recv(timeout=5) == "/echo?room=1 again"
    with pytest.raises(InvalidStatus) as denied:
        ws_connect(url, open_timeout=5)
    assert denied.value.response.status_code == 401
    # the browser cookie: same origin only (cross-site websocket hijacking)
    host = ws_base.removeprefix("ws://")
    cookie = {"Cookie": f"pier_proxy_token={member}"}
    with ws_connect(url, additional_headers=cookie, origin=f"http://{host}") as ws:
        ws.send("cookie")
        assert ws.recv(timeout=5) == "/echo?room=1 cookie"
    with pytest.raises(InvalidStatus) as denied:
        ws_connect(url, additional_headers=cookie, origin="http://evil.example")
    assert denied.value.response.status_code == 401
    shared_api.client.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


ECHO_HTTP = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def reply(self):
            size = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(size) if size else b""
            out = json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_len": len(body),
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.send_header("set-cookie", "app=1; Path=/")
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = reply

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
    """
)


def _echo_job(
    api: Api, tmp_path: Path, project: str, *, keep_prefix: bool, requires_auth: bool = True
) -> dict[str, Any]:
    script = tmp_path / f"echo-{uuid.uuid4().hex[:6]}.py"
    script.write_text(ECHO_HTTP)
    port = _free_port()
    env = {"PIER_HTTP_KEEP_PREFIX": "1"} if keep_prefix else {}
    job = api.submit(
        [PY, str(script), str(port)],
        project=project,
        task={
            "env": env,
            "ports": [{"container_port": port, "expose": "http", "requires_auth": requires_auth}],
        },
    )
    _running(api, job)
    return job


def test_proxy_forwards_what_the_app_needs_and_keeps_pier_credentials(
    shared_api: Api, tmp_path: Path
) -> None:
    project = _unique("echo")
    shared_api.project(project)
    member = shared_api.user(_unique("eli"), project)
    c = shared_api.client
    stripped = _echo_job(shared_api, tmp_path, project, keep_prefix=False)
    kept = _echo_job(shared_api, tmp_path, project, keep_prefix=True)
    public = _echo_job(shared_api, tmp_path, project, keep_prefix=False, requires_auth=False)
    headers = {
        **shared_api.headers(member),
        "Cookie": f"pier_proxy_token={member}; theme=dark",
        "X-App": "yes",
    }

    base = f"/v1/jobs/{stripped['id']}/http/"
    r = _wait_served(c, base + "a/b?x=1&x=2", headers=headers)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["method"] == "GET" and seen["path"] == "/a/b?x=1&x=2"
    assert "authorization" not in seen["headers"]  # pier's token stays with pier
    assert seen["headers"]["cookie"] == "theme=dark"
    assert seen["headers"]["x-app"] == "yes"
    assert seen["headers"]["host"] == c.base_url.netloc.decode()
    assert seen["headers"]["x-forwarded-prefix"] == base.rstrip("/")
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert r.headers["set-cookie"] == "app=1; Path=/"

    # the path as sent (an encoded slash stays encoded), the query minus pier's token
    r = c.get(base + "enc/a%2Fb%20c?q=a+b&pier_token=zzz&y=%26", headers=shared_api.headers(member))
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    assert r.json()["path"] == "/enc/a%2Fb%20c?q=a+b&y=%26"
    r = c.post(f"{base}p?pier_token={member}&keep=1", content=b"{}")
    assert r.status_code == 200 and r.json()["path"] == "/p?keep=1"

    body = b"\x07" * 300_000
    r = c.post(base + "upload", content=body, headers=shared_api.headers(member))
    assert r.status_code == 200 and r.json()["body_len"] == len(body)
    assert r.json()["method"] == "POST"
    r = c.delete(base + "x", headers=shared_api.headers(member))
    assert r.json()["method"] == "DELETE"

    kept_base = f"/v1/jobs/{kept['id']}/http/"
    r = _wait_served(c, kept_base + "lab/tree?token=t", headers=shared_api.headers(member))
    assert r.json()["path"] == f"{kept_base}lab/tree?token=t"

    # a public port's Authorization header belongs to the app: passed on
    public_base = f"/v1/jobs/{public['id']}/http/"
    r = _wait_served(c, public_base, headers={"Authorization": "Bearer app-secret"})
    assert r.json()["headers"]["authorization"] == "Bearer app-secret"
    for job in (stripped, kept, public):
        c.post(f"/v1/jobs/{job['id']}/stop", headers=shared_api.headers())


def test_metrics_can_be_made_public(settings: Settings) -> None:
    with serving(settings.model_copy(update={"metrics_public": True})) as api:
        r = api.client.get("/metrics")
        assert r.status_code == 200
        got = _samples(r.text)
        assert got[("pier_jobs", (("project", "default"), ("status", "Pending")))] == 0
        assert got[("pier_queue_pending_jobs", ())] == 0


def test_openapi_lists_telemetry_and_metrics(shared_api: Api) -> None:
    r = shared_api.client.get("/openapi.json")  # built with warnings as errors: no duplicates
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "get" in paths["/v1/jobs/{ref}/telemetry"] and "get" in paths["/metrics"]
    assert not [p for p in paths if "/http" in p]  # the job's app, not pier's API
