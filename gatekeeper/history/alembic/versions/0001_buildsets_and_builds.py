"""buildsets and builds

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "buildsets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(64), nullable=False, unique=True),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("change", sa.Integer, nullable=True),
        sa.Column("patchset", sa.Integer, nullable=True),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
        sa.Column("result", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("enqueue_time", sa.Float, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=False),
    )
    op.create_table(
        "builds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(64), nullable=False, unique=True),
        sa.Column("buildset_id", sa.Integer, sa.ForeignKey("buildsets.id"), nullable=False),
        sa.Column("job", sa.String(255), nullable=False),
        sa.Column("result", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("start_time", sa.Float, nullable=False),
        sa.Column("end_time", sa.Float, nullable=False),
        sa.Column("log_url", sa.Text, nullable=False),
        sa.Column("node_name", sa.String(255), nullable=False),
        sa.Column("node_label", sa.String(255), nullable=False),
        sa.Column("node_provider", sa.String(255), nullable=False),
        sa.Column("executor", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("final", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("builds")
    op.drop_table("buildsets")
