"""a buildset's old and new revision

A ref item's buildset (a post pipeline's: a branch updated) records the ref's revision before and after.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("oldrev", "newrev")


def upgrade() -> None:
    with op.batch_alter_table("buildsets") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("buildsets") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
