"""The build history tables, as SQLAlchemy 2 models: one row per buildset (a queue item's builds) and per build.

Times are UNIX seconds (floats), as everywhere else in gatekeeper.  The schema is created and upgraded by
gatekeeper.history.migrations (Alembic), never by `create_all`, so that an existing database is migrated in place.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Buildset(Base):
    __tablename__ = "buildsets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    pipeline: Mapped[str] = mapped_column(String(255), index=True)
    project: Mapped[str] = mapped_column(String(255), index=True)
    change: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    patchset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ref: Mapped[str] = mapped_column(String(255), default="")
    oldrev: Mapped[str] = mapped_column(String(64), default="")  # a ref item's revisions (a branch updated)
    newrev: Mapped[str] = mapped_column(String(64), default="")
    changes: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(String(64), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    enqueue_time: Mapped[float] = mapped_column(Float, default=0.0)
    start_time: Mapped[float] = mapped_column(Float, default=0.0)
    end_time: Mapped[float] = mapped_column(Float, default=0.0)

    builds: Mapped[list[Build]] = relationship(back_populates="buildset", order_by="Build.id")


class Build(Base):
    __tablename__ = "builds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    buildset_id: Mapped[int] = mapped_column(ForeignKey("buildsets.id"), index=True)
    job: Mapped[str] = mapped_column(String(255), index=True)
    result: Mapped[str] = mapped_column(String(64), default="", index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    start_time: Mapped[float] = mapped_column(Float, default=0.0)
    end_time: Mapped[float] = mapped_column(Float, default=0.0)
    log_url: Mapped[str] = mapped_column(Text, default="")
    node_name: Mapped[str] = mapped_column(String(255), default="")
    node_label: Mapped[str] = mapped_column(String(255), default="")
    node_provider: Mapped[str] = mapped_column(String(255), default="")
    executor: Mapped[str] = mapped_column(String(255), default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    final: Mapped[bool] = mapped_column(Boolean, default=True)  # False: an attempt that was retried
    failure_class: Mapped[str] = mapped_column(String(32), default="")  # change, infrastructure, unknown
    summary: Mapped[str] = mapped_column(Text, default="")
    signatures: Mapped[str] = mapped_column(Text, default="")  # JSON: [{id, title, url}] of matched known bugs

    buildset: Mapped[Buildset] = relationship(back_populates="builds")
