"""Engine and transactions. The only module that creates connections.

SQLite runs in WAL mode so readers never block the writer. Writes are serialised by a lock
(a thread lock, then an ``flock`` on ``<database>-writelock`` shared by every process of
the server, see ``pier.workers``) and open with ``BEGIN IMMEDIATE``, so a write transaction
never fails half-way on a lock upgrade and never sleeps in SQLite's busy handler (1, 2, 5 ...
ms steps) under load: a waiting writer wakes the moment the lock is free. PostgreSQL
uses the pool as usual; cross-replica races are prevented by guarded ``UPDATE ... WHERE``
statements in the callers, not by this lock.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["Database"]


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if parsed.drivername == "postgresql":
            url = str(parsed.set(drivername="postgresql+psycopg"))
        self._process_lock_path: Path | None = None
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self._process_lock_path = Path(f"{parsed.database}-writelock")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 20
            kwargs["max_overflow"] = 40
        else:
            kwargs["pool_size"] = 20
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        self._write_lock = threading.Lock()
        self._process_lock_fd: int | None = None
        if self.is_sqlite:
            self._install_sqlite_hooks()

    def _install_sqlite_hooks(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a crash of any process; only a power
            # loss can roll back the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.info.get("pier_begin", "BEGIN")
            conn.exec_driver_sql(mode)

    def _process_lock(self) -> int | None:
        if self._process_lock_path is None:
            return None
        if self._process_lock_fd is None:  # under the thread lock: opened once
            self._process_lock_fd = os.open(
                self._process_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        return self._process_lock_fd

    @contextmanager
    def _serialised(self) -> Iterator[None]:
        with self._write_lock:
            fd = self._process_lock()
            if fd is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        if self.is_sqlite:
            with self._serialised(), self.engine.connect() as conn:
                conn.info["pier_begin"] = "BEGIN IMMEDIATE"
                try:
                    with conn.begin():
                        yield conn
                finally:
                    conn.info.pop("pier_begin", None)
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
        with self._write_lock:
            if self._process_lock_fd is not None:
                os.close(self._process_lock_fd)
                self._process_lock_fd = None
