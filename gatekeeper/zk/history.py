"""Finished buildsets and builds on their way to the history database: the scheduler's side of the contract.

The scheduler does not talk SQL: when a build finishes (every attempt, retried or not) it calls `report_build`,
and when an item is reported, `report_buildset`.  Each appends one event to `/history/queue`; the history
recorder (gatekeeper.history.recorder, run by `gatekeeper history recorder` or inside the all-in-one) stores them
and acks.  The database can be down or slow without ever holding up the gate, and storing is idempotent (keyed by
the buildset and build ids), so an event seen twice after a crash is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import PREFIX, EventQueue
from gatekeeper.zk.record import Record, encode


@dataclass
class BuildsetEvent(Record):
    """One queue item's set of builds, as reported (or still running, when `result` is empty)."""

    VERSION = 1
    id: str = ""  # the scheduler's buildset (or item) id
    pipeline: str = ""
    project: str = ""
    change: int | None = None
    patchset: int | None = None
    ref: str = ""
    changes: str = ""  # the speculative state, "1,1 2,1"
    oldrev: str = ""  # a ref item's revisions (no change: a branch updated from oldrev to newrev)
    newrev: str = ""
    result: str = ""  # SUCCESS, FAILURE, MERGE_CONFLICT, INFRA_FAILURE, MERGE_FAILURE ("" while running)
    message: str = ""
    enqueue_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0


@dataclass
class BuildEvent(Record):
    """One attempt of one job. `final` is False for an attempt that was retried (an infrastructure failure)."""

    VERSION = 1
    id: str = ""  # the build request id
    buildset: str = ""  # BuildsetEvent.id
    pipeline: str = ""
    project: str = ""
    change: int | None = None
    patchset: int | None = None
    job: str = ""
    result: str = ""
    message: str = ""
    start_time: float = 0.0
    end_time: float = 0.0
    log_url: str = ""
    node: dict = field(default_factory=dict)  # {name, label, provider, address}
    executor: str = ""
    attempt: int = 1
    final: bool = True
    created: float = field(default_factory=time.time)
    # a failed build's diagnosis (gatekeeper.zk.builds.BuildResult): who is to blame, what failed, known bugs
    failure_class: str = ""
    summary: str = ""
    signatures: list = field(default_factory=list)  # [{id, title, url}]


def history_tx_op(event: BuildsetEvent | BuildEvent) -> tuple[int, Callable[[Any], None]]:
    """The same event as one operation for a kazoo transaction: (size, op), the shape the scheduler's
    PipelineStore.save(extra=...) takes, so a result and its history event are written together."""
    kind = "buildset" if isinstance(event, BuildsetEvent) else "build"
    raw = encode({"type": kind, "record": event.to_dict()})
    path = f"{paths.history_queue()}/{PREFIX}"
    return len(raw), lambda tx: tx.create(path, raw, sequence=True)


def ensure_queue(zk: ZKClient) -> None:
    """The queue's parent must exist before a transaction creates events in it."""
    zk.client.ensure_path(paths.history_queue())


def _queue(zk: ZKClient) -> EventQueue:
    return EventQueue(zk, paths.history_queue())


def report_buildset(zk: ZKClient, buildset: BuildsetEvent) -> str:
    return _queue(zk).put({"type": "buildset", "record": buildset.to_dict()})


def report_build(zk: ZKClient, build: BuildEvent) -> str:
    return _queue(zk).put({"type": "build", "record": build.to_dict()})
