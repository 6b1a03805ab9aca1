"""The Alembic tree: up, down and up again on every backend, and it builds exactly the schema
that ``pier.store.tables`` declares."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from pier.store.db import Database
from pier.store.migrate import downgrade, upgrade
from pier.store.tables import metadata

TABLES = {
    "users",
    "tokens",
    "projects",
    "project_members",
    "jobs",
    "job_history",
    "name_counters",
}


def _diffs(database: Database) -> list[Any]:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    database = Database(database_url)
    try:
        upgrade(database.engine)
        assert _tables(database) == TABLES
        upgrade(database.engine)  # already at head: nothing to do
        downgrade(database.engine)
        assert _tables(database) == set()
        upgrade(database.engine)
        assert _tables(database) == TABLES
        assert _diffs(database) == []
    finally:
        database.dispose()


def test_schema_matches_table_definitions(db: Database) -> None:
    assert _diffs(db) == []


def test_partial_unique_indexes_exist(db: Database) -> None:
    indexes = {i["name"]: i for i in inspect(db.engine).get_indexes("jobs")}
    assert indexes["uq_jobs_project_name_live"]["unique"]
    assert indexes["uq_jobs_submission_id"]["unique"]
    assert indexes["uq_jobs_project_name_live"]["column_names"] == ["project_id", "name"]
