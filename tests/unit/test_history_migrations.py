"""History schema migrations: a fresh database, an old one upgraded in place, and a failed step rolled back."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from gatekeeper.history import migrations
from gatekeeper.history.db import HistoryDB, HistoryError, make_engine
from gatekeeper.history.migrations import MIGRATIONS, Migration, current_version, migrate


def test_fresh_database_gets_every_step_once(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/h.sqlite")
    assert current_version(engine) == 0
    assert migrate(engine) == [m.version for m in MIGRATIONS]
    assert migrate(engine) == []
    assert {"buildsets", "builds", migrations.VERSION_TABLE} <= set(inspect(engine).get_table_names())


def test_database_at_version_one_is_upgraded_keeping_its_rows(tmp_path):
    url = f"sqlite:///{tmp_path}/h.sqlite"
    engine = make_engine(url)
    assert migrate(engine, MIGRATIONS[:1]) == [1]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO buildsets (uuid, pipeline, project, ref, changes, result, message, "
                          "enqueue_time, start_time, end_time) VALUES ('old', 'gate', 'nova', '', '', 'SUCCESS', "
                          "'', 0, 0, 0)"))
    assert "ix_builds_job" not in {i["name"] for i in inspect(engine).get_indexes("builds")}
    db = HistoryDB(url)  # opening migrates
    assert db.version == migrations.LATEST
    assert "ix_builds_job" in {i["name"] for i in inspect(db.engine).get_indexes("builds")}
    assert db.buildset("old").result == "SUCCESS"
    db.close()


def test_a_failing_step_leaves_the_previous_version_and_names_the_database(tmp_path):
    url = f"sqlite:///{tmp_path}/h.sqlite"
    engine = make_engine(url)

    def broken(conn):
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("the newest step is broken")

    with pytest.raises(RuntimeError):
        migrate(engine, (*MIGRATIONS, Migration(MIGRATIONS[-1].version + 1, "broken", broken)))
    assert current_version(engine) == MIGRATIONS[-1].version
    assert "half_done" not in inspect(engine).get_table_names()
    bad = tmp_path / "not-a-dir"
    bad.write_text("")
    with pytest.raises(HistoryError, match="not-a-dir"):
        HistoryDB(f"sqlite:///{bad}/sub/h.sqlite")
