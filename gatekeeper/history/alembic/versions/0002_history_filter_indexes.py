"""indexes for history filters

The columns the history pages and duration estimates filter on.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_buildsets_project", "buildsets", "project"),
    ("ix_buildsets_pipeline", "buildsets", "pipeline"),
    ("ix_buildsets_change", "buildsets", "change"),
    ("ix_builds_buildset_id", "builds", "buildset_id"),
    ("ix_builds_job", "builds", "job"),
    ("ix_builds_result", "builds", "result"),
)


def upgrade() -> None:
    for name, table, column in INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
