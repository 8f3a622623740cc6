"""Schema migrations for the history database, through Alembic, run programmatically at start-up.

The revisions are in gatekeeper/history/alembic/versions/, each written against the schema as it was then (never
against today's models), so old databases keep upgrading the same way.  Append revisions; never edit one that was
released.  `migrate()` applies each missing revision in a transaction of its own (PostgreSQL and, through
gatekeeper's engine, SQLite run DDL transactionally), so a failed revision leaves the previous one intact; on
PostgreSQL an advisory lock keeps two starting services from migrating at once.

A database made before Alembic remembers its version in `gatekeeper_schema`: it is adopted in place (stamped at
the matching revision, then upgraded).  That table is left as it was, so an older service still reads a version
it knows.  A new revision: `alembic -c <ini with script_location = gatekeeper/history/alembic> revision -m ...`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger("gatekeeper.history.migrations")
# Alembic's own INFO lines ("Context impl SQLiteImpl", "Will assume transactional DDL") say nothing an operator
# needs; our own log line names each revision applied.
logging.getLogger("alembic").setLevel(logging.WARNING)

SCRIPTS = Path(__file__).parent / "alembic"
LEGACY_TABLE = "gatekeeper_schema"  # the version table of the schema before Alembic
LEGACY_REVISIONS = {1: "0001", 2: "0002"}  # its versions, as revisions
LOCK_KEY = 0x6761746B  # "gatk": the PostgreSQL advisory lock held while migrating


class MigrationError(Exception):
    """The database is in a state no revision describes."""


def _config(scripts: Path, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(scripts))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def latest(scripts: Path = SCRIPTS) -> str:
    """The newest revision."""
    head = ScriptDirectory.from_config(_config(scripts)).get_current_head()
    if head is None:
        raise MigrationError(f"{scripts}: no migration revisions")
    return head


LATEST = latest()


def _revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_version(engine: Engine) -> str | None:
    """The schema revision of the database: None when it has no gatekeeper tables yet."""
    with engine.connect() as conn:
        revision = _revision(conn)
        return revision if revision is not None else LEGACY_REVISIONS.get(_legacy_version(conn) or 0)


def _legacy_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table(LEGACY_TABLE):
        return None
    return int(conn.execute(text(f"SELECT version FROM {LEGACY_TABLE}")).scalar() or 0)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def _adopt_legacy(conn: Connection, config: Config) -> None:
    """Stamp a database made by the hand-written migrations at the revision its version stands for."""
    if _revision(conn) is not None:
        return
    version = _legacy_version(conn)
    if not version:
        return  # no gatekeeper schema yet (or an empty version table): start from the first revision
    if version not in LEGACY_REVISIONS:
        raise MigrationError(f"{LEGACY_TABLE} says version {version}, which this gatekeeper does not know")
    log.info("history database: adopting schema version %d as revision %s", version, LEGACY_REVISIONS[version])
    command.stamp(config, LEGACY_REVISIONS[version])


def migrate(engine: Engine, scripts: Path = SCRIPTS) -> list[str]:
    """Bring the database to the newest revision; returns the revisions applied (none when it is up to date)."""
    script = ScriptDirectory.from_config(_config(scripts))
    with engine.begin() as conn:
        _lock(conn)
        _adopt_legacy(conn, _config(scripts, conn))
        current = _revision(conn)
    pending = [r.revision for r in reversed(list(script.iterate_revisions("heads", current or "base")))]
    applied = []
    for revision in pending:
        with engine.begin() as conn:
            _lock(conn)
            # Re-read inside the transaction: another process may have migrated meanwhile.
            if revision == _revision(conn) or revision in _ancestors(script, _revision(conn)):
                continue
            log.info("history database: applying revision %s (%s)", revision,
                     script.get_revision(revision).doc.splitlines()[0])
            command.upgrade(_config(scripts, conn), revision)
            applied.append(revision)
    return applied


def _ancestors(script: ScriptDirectory, revision: str | None) -> set[str]:
    if revision is None:
        return set()
    return {r.revision for r in script.iterate_revisions(revision, "base")}
