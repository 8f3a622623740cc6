"""a failed build's diagnosis

Its failure class (change, infrastructure, unknown), summary, and the known bugs it matched (JSON).

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

COLUMNS = (("failure_class", sa.String(32)), ("summary", sa.Text()), ("signatures", sa.Text()))


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        for name, _ in COLUMNS:
            batch.drop_column(name)
