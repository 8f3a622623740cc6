"""History schema migrations through Alembic: a fresh database, one made by the hand-written migrations that came
before (adopted and upgraded in place, rows kept), and a failed revision rolled back."""

from __future__ import annotations

import shutil

import pytest
from sqlalchemy import (
    Boolean,
    Column,
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
    text,
)

from gatekeeper.history import migrations
from gatekeeper.history.db import HistoryDB, HistoryError, make_engine
from gatekeeper.history.migrations import LATEST, current_version, migrate


def make_legacy_database(engine: Engine, version: int) -> None:
    """A database as the hand-written migrations (before Alembic) left it at `version` (1 or 2), with one
    buildset and one build in it.  The DDL is that code's, frozen here."""
    meta = MetaData()
    buildsets = Table(
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
    builds = Table(
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
    schema = Table("gatekeeper_schema", meta, Column("version", Integer, nullable=False))
    with engine.begin() as conn:
        meta.create_all(conn)
        if version >= 2:
            for index in (Index("ix_buildsets_project", buildsets.c.project),
                          Index("ix_buildsets_pipeline", buildsets.c.pipeline),
                          Index("ix_buildsets_change", buildsets.c.change),
                          Index("ix_builds_buildset_id", builds.c.buildset_id), Index("ix_builds_job", builds.c.job),
                          Index("ix_builds_result", builds.c.result)):
                index.create(conn)
        conn.execute(schema.insert().values(version=version))
        buildset = conn.execute(buildsets.insert().values(
            uuid="old", pipeline="gate", project="nova", change=7, patchset=1, ref="", changes="7,1",
            result="SUCCESS", message="", enqueue_time=0, start_time=0, end_time=10)).inserted_primary_key[0]
        conn.execute(builds.insert().values(
            uuid="old-tox", buildset_id=buildset, job="tox", result="SUCCESS", message="", start_time=0, end_time=10,
            log_url="http://logs/7", node_name="", node_label="", node_provider="", executor="", attempt=1,
            final=True))


def indexes(engine: Engine, table: str) -> set[str]:
    return {i["name"] for i in inspect(engine).get_indexes(table)}


def test_fresh_database_gets_every_revision_once(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/h.sqlite")
    assert current_version(engine) is None
    assert migrate(engine) == ["0001", "0002", "0003", "0004"]
    assert migrate(engine) == []
    assert {"failure_class", "summary", "signatures"} <= {c["name"] for c in inspect(engine).get_columns("builds")}
    assert {"oldrev", "newrev"} <= {c["name"] for c in inspect(engine).get_columns("buildsets")}
    assert current_version(engine) == LATEST
    assert {"buildsets", "builds", "alembic_version"} <= set(inspect(engine).get_table_names())
    assert "gatekeeper_schema" not in inspect(engine).get_table_names()


@pytest.mark.parametrize(("version", "applied"), [(1, ["0002", "0003", "0004"]), (2, ["0003", "0004"])])
def test_database_made_by_the_hand_written_migrations_is_adopted_and_upgraded_in_place(tmp_path, version, applied):
    url = f"sqlite:///{tmp_path}/h.sqlite"
    engine = make_engine(url)
    make_legacy_database(engine, version)
    assert current_version(engine) == migrations.LEGACY_REVISIONS[version]
    assert migrate(engine) == applied
    db = HistoryDB(url)  # opening migrates, and finds nothing left to do
    assert db.version == LATEST
    assert "ix_builds_job" in indexes(db.engine, "builds")
    assert db.buildset("old").result == "SUCCESS"
    assert [b.uuid for b in db.builds(project="nova")] == ["old-tox"]
    db.close()


def test_a_failing_revision_leaves_the_previous_one_and_names_the_database(tmp_path):
    scripts = tmp_path / "scripts"
    shutil.copytree(migrations.SCRIPTS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_broken.py").write_text(
        f'"""broken"""\nfrom alembic import op\n\nrevision = "9999"\ndown_revision = "{LATEST}"\n'
        'branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n'
        '    op.execute("CREATE TABLE half_done (x INTEGER)")\n    raise RuntimeError("revision 9999 is broken")\n')
    engine = make_engine(f"sqlite:///{tmp_path}/h.sqlite")
    with pytest.raises(RuntimeError, match="revision 9999 is broken"):
        migrate(engine, scripts)
    assert current_version(engine) == LATEST
    assert "half_done" not in inspect(engine).get_table_names()
    bad = tmp_path / "not-a-dir"
    bad.write_text("")
    with pytest.raises(HistoryError, match="not-a-dir"):
        HistoryDB(f"sqlite:///{bad}/sub/h.sqlite")


def test_a_version_the_hand_written_migrations_never_had_is_refused_with_its_number(tmp_path):
    url = f"sqlite:///{tmp_path}/h.sqlite"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE gatekeeper_schema (version INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO gatekeeper_schema VALUES (7)"))
    with pytest.raises(HistoryError, match="gatekeeper_schema says version 7"):
        HistoryDB(url)
