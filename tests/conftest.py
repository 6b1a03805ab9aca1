"""Shared fixtures: a real database (SQLite, and PostgreSQL when PIER_TEST_POSTGRES_URL is
set), and a fully wired server app on it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.containers import Podman, make_podman

from pier.executors import runrecord
from pier.store.db import Database
from pier.store.migrate import upgrade

POSTGRES_URL = os.environ.get("PIER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


def _pg_driver_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file in ``directory``, or a throwaway PostgreSQL
    schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'pier.db'}"
        return
    assert POSTGRES_URL is not None
    base = _pg_driver_url(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database.engine)
    yield database
    database.dispose()


SUPERVISOR_SCRIPT = Path(runrecord.__file__).with_name("supervisor.sh")


def kill_run_leftovers(runs_dir: Path) -> list[str]:
    """SIGKILL every job group and supervisor still alive under ``runs_dir`` (a test server's
    jobs outlive the server by design; a test must not leave them behind). Only processes
    whose pid and start ticks match the run records, or supervisors of these run dirs, are
    touched."""
    killed: list[str] = []
    runs = str(runs_dir.resolve())
    for _ in range(3):
        targets: list[tuple[str, int, int, bool]] = []
        for run_dir in sorted(p for p in runs_dir.glob("*/*/*") if p.is_dir()):
            started = runrecord.read_started(run_dir)
            if started is not None:
                targets.append((f"job {run_dir}", started.pgid, started.ticks, True))
            sup = runrecord.read_supervisor(run_dir)
            if sup is not None:
                targets.append((f"supervisor {run_dir}", sup.pid, sup.ticks, False))
        for run_dir_s, (pid, ticks) in runrecord.live_supervisors(SUPERVISOR_SCRIPT).items():
            if run_dir_s.startswith(runs + os.sep):
                targets.append((f"supervisor {run_dir_s}", pid, ticks, False))
        alive = [t for t in targets if runrecord.is_alive(t[1], t[2])]
        if not alive:
            break
        for what, pid, _ticks, group in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if group:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            killed.append(f"{what} ({pid})")
        time.sleep(0.1)
    return killed


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """A podman that runs the test image (``tests.containers``), its configuration in this
    process' environment for the session (test servers inherit it); skips where there is
    none. Containers left at the end are removed (from its private storage only)."""
    found = make_podman(tmp_path_factory.mktemp("podman"))
    if isinstance(found, str):
        pytest.skip(found)
    saved = {key: os.environ.get(key) for key in found.env}
    os.environ.update(found.env)
    try:
        yield found
    finally:
        found.run("rm", "--all", "--force", "--time", "0")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
