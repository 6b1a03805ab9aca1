"""Preemption and attained service: what the quota scheduler's runtime records per job.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attained_gpu_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("pending_since", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("preempt_requested_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("preempt_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("preempt_message")
        batch_op.drop_column("preempt_requested_at")
        batch_op.drop_column("pending_since")
        batch_op.drop_column("attained_gpu_seconds")
