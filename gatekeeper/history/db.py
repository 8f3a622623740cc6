"""The build history database: store finished buildsets and builds, and answer the history pages' questions.

    db = HistoryDB("sqlite:////var/lib/gatekeeper/history.sqlite")   # or postgresql+psycopg://user@host/db
    db.record_buildset(BuildsetEvent(...)); db.record_build(BuildEvent(...))
    db.builds(project="nova", result="FAILURE", limit=20)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from gatekeeper.history import migrations
from gatekeeper.history.models import Build, Buildset
from gatekeeper.zk.history import BuildEvent, BuildsetEvent

log = logging.getLogger("gatekeeper.history.db")

ESTIMATE_SAMPLES = 10  # how many recent successful runs a job's duration estimate averages


class HistoryError(Exception):
    """The history database cannot be reached or used; the message names the database (without password)."""


@dataclass
class BuildRow:
    """One build as the API and pages show it."""

    uuid: str
    buildset: str
    pipeline: str
    project: str
    change: int | None
    patchset: int | None
    ref: str
    changes: str
    job: str
    result: str
    message: str
    start_time: float
    end_time: float
    duration: float
    log_url: str
    node_name: str
    node_label: str
    node_provider: str
    executor: str
    attempt: int
    final: bool
    failure_class: str = ""
    summary: str = ""
    signatures: list[dict[str, Any]] = field(default_factory=list)
    newrev: str = ""  # a ref item's new revision (its buildset's)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuildsetRow:
    uuid: str
    pipeline: str
    project: str
    change: int | None
    patchset: int | None
    ref: str
    changes: str
    result: str
    message: str
    enqueue_time: float
    start_time: float
    end_time: float
    builds: list[BuildRow]
    oldrev: str = ""  # a ref item's revisions
    newrev: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _expand_sqlite(url: str) -> str:
    """`sqlite:///~/x.sqlite` → an absolute path, creating its folder (the default lives in ~/.gatekeeper)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return url
    path = Path(os.path.expanduser(parsed.database))
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _postgres_driver(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3 (SQLAlchemy's default would be psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """An engine for `url`; on SQLite with real transactions around DDL too, so a failed migration rolls back."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # pysqlite commits before DDL on its own; take over BEGIN so that migrations are all or nothing.
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    return engine


class HistoryDB:
    """One connection pool to the history database, migrated to the newest schema on open. Thread-safe."""

    def __init__(self, url: str, migrate: bool = True) -> None:
        try:
            self.url = _postgres_driver(_expand_sqlite(url))
        except OSError as exc:
            raise HistoryError(f"history database {url}: cannot create its folder: {exc}") from exc
        self.safe_url = make_url(self.url).render_as_string(hide_password=True)
        self.engine = make_engine(self.url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()  # SQLite allows one writer; serialise ours rather than retry
        if migrate:
            try:
                migrations.migrate(self.engine)
            except Exception as exc:
                raise HistoryError(f"history database {self.safe_url}: cannot migrate: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    @property
    def version(self) -> int:
        return migrations.current_version(self.engine)

    # -- writing ---------------------------------------------------------------------------------------------
    def record_buildset(self, event: BuildsetEvent) -> None:
        """Insert or update one buildset (idempotent: keyed by its id)."""
        with self._write_lock, self._session.begin() as session:
            row = self._buildset(session, event.id)
            row.pipeline = event.pipeline or row.pipeline
            row.project = event.project or row.project
            row.change = event.change if event.change is not None else row.change
            row.patchset = event.patchset if event.patchset is not None else row.patchset
            row.ref = event.ref or row.ref
            row.oldrev = event.oldrev or row.oldrev
            row.newrev = event.newrev or row.newrev
            row.changes = event.changes or row.changes
            row.result = event.result or row.result
            row.message = event.message or row.message
            row.enqueue_time = event.enqueue_time or row.enqueue_time
            row.start_time = event.start_time or row.start_time
            row.end_time = event.end_time or row.end_time

    def record_build(self, event: BuildEvent) -> None:
        """Insert or update one build attempt, creating its buildset from the build's own fields if needed."""
        with self._write_lock, self._session.begin() as session:
            buildset = self._buildset(session, event.buildset or f"build-{event.id}")
            if not buildset.pipeline:
                buildset.pipeline, buildset.project = event.pipeline, event.project
                buildset.change, buildset.patchset = event.change, event.patchset
            row = session.scalars(select(Build).where(Build.uuid == event.id)).first()
            if row is None:
                row = Build(uuid=event.id, buildset=buildset)
                session.add(row)
            node = event.node or {}
            row.job = event.job
            row.result = event.result
            row.message = event.message
            row.start_time = event.start_time
            row.end_time = event.end_time
            row.log_url = event.log_url
            row.node_name = str(node.get("name", ""))
            row.node_label = str(node.get("label", ""))
            row.node_provider = str(node.get("provider", ""))
            row.executor = event.executor
            row.attempt = event.attempt
            row.final = event.final
            row.failure_class = event.failure_class or ""
            row.summary = event.summary or ""
            row.signatures = json.dumps(event.signatures) if event.signatures else ""

    @staticmethod
    def _buildset(session: Session, uuid: str) -> Buildset:
        row = session.scalars(select(Buildset).where(Buildset.uuid == uuid)).first()
        if row is None:
            row = Buildset(uuid=uuid, pipeline="", project="", ref="", oldrev="", newrev="", changes="", result="",
                           message="",
                           enqueue_time=0.0, start_time=0.0, end_time=0.0)
            session.add(row)
            session.flush()
        return row

    # -- reading ---------------------------------------------------------------------------------------------
    def builds(
        self,
        *,
        project: str | None = None,
        job: str | None = None,
        result: str | None = None,
        change: int | None = None,
        pipeline: str | None = None,
        final: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[BuildRow]:
        """Builds, newest first, filtered by every argument given."""
        query = select(Build, Buildset).join(Buildset)
        if project:
            query = query.where(Buildset.project == project)
        if job:
            query = query.where(Build.job == job)
        if result:
            query = query.where(Build.result == result)
        if change is not None:
            query = query.where(Buildset.change == change)
        if pipeline:
            query = query.where(Buildset.pipeline == pipeline)
        if final is not None:
            query = query.where(Build.final == final)
        query = query.order_by(Build.end_time.desc(), Build.id.desc()).limit(limit).offset(offset)
        with self._session() as session:
            return [_build_row(b, bs) for b, bs in session.execute(query)]

    def build(self, uuid: str) -> BuildRow | None:
        with self._session() as session:
            found = session.execute(select(Build, Buildset).join(Buildset).where(Build.uuid == uuid)).first()
            return _build_row(*found) if found else None

    def buildsets(
        self, *, project: str | None = None, pipeline: str | None = None, change: int | None = None,
        result: str | None = None, limit: int = 50, offset: int = 0,
    ) -> list[BuildsetRow]:
        query = select(Buildset)
        if project:
            query = query.where(Buildset.project == project)
        if pipeline:
            query = query.where(Buildset.pipeline == pipeline)
        if change is not None:
            query = query.where(Buildset.change == change)
        if result:
            query = query.where(Buildset.result == result)
        query = query.order_by(Buildset.end_time.desc(), Buildset.id.desc()).limit(limit).offset(offset)
        with self._session() as session:
            return [_buildset_row(bs) for bs in session.scalars(query)]

    def buildset(self, uuid: str) -> BuildsetRow | None:
        with self._session() as session:
            bs = session.scalars(select(Buildset).where(Buildset.uuid == uuid)).first()
            return _buildset_row(bs) if bs else None

    def estimate(self, project: str, job: str) -> float | None:
        """A job's expected duration: the mean of its last successful runs for this project (None: never ran)."""
        recent = (
            select((Build.end_time - Build.start_time).label("duration"))
            .join(Buildset)
            .where(Build.job == job, Buildset.project == project, Build.result == "SUCCESS", Build.start_time > 0)
            .order_by(Build.end_time.desc())
            .limit(ESTIMATE_SAMPLES)
            .subquery()
        )
        with self._session() as session:
            value = session.execute(select(func.avg(recent.c.duration))).scalar()
        return float(value) if value is not None else None

    def job_totals(self) -> list[dict[str, Any]]:
        """Per project, job and result: how many final builds and their summed duration (for /metrics)."""
        query = (
            select(Buildset.project, Build.job, Build.result, func.count(Build.id),
                   func.sum(Build.end_time - Build.start_time))
            .join(Buildset)
            .where(Build.final.is_(True))
            .group_by(Buildset.project, Build.job, Build.result)
            .order_by(Buildset.project, Build.job, Build.result)
        )
        with self._session() as session:
            return [
                {"project": p, "job": j, "result": r, "count": int(n), "seconds": float(s or 0.0)}
                for p, j, r, n, s in session.execute(query)
            ]


def _build_row(b: Build, bs: Buildset) -> BuildRow:
    return BuildRow(
        uuid=b.uuid, buildset=bs.uuid, pipeline=bs.pipeline, project=bs.project, change=bs.change,
        patchset=bs.patchset, ref=bs.ref, changes=bs.changes, job=b.job, result=b.result, message=b.message,
        start_time=b.start_time, end_time=b.end_time, duration=max(0.0, b.end_time - b.start_time),
        log_url=b.log_url, node_name=b.node_name, node_label=b.node_label, node_provider=b.node_provider,
        executor=b.executor, attempt=b.attempt, final=b.final, failure_class=b.failure_class or "",
        summary=b.summary or "", signatures=_signatures(b.signatures), newrev=bs.newrev or "",
    )


def _signatures(raw: str | None) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _buildset_row(bs: Buildset) -> BuildsetRow:
    return BuildsetRow(
        uuid=bs.uuid, pipeline=bs.pipeline, project=bs.project, change=bs.change, patchset=bs.patchset,
        ref=bs.ref, changes=bs.changes, result=bs.result, message=bs.message, enqueue_time=bs.enqueue_time,
        start_time=bs.start_time, end_time=bs.end_time, builds=[_build_row(b, bs) for b in bs.builds],
        oldrev=bs.oldrev or "", newrev=bs.newrev or "",
    )


def _sqlite_connect(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None  # no implicit transactions: SQLAlchemy's "begin" event emits BEGIN
    # WAL lets the web read while the recorder writes; a busy timeout instead of "database is locked" errors.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # with WAL, NORMAL is as safe against a crash of the process (the database stays consistent) and waits for
    # the disk only at checkpoints, not at every commit (SQLite's own advice for WAL)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
