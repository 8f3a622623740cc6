"""Build history on SQLite and on a real PostgreSQL server (started here, on loopback, in a temp dir)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import inspect

from gatekeeper.history import recorder as recorder_module
from gatekeeper.history.db import HistoryDB, _postgres_driver, make_engine
from gatekeeper.history.migrations import LATEST
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.zk.history import (
    BuildEvent,
    BuildsetEvent,
    ensure_queue,
    history_tx_op,
    report_build,
    report_buildset,
)
from tests.helpers import wait_for
from tests.unit.test_history_migrations import make_legacy_database

try:
    import psycopg
except ImportError:  # the SQLite tests still run
    psycopg = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL (Debian's package) on a free loopback port; yields a URL without a database name."""
    if psycopg is None:
        pytest.skip("the PostgreSQL driver psycopg is not installed (pip install 'psycopg[binary]')")
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    bindir = os.path.dirname(initdb[-1])
    base = tempfile.mkdtemp(prefix="gatekeeper-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the package's postgres user
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    port = _free_port()
    proc = None
    try:
        subprocess.run(as_user + [f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "gatekeeper", "-E", "UTF8",
                                  "--no-sync"], check=True, capture_output=True, timeout=120)
        proc = subprocess.Popen(as_user + [f"{bindir}/postgres", "-D", data, "-p", str(port), "-k", base,
                                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(f"postgresql://gatekeeper@127.0.0.1:{port}/postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start on port {port}") from None
                time.sleep(0.2)
        yield f"postgresql://gatekeeper@127.0.0.1:{port}"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/history.sqlite"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"gk_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db(db_url: str) -> Iterator[HistoryDB]:
    history = HistoryDB(db_url)
    yield history
    history.close()


def gate_item(db: HistoryDB, change: int, project: str, results: dict[str, str], t0: float = 1000.0) -> None:
    """One reported buildset with one build per job (each 100 s long)."""
    bs = f"bs-{change}"
    db.record_buildset(BuildsetEvent(id=bs, pipeline="gate", project=project, change=change, patchset=1,
                                     changes=f"{change},1", enqueue_time=t0, start_time=t0))
    for n, (job, result) in enumerate(results.items()):
        db.record_build(BuildEvent(id=f"b-{change}-{job}", buildset=bs, pipeline="gate", project=project,
                                   change=change, patchset=1, job=job, result=result, start_time=t0 + n,
                                   end_time=t0 + n + 100, log_url=f"http://logs/{change}/{job}/",
                                   node={"name": f"node-{change}", "label": "debian", "provider": "sim-a"}))
    db.record_buildset(BuildsetEvent(id=bs, result="SUCCESS" if set(results.values()) == {"SUCCESS"} else "FAILURE",
                                     end_time=t0 + 200))


def test_new_database_is_migrated_to_the_newest_schema_and_reopening_changes_nothing(db_url):
    first = HistoryDB(db_url)
    assert first.version == LATEST
    first.close()
    again = HistoryDB(db_url)
    assert again.version == LATEST
    again.close()


def test_database_made_by_the_hand_written_migrations_is_upgraded_in_place_keeping_its_rows(db_url):
    engine = make_engine(_postgres_driver(db_url))
    make_legacy_database(engine, 1)  # the schema before its indexes, and before Alembic
    engine.dispose()
    db = HistoryDB(db_url)
    assert db.version == LATEST
    assert "ix_builds_job" in {i["name"] for i in inspect(db.engine).get_indexes("builds")}
    assert [(b.uuid, b.change, b.log_url) for b in db.builds(project="nova")] == [("old-tox", 7, "http://logs/7")]
    gate_item(db, 8, "nova", {"tox": "SUCCESS"})  # and the upgraded tables take new rows
    assert [b.uuid for b in db.builds(project="nova")] == ["b-8-tox", "old-tox"]
    db.close()


def test_builds_are_stored_with_change_pipeline_node_and_log_url_and_filtered(db):
    gate_item(db, 1, "nova", {"tox": "SUCCESS", "devstack": "FAILURE"})
    gate_item(db, 2, "glance", {"tox": "SUCCESS", "devstack": "SUCCESS"}, t0=2000.0)
    assert [(b.job, b.change) for b in db.builds()] == [("devstack", 2), ("tox", 2), ("devstack", 1), ("tox", 1)]
    failed = db.builds(result="FAILURE")
    assert [(b.project, b.job, b.change, b.patchset, b.pipeline) for b in failed] == [("nova", "devstack", 1, 1,
                                                                                       "gate")]
    assert failed[0].node_provider == "sim-a" and failed[0].log_url == "http://logs/1/devstack/"
    assert failed[0].duration == 100
    assert [b.uuid for b in db.builds(project="glance", job="tox")] == ["b-2-tox"]
    assert [b.uuid for b in db.builds(change=1, job="tox")] == ["b-1-tox"]
    assert db.builds(project="nova", result="SUCCESS", job="devstack") == []
    sets = db.buildsets(project="nova")
    assert [(s.uuid, s.result, len(s.builds)) for s in sets] == [("bs-1", "FAILURE", 2)]


def test_retried_attempts_are_kept_but_marked_not_final(db):
    db.record_buildset(BuildsetEvent(id="bs", pipeline="check", project="nova", change=5, patchset=2))
    db.record_build(BuildEvent(id="try1", buildset="bs", job="devstack", result="NODE_FAILURE", attempt=1,
                               final=False, start_time=10, end_time=20))
    db.record_build(BuildEvent(id="try2", buildset="bs", job="devstack", result="SUCCESS", attempt=2,
                               start_time=30, end_time=90))
    assert [(b.uuid, b.attempt, b.final) for b in db.builds(change=5)] == [("try2", 2, True), ("try1", 1, False)]
    assert [b.uuid for b in db.builds(final=False)] == ["try1"]
    assert db.job_totals() == [{"project": "nova", "job": "devstack", "result": "SUCCESS", "count": 1,
                                "seconds": 60.0}]


def test_recording_the_same_build_twice_updates_it_instead_of_duplicating(db):
    event = BuildEvent(id="b1", buildset="bs", pipeline="check", project="nova", change=7, patchset=1, job="tox",
                       result="FAILURE", start_time=1, end_time=2)
    db.record_build(event)
    db.record_build(event)
    assert len(db.builds()) == 1
    assert db.build("b1").change == 7  # the buildset was made from the build's own fields
    assert db.build("nope") is None


def test_estimate_is_the_mean_of_recent_successful_runs(db):
    gate_item(db, 1, "nova", {"devstack": "SUCCESS"}, t0=1)
    db.record_build(BuildEvent(id="slow", buildset="bs-1", job="devstack", result="SUCCESS", start_time=500,
                               end_time=800))
    db.record_build(BuildEvent(id="failed", buildset="bs-1", job="devstack", result="FAILURE", start_time=900,
                               end_time=901))
    assert db.estimate("nova", "devstack") == 200.0
    assert db.estimate("nova", "tox") is None


def test_recorder_stores_what_the_scheduler_reported_through_zookeeper(zk, tmp_path, monkeypatch):
    # The recorder's fallback poll is pushed out of the test's reach: only its queue watch can wake it in time.
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", 600.0)
    db = HistoryDB(f"sqlite:///{tmp_path}/h.sqlite")
    report_buildset(zk, BuildsetEvent(id="bs9", pipeline="gate", project="nova", change=9, patchset=3))
    report_build(zk, BuildEvent(id="b9", buildset="bs9", job="tox", result="SUCCESS", start_time=1, end_time=5))
    recorder = HistoryRecorder(zk, db).start()
    try:
        wait_for(lambda: db.build("b9"), timeout=20, what="the queued build to be recorded")
        assert (db.build("b9").change, db.build("b9").patchset) == (9, 3)
        # a later event, written inside a transaction as the scheduler saves its state, is picked up by the watch
        ensure_queue(zk)
        tx = zk.client.transaction()
        history_tx_op(BuildEvent(id="b10", buildset="bs9", job="pep8", result="FAILURE"))[1](tx)
        assert not any(isinstance(r, Exception) for r in tx.commit())
        wait_for(lambda: db.build("b10"), timeout=20, what="the watch to wake the recorder for a new event")
        assert db.build("b10").result == "FAILURE"
        wait_for(lambda: len(recorder.queue.list()) == 0, timeout=20, what="the recorded events to be acked")
        assert recorder.stored == 3
    finally:
        recorder.stop()
        db.close()
