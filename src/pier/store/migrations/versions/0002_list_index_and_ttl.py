"""Index for newest-first listing; ttl_after_finish as a column for cheap expiry.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ttl_after_finish", sa.Float(), nullable=True))
        batch_op.create_index("ix_jobs_created_id", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_jobs_ttl_after_finish", ["ttl_after_finish"], unique=False)
    # Backfill from the stored specs.
    conn = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("spec", sa.JSON),
        sa.column("ttl_after_finish", sa.Float),
    )
    for job_id, spec in conn.execute(sa.select(jobs.c.id, jobs.c.spec)).all():
        raw = json.loads(spec) if isinstance(spec, str) else spec
        ttl = ((raw or {}).get("lifecycle") or {}).get("ttl_after_finish")
        if ttl is not None:
            conn.execute(
                sa.update(jobs).where(jobs.c.id == job_id).values(ttl_after_finish=float(ttl))
            )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_ttl_after_finish")
        batch_op.drop_index("ix_jobs_created_id")
        batch_op.drop_column("ttl_after_finish")
