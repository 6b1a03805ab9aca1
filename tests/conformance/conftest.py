"""Shared fixtures for the seed conformance tests: one real pier server per module and
backend (real store, runtime and local executor on 127.0.0.1, driven over HTTP), and tenants
— a project with one member and that member's token — made on it.

A dialect's test module asks for ``server`` (admin access through ``server.headers()``) and
makes its own tenants with ``new_tenant``; ``tenant_a``/``tenant_b`` are two ready ones, each
a stranger to the other's project, for access-matrix tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.conftest import BACKENDS, fresh_database
from tests.integration.conftest import Api, make_settings, serving


@dataclass(frozen=True)
class Tenant:
    """A project, its one member and the member's bearer token."""

    project: str
    user: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_tenant(server: Api, label: str, **project: Any) -> Tenant:
    """A fresh project (``project`` fields go to ``POST /v1/projects``) with a fresh member."""
    name, user = unique(label), unique(f"{label}-user")
    server.project(name, **project)
    return Tenant(name, user, server.user(user, name))


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """A pier server for the whole module (one simulated node: 4 GPUs, 8 CPUs, 32 GiB). Tests
    share it, so each uses its own tenants and job names."""
    home = tmp_path_factory.mktemp("conformance")
    with (
        fresh_database(request.param, home) as url,
        serving(make_settings(home / "home", url)) as served,
    ):
        yield served


@pytest.fixture(scope="module")
def tenant_factory(server: Api) -> Callable[..., Tenant]:
    def make(label: str = "t", **project: Any) -> Tenant:
        return new_tenant(server, label, **project)

    return make


@pytest.fixture(scope="module")
def tenant_a(server: Api) -> Tenant:
    return new_tenant(server, "team-a", gpu_quota=2)


@pytest.fixture(scope="module")
def tenant_b(server: Api) -> Tenant:
    return new_tenant(server, "team-b", gpu_quota=2)
