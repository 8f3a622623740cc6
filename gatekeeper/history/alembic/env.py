"""Alembic's environment for the history database.

gatekeeper.history.migrations runs it with an open connection in `config.attributes["connection"]` (each revision
in a transaction of its own).  Run by the `alembic` command instead (to write a new revision), it connects to
`sqlalchemy.url` from the Alembic config or to $GATEKEEPER_HISTORY_URL.
"""

from __future__ import annotations

import os

from alembic import context

from gatekeeper.history.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    from gatekeeper.history.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or os.environ.get("GATEKEEPER_HISTORY_URL", "")
    if not url:
        raise SystemExit("alembic: set sqlalchemy.url or GATEKEEPER_HISTORY_URL to the history database")
    with make_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
