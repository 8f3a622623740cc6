"""Versioned schema migrations for the history database, run programmatically at start-up.

The database remembers its version in `gatekeeper_schema`; `migrate()` applies every newer step in order, each in
its own transaction (PostgreSQL runs DDL transactionally, so a failed step leaves the previous version intact).
A step is written against the schema as it was then (plain DDL through SQLAlchemy Core), never against today's
models, so old databases keep upgrading the same way.  Append steps; never edit one that was released.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

log = logging.getLogger("gatekeeper.history.migrations")

VERSION_TABLE = "gatekeeper_schema"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_tables(conn: Connection) -> None:
    meta = MetaData()
    Table(
        "buildsets", meta,
        Column("id", Integer, primary_key=True),
        Column("uuid", String(64), nullable=False, unique=True),
        Column("pipeline", String(255), nullable=False),
        Column("project", String(255), nullable=False),
        Column("change", Integer, nullable=True),
        Column("patchset", Integer, nullable=True),
        Column("ref", String(255), nullable=False),
        Column("changes", Text, nullable=False),
        Column("result", String(64), nullable=False),
        Column("message", Text, nullable=False),
        Column("enqueue_time", Float, nullable=False),
        Column("start_time", Float, nullable=False),
        Column("end_time", Float, nullable=False),
    )
    Table(
        "builds", meta,
        Column("id", Integer, primary_key=True),
        Column("uuid", String(64), nullable=False, unique=True),
        Column("buildset_id", Integer, ForeignKey("buildsets.id"), nullable=False),
        Column("job", String(255), nullable=False),
        Column("result", String(64), nullable=False),
        Column("message", Text, nullable=False),
        Column("start_time", Float, nullable=False),
        Column("end_time", Float, nullable=False),
        Column("log_url", Text, nullable=False),
        Column("node_name", String(255), nullable=False),
        Column("node_label", String(255), nullable=False),
        Column("node_provider", String(255), nullable=False),
        Column("executor", String(255), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("final", Boolean, nullable=False),
    )
    meta.create_all(conn)


def _v2_indexes(conn: Connection) -> None:
    """The indexes the history pages and duration estimates filter on."""
    meta = MetaData()
    buildsets = Table("buildsets", meta, autoload_with=conn)
    builds = Table("builds", meta, autoload_with=conn)
    for index in (
        Index("ix_buildsets_project", buildsets.c.project),
        Index("ix_buildsets_pipeline", buildsets.c.pipeline),
        Index("ix_buildsets_change", buildsets.c.change),
        Index("ix_builds_buildset_id", builds.c.buildset_id),
        Index("ix_builds_job", builds.c.job),
        Index("ix_builds_result", builds.c.result),
    ):
        index.create(conn)


def _v3_diagnosis(conn: Connection) -> None:
    """A failed build's diagnosis: its failure class, summary and matched known bugs (JSON)."""
    for name, kind in (("failure_class", "VARCHAR(32)"), ("summary", "TEXT"), ("signatures", "TEXT")):
        conn.execute(text(f"ALTER TABLE builds ADD COLUMN {name} {kind} NOT NULL DEFAULT ''"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "buildsets and builds", _v1_tables),
    Migration(2, "indexes for history filters", _v2_indexes),
    Migration(3, "failure class, summary and known bugs of builds", _v3_diagnosis),
)
LATEST = MIGRATIONS[-1].version


def _version_table(meta: MetaData) -> Table:
    return Table(VERSION_TABLE, meta, Column("version", Integer, nullable=False))


def current_version(engine: Engine) -> int:
    """The schema version of the database: 0 when it has no gatekeeper tables yet."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return 0
        return int(conn.execute(text(f"SELECT version FROM {VERSION_TABLE}")).scalar() or 0)


def migrate(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the database to the newest version; returns the versions applied (none when it is up to date)."""
    meta = MetaData()
    table = _version_table(meta)
    with engine.begin() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            meta.create_all(conn)
        if conn.execute(select(table.c.version)).first() is None:
            conn.execute(table.insert().values(version=0))
    applied = []
    for step in migrations:
        with engine.begin() as conn:
            # Re-read inside the transaction: another process may have migrated meanwhile.
            version = conn.execute(select(table.c.version).with_for_update()).scalar_one()
            if step.version <= version:
                continue
            log.info("history database: applying migration %d (%s)", step.version, step.description)
            step.apply(conn)
            conn.execute(table.update().values(version=step.version))
            applied.append(step.version)
    return applied
