"""Authentication and access control over real HTTP: tokens, admins, project isolation."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import fastapi.routing
import httpx
import pytest
from sqlalchemy import update
from tests.integration.conftest import ADMIN_PASSWORD, Api

from pier.store.tables import tokens

PUBLIC = {
    ("GET", "/v1/health"),
    ("POST", "/v1/tokens"),
    ("POST", "/api/v1/token"),  # OpenPAI: exchanges a username and password for a token
}
# FastAPI's description of the API itself: no job, user or project data. Nothing else: the
# Ray Jobs client sends its headers on the /api/version handshake too, so that stays behind
# the token as well.
API_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@dataclass(frozen=True)
class Cast:
    """Two projects with one member each (password hashing is slow: made once per module)."""

    pa: str
    pb: str
    alice_name: str
    alice: str
    bob_name: str
    bob: str


@pytest.fixture(scope="module")
def cast(shared_api: Api) -> Cast:
    pa, pb = _unique("pa"), _unique("pb")
    shared_api.project(pa)
    shared_api.project(pb)
    alice_name, bob_name = _unique("alice"), _unique("bob")
    return Cast(
        pa,
        pb,
        alice_name,
        shared_api.user(alice_name, pa),
        bob_name,
        shared_api.user(bob_name, pb),
    )


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _assert_401(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "unauthenticated"
    assert error["message"]
    assert error["details"] == []
    return error


def _app_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, with included routers flattened
    (FastAPI >= 0.13x keeps them as included-router entries in ``app.routes``)."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = list(flatten(api.server.app.routes)) if flatten else api.server.app.routes
    found = []
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is None:
            raise AssertionError(f"cannot see inside route {route!r}")
        found += [(method, path) for method in sorted(methods or ())]
    return found


def _protected_routes(api: Api) -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path in _app_routes(api)
        if path not in API_DOCS and method != "HEAD" and (method, path) not in PUBLIC
    ]


def test_every_route_but_health_login_and_docs_requires_a_token(shared_api: Api) -> None:
    routes = _protected_routes(shared_api)
    # the routes this test knows to exist: a new one is checked automatically
    assert ("POST", "/v1/jobs") in routes
    assert ("GET", "/v1/jobs/{ref}/logs") in routes
    assert ("DELETE", "/v1/tokens/{token_id}") in routes
    # dialect routes are walked too
    assert ("POST", "/api/job") in routes
    assert ("GET", "/api/version") in routes
    assert ("PUT", "/api/packages/{protocol}/{package_name}") in routes
    assert ("POST", "/api/v1/jobs") in routes
    assert ("POST", "/v1/manifests") in routes
    assert len(routes) >= 18
    job = shared_api.submit(["true"], name=_unique("guarded"))
    for method, path in routes:
        url = re.sub(r"\{[^}]+\}", lambda m: job["id"] if m.group(0) == "{ref}" else "x", path)
        for headers in ({}, {"Authorization": "Bearer nope"}):
            r = shared_api.client.request(method, url, json={}, headers=headers)
            if path.startswith("/v1"):
                _assert_401(r)
            else:  # a dialect's route: 401 in that dialect's error shape
                assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer"), r.text
    assert shared_api.client.get("/v1/health").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic YWRtaW46YWRtaW4=",
        "Token pier_abc",
        "pier_abc",
        "Bearer pier_" + "x" * 43,
        "Bearer not-a-pier-token",
        "Bearer pier_" + "x" * 300,
    ],
)
def test_missing_malformed_and_unknown_tokens(shared_api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    _assert_401(shared_api.client.get("/v1/jobs", headers=headers))


def test_the_same_token_works_with_any_scheme_case(shared_api: Api) -> None:
    r = shared_api.client.get(
        "/v1/users/me", headers={"Authorization": f"bearer {shared_api.admin_token}"}
    )
    assert r.status_code == 200 and r.json()["name"] == "admin"


def test_expired_token_is_rejected(shared_api: Api) -> None:
    r = shared_api.client.post(
        "/v1/tokens", json={"username": "admin", "password": ADMIN_PASSWORD, "expires_in": 60}
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["expires_at"] == pytest.approx(issued["created_at"] + 60)
    token = issued["token"]
    assert shared_api.client.get("/v1/users/me", headers=shared_api.headers(token)).is_success
    with shared_api.server.db.write() as conn:
        conn.execute(
            update(tokens).where(tokens.c.id == issued["id"]).values(expires_at=time.time() - 1)
        )
    # A store edit behind the API's back is seen once the principal cache entry lapses
    # (at most 5 s); expiry by the clock is checked on every cached hit.
    shared_api.server.ctx.principals.clear()
    error = _assert_401(shared_api.client.get("/v1/users/me", headers=shared_api.headers(token)))
    assert error["message"] == "invalid or expired token"


@pytest.mark.parametrize("expires_in", [0, 59, -1, 400 * 86400, "soon"])
def test_token_lifetime_is_bounded(shared_api: Api, expires_in: object) -> None:
    r = shared_api.client.post(
        "/v1/tokens",
        json={"username": "admin", "password": ADMIN_PASSWORD, "expires_in": expires_in},
    )
    assert r.status_code == 422, r.text


def test_revoked_token_is_rejected(shared_api: Api) -> None:
    token = shared_api.login("admin", ADMIN_PASSWORD)
    mine = shared_api.client.get("/v1/tokens", headers=shared_api.headers(token)).json()
    assert all(t["token"] is None for t in mine), "a token's secret is shown only once"
    r = shared_api.client.delete("/v1/tokens/current", headers=shared_api.headers(token))
    assert r.status_code == 204
    error = _assert_401(shared_api.client.get("/v1/jobs", headers=shared_api.headers(token)))
    assert error["message"] == "invalid or expired token"
    # the admin's other token is untouched
    assert shared_api.client.get("/v1/jobs", headers=shared_api.headers()).is_success


def test_revoke_by_id(shared_api: Api) -> None:
    token = shared_api.login("admin", ADMIN_PASSWORD)
    created = [
        t
        for t in shared_api.client.get("/v1/tokens", headers=shared_api.headers(token)).json()
        if t["revoked_at"] is None
    ]
    newest = max(created, key=lambda t: t["created_at"])
    r = shared_api.client.delete(f"/v1/tokens/{newest['id']}", headers=shared_api.headers(token))
    assert r.status_code == 204
    _assert_401(shared_api.client.get("/v1/jobs", headers=shared_api.headers(token)))
    again = shared_api.client.delete(f"/v1/tokens/{newest['id']}", headers=shared_api.headers())
    assert again.status_code == 404


def test_users_cannot_revoke_each_others_tokens(shared_api: Api, cast: Cast) -> None:
    alice_tokens = shared_api.client.get("/v1/tokens", headers=shared_api.headers(cast.alice))
    assert {t["user"] for t in alice_tokens.json()} == {cast.alice_name}
    for token in alice_tokens.json():
        r = shared_api.client.delete(
            f"/v1/tokens/{token['id']}", headers=shared_api.headers(cast.bob)
        )
        assert r.status_code == 404
    assert shared_api.client.get("/v1/jobs", headers=shared_api.headers(cast.alice)).is_success


def test_wrong_password_and_unknown_user_answer_alike(shared_api: Api, cast: Cast) -> None:
    wrong = shared_api.client.post(
        "/v1/tokens", json={"username": cast.alice_name, "password": "nope"}
    )
    unknown = shared_api.client.post(
        "/v1/tokens", json={"username": _unique("ghost"), "password": "nope"}
    )
    for r in (wrong, unknown):
        error = _assert_401(r)
        assert error["message"] == "wrong username or password"
    assert wrong.json() == unknown.json()


def test_non_admins_cannot_administer(shared_api: Api, cast: Cast) -> None:
    h = shared_api.headers(cast.alice)
    attempts = [
        ("POST", "/v1/users", {"name": _unique("eve"), "password": "long-enough-pw"}),
        ("GET", "/v1/users", None),
        ("POST", "/v1/projects", {"name": _unique("mine")}),
        ("PATCH", f"/v1/projects/{cast.pa}", {"gpu_quota": 100}),
        ("POST", f"/v1/projects/{cast.pa}/members", {"user": "admin"}),
        ("DELETE", f"/v1/projects/{cast.pa}/members/{cast.alice_name}", None),
    ]
    for method, path, body in attempts:
        r = shared_api.client.request(method, path, json=body, headers=h)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "forbidden"
        assert r.json()["error"]["message"].startswith("only an admin can")
    project = shared_api.client.get(f"/v1/projects/{cast.pa}", headers=h).json()
    assert project["gpu_quota"] == 0
    assert project["members"] == [cast.alice_name]
    assert shared_api.client.get("/v1/users/me", headers=h).json()["is_admin"] is False


def test_a_created_admin_can_administer(shared_api: Api) -> None:
    token = shared_api.user(_unique("root"), admin=True)
    r = shared_api.client.post(
        "/v1/projects", json={"name": _unique("byadmin")}, headers=shared_api.headers(token)
    )
    assert r.status_code == 201


def _normalised(r: httpx.Response, ref: str) -> Any:
    return r.status_code, r.text.replace(ref, "<ref>")


def test_projects_are_isolated(shared_api: Api, cast: Cast) -> None:
    pa, pb, alice, bob = cast.pa, cast.pb, cast.alice, cast.bob
    secret = shared_api.submit(["sh", "-c", "echo secret"], token=bob, name="secret")
    assert secret["project"] == pb
    mine = shared_api.submit(["true"], token=alice, name="mine")
    shared_api.wait(secret["id"])
    shared_api.wait(mine["id"])
    ha = shared_api.headers(alice)
    missing_id = str(uuid.uuid4())
    c = shared_api.client

    def calls(ref: str, params: dict[str, str]) -> list[httpx.Response]:
        return [
            c.get(f"/v1/jobs/{ref}", params=params, headers=ha),
            c.get(f"/v1/jobs/{ref}/history", params=params, headers=ha),
            c.get(f"/v1/jobs/{ref}/logs", params=params, headers=ha),
            c.post(f"/v1/jobs/{ref}/stop", params=params, headers=ha),
            c.delete(f"/v1/jobs/{ref}", params=params, headers=ha),
        ]

    cases = [
        (secret["id"], missing_id, {}),
        ("secret", "missing", {}),
        ("secret", "missing", {"project": pb}),
        ("secret", "missing", {"project": pa}),
    ]
    for ref, missing, params in cases:
        for hidden, absent in zip(calls(ref, params), calls(missing, params), strict=True):
            assert hidden.status_code == 404, hidden.text
            assert _normalised(hidden, ref) == _normalised(absent, missing)
            assert hidden.json()["error"]["code"] == "not_found"
            assert hidden.json()["error"]["message"] == f"job '{ref}' not found"

    listed = c.get("/v1/jobs", headers=ha).json()["items"]
    assert "secret" not in [j["name"] for j in listed]
    assert "mine" in [j["name"] for j in listed]
    assert {j["project"] for j in listed} == {pa}
    assert c.get("/v1/jobs", params={"owner": "admin"}, headers=ha).json()["items"] == []
    other = c.get("/v1/jobs", params={"project": pb}, headers=ha)
    nowhere = c.get("/v1/jobs", params={"project": "no-such-project"}, headers=ha)
    assert other.status_code == nowhere.status_code == 404
    assert other.json()["error"]["message"] == f"project '{pb}' not found"
    assert c.get(f"/v1/projects/{pb}", headers=ha).status_code == 404
    assert [p["name"] for p in c.get("/v1/projects", headers=ha).json()] == [pa]
    submit_there = c.post(
        "/v1/jobs", json={"project": pb, "tasks": [{"command": ["true"]}]}, headers=ha
    )
    assert submit_there.status_code == 404
    assert submit_there.json()["error"]["message"] == f"project '{pb}' not found"

    # the job was untouched by all of that
    seen_by_bob = shared_api.job(secret["id"], token=bob)
    assert seen_by_bob["status"] == "Succeeded"
    assert not seen_by_bob["stop_requested"]
    logs = c.get(f"/v1/jobs/{secret['id']}/logs", headers=shared_api.headers(bob))
    assert logs.text == "secret\n"

    # an admin sees both projects
    everything = c.get("/v1/jobs", headers=shared_api.headers()).json()["items"]
    assert {"secret", "mine"} <= {j["name"] for j in everything}
    assert shared_api.job("secret", project=pb)["owner"] == seen_by_bob["owner"]


def test_a_member_added_later_gains_access_and_loses_it_on_removal(
    shared_api: Api, cast: Cast
) -> None:
    project = _unique("late")
    shared_api.project(project)
    job = shared_api.submit(["true"], project=project, name="shared")
    h = shared_api.headers(cast.bob)
    assert shared_api.client.get(f"/v1/jobs/{job['id']}", headers=h).status_code == 404
    r = shared_api.client.post(
        f"/v1/projects/{project}/members",
        json={"user": cast.bob_name},
        headers=shared_api.headers(),
    )
    assert r.status_code == 200 and cast.bob_name in r.json()["members"]
    assert shared_api.client.get(f"/v1/jobs/{job['id']}", headers=h).status_code == 200
    assert shared_api.client.get("/v1/users/me", headers=h).json()["default_project"] == cast.pb
    r = shared_api.client.delete(
        f"/v1/projects/{project}/members/{cast.bob_name}", headers=shared_api.headers()
    )
    assert r.status_code == 200 and cast.bob_name not in r.json()["members"]
    assert shared_api.client.get(f"/v1/jobs/{job['id']}", headers=h).status_code == 404
    shared_api.wait(job["id"])
