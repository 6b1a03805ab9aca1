"""Table definitions (SQLAlchemy Core). The Alembic tree in ``migrations/`` creates them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

__all__ = [
    "history",
    "jobs",
    "metadata",
    "name_counters",
    "project_members",
    "projects",
    "tokens",
    "users",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Times are unix epoch seconds as floats: one representation on SQLite and PostgreSQL,
# cheap to compare, and what the executors' run records hold.

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("email", String(256)),
    Column("default_project_id", String(36)),
    Column("created_at", Float, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(128)),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float),
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("description", Text),
    Column("department", String(63)),
    Column("gpu_quota", Float, nullable=False, default=0.0),
    Column("cpu_quota", Float),
    Column("memory_quota", BigInteger),
    Column("max_gpu", Float),
    Column("weight", Float),
    Column("node_pools", JSON, nullable=False, default=list),
    Column("created_at", Float, nullable=False),
)

project_members = Table(
    "project_members",
    metadata,
    Column(
        "project_id",
        String(36),
        ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False, default="member"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("project_id", String(36), ForeignKey("projects.id"), nullable=False),
    Column("owner_id", String(36), ForeignKey("users.id"), nullable=False),
    Column("name", String(63), nullable=False),
    Column("submission_id", String(128)),
    Column("kind", String(16), nullable=False),
    Column("preemptible", Boolean, nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("gpu", Float, nullable=False, default=0.0),
    Column("spec", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("message", Text),
    Column("exit_code", Integer),
    Column("attempt", Integer, nullable=False, default=0),
    Column("retries", Integer, nullable=False, default=0),
    # none_as_null: a requeued job must read back as SQL NULL, which claims test for.
    Column("allocation", JSON(none_as_null=True)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("not_before", Float),
    Column("stop_requested_at", Float),
    Column("deleted_at", Float),
    Column("ttl_after_finish", Float),
    # GPU-seconds of service of the attempts that ended (NULL = none yet).
    Column("attained_gpu_seconds", Float),
    # When the job last returned to Pending (retry, preemption); NULL = since created_at.
    Column("pending_since", Float),
    # The scheduler preempted the current attempt: stop sent, requeue once it has exited.
    Column("preempt_requested_at", Float),
    Column("preempt_message", Text),
    Index(
        "uq_jobs_project_name_live",
        "project_id",
        "name",
        unique=True,
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
    Index(
        "uq_jobs_submission_id",
        "submission_id",
        unique=True,
        sqlite_where=text("submission_id IS NOT NULL"),
        postgresql_where=text("submission_id IS NOT NULL"),
    ),
    Index("ix_jobs_status_created", "status", "created_at"),
    Index("ix_jobs_project_created", "project_id", "created_at"),
    Index("ix_jobs_created_id", "created_at", "id"),
    Index("ix_jobs_ttl_after_finish", "ttl_after_finish"),
)

history = Table(
    "job_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(64)),
    Column("message", Text),
    Column("exit_code", Integer),
    Column("attempt", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Index("ix_job_history_job", "job_id", "id"),
)

name_counters = Table(
    "name_counters",
    metadata,
    Column(
        "project_id",
        String(36),
        ForeignKey("projects.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("prefix", String(63), primary_key=True),
    Column("next_value", Integer, nullable=False),
)
