"""Zuul's timer trigger: at each fire time of a pipeline's cron schedules, every branch tip of every project with
jobs in that pipeline is enqueued as a ref item (gatekeeper.scheduler.refs), as a periodic pipeline runs them.

Every scheduler runs a timer; the one that creates the ZooKeeper node of (pipeline, fire time) first lists the
branches (over Gerrit's SSH, on the timer's own thread) and puts one "timer" event per branch tip into the
connection's event queue, whose handling by the pipeline enqueues the ref item; the others see the node exists.
A fire missed while no scheduler ran is not replayed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from croniter import croniter
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    SessionExpiredError,
)

from gatekeeper.config.model import Layout
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.interfaces import SourceError
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import PREFIX, EventQueue
from gatekeeper.zk.record import encode

log = logging.getLogger("gatekeeper.scheduler.timer")

FIRES = "/scheduler/timer-fires"  # /<pipeline>/<fire time>: created by the scheduler that enqueues that fire
KEEP_FIRES = 300.0  # fire nodes older than this (seconds before the newest) are deleted: schedulers whose clocks
# differ by less than this never enqueue one fire twice
LONGEST_WAIT = 60.0  # look at the clock and the layout at least this often
FIRES_KEPT = 100  # fires remembered in `PipelineTimer.fired` (for status and tests)
EVENT_TYPE = "timer"
ZK_ERRORS = (ConnectionLoss, SessionExpiredError, ConnectionClosedError)


class BranchSource(Protocol):
    def branch_heads(self, project: str) -> dict[str, str]:
        """Branch -> tip revision of `project`."""


def timer_refs(layout: Layout, pipeline: str, heads: Callable[[str], dict[str, str]]) -> list[tuple[str, str, str]]:
    """(project, branch, tip) a fire of `pipeline` enqueues: each branch of each project with jobs in it on which
    one of those jobs runs (its branch matchers decide). A project whose branches cannot be read is left out."""
    found = []
    for name, project in sorted(layout.projects.items()):
        if not project.jobs_for(pipeline):
            continue
        try:
            branches = heads(name)
        except SourceError as exc:
            log.warning("[%s] cannot list the branches of %s for this timer fire: %s", pipeline, name, exc)
            continue
        for branch, tip in sorted(branches.items()):
            if project.jobs_on_branch(pipeline, branch, layout.jobs):
                found.append((name, branch, tip))
    return found


def timer_record(pipeline: str, fire: float, project: str, branch: str, tip: str) -> dict[str, Any]:
    return {"type": EVENT_TYPE, "pipeline": pipeline, "time": fire, "project": project, "branch": branch,
            "newrev": tip}


def timer_event(record: Any, connection: str, ident: str) -> TriggerEvent | None:
    """The trigger event of a timer record in a connection's queue; None for any other record."""
    if not isinstance(record, dict) or record.get("type") != EVENT_TYPE:
        return None
    fields = ("pipeline", "project", "branch", "newrev")
    if not all(isinstance(record.get(f), str) and record.get(f) for f in fields):
        raise ValueError(f"timer event {ident} of connection {connection} lacks one of {', '.join(fields)}")
    return TriggerEvent(type=EVENT_TYPE, connection=connection, project=record["project"], branch=record["branch"],
                        id=ident, raw=record, ref=f"refs/heads/{record['branch']}", newrev=record["newrev"])


def last_fire(spec: str, now: float) -> float:
    """The latest fire time of cron `spec` at or before `now`."""
    return croniter(spec, now + 0.001).get_prev(float)


class PipelineTimer:
    """Fires the timer-triggered pipelines of the current layout (`layout()`), on its own thread."""

    clock: Callable[[], float] = staticmethod(time.time)  # wall-clock seconds (cron times are wall-clock times)

    def __init__(self, zk: ZKClient, layout: Callable[[], Layout], branches: BranchSource, connection: str,
                 stopping: threading.Event | None = None) -> None:
        """`layout()` is the scheduler's current layout; `stopping`, when given, is the scheduler's own: the
        timer ends with it."""
        self.zk = zk
        self.layout = layout
        self.branches = branches
        self.queue = EventQueue(zk, paths.event_queue(connection))
        # the latest fires seen: (pipeline, fire time, events put; -1: enqueued by another scheduler)
        self.fired: deque[tuple[str, float, int]] = deque(maxlen=FIRES_KEPT)
        self.looked_at = 0.0  # the clock when the timer last looked for due fires
        self._wake = threading.Event()
        self._stopping = stopping or threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PipelineTimer:
        self._thread = threading.Thread(target=self._run, name="scheduler-timer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(30)

    def wake(self) -> None:
        """Look at the clock and the layout now (a new layout, a moved clock)."""
        self._wake.set()

    def _run(self) -> None:
        last = self.clock()  # fires after this are due: earlier ones are not replayed
        while not self._stopping.is_set():
            now = self.looked_at = self.clock()
            last = min(last, now)  # a clock set back: fire from there
            wait = LONGEST_WAIT
            for name, pipeline in sorted(self.layout().pipelines.items()):
                if not pipeline.timers or pipeline.dependent:
                    continue
                due = max(last_fire(spec, now) for spec in pipeline.timers)
                if last < due <= now:
                    try:
                        self.fire(name, due)
                    except ZK_ERRORS as exc:
                        log.warning("[%s] timer fire %s lost: ZooKeeper cannot be reached (%s: %s)", name,
                                    _when(due), type(exc).__name__, exc)
                    except Exception:
                        log.exception("[%s] timer fire %s failed", name, _when(due))
                wait = min(wait, *(croniter(spec, now).get_next(float) - now for spec in pipeline.timers))
            last = now
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def fire(self, pipeline: str, when: float) -> int:
        """Enqueue one fire of `pipeline` unless another scheduler did; returns the number of events put (-1:
        fired by another scheduler). The fire's node and its events are created in one transaction: a fire is
        enqueued once in all, and never half."""
        client = self.zk.client
        parent = f"{FIRES}/{pipeline}"
        path = f"{parent}/{when:.0f}"
        if client.exists(path):
            self.fired.append((pipeline, when, -1))
            return -1
        layout = self.layout()
        refs = timer_refs(layout, pipeline, self.branches.branch_heads) if pipeline in layout.pipelines else []
        client.ensure_path(parent)
        tx = client.transaction()
        tx.create(path, b"")
        for ref in refs:
            tx.create(f"{self.queue.path}/{PREFIX}", encode(timer_record(pipeline, when, *ref)), sequence=True)
        results = tx.commit()
        if any(isinstance(r, Exception) for r in results):
            if isinstance(results[0], NodeExistsError):
                self.fired.append((pipeline, when, -1))
                return -1
            raise next(r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError))
        self._forget_old_fires(pipeline, when)
        log.info("[%s] timer fire %s: enqueued %d branch tip(s): %s", pipeline, _when(when), len(refs),
                 ", ".join(f"{p} {b}@{t[:12]}" for p, b, t in refs) or "none")
        self.fired.append((pipeline, when, len(refs)))
        return len(refs)

    def _forget_old_fires(self, pipeline: str, when: float) -> None:
        parent = f"{FIRES}/{pipeline}"
        for child in self.zk.client.get_children(parent):
            if child.isdigit() and int(child) < when - KEEP_FIRES:
                try:
                    self.zk.client.delete(f"{parent}/{child}")
                except NoNodeError:
                    pass


def _when(fire: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(fire))
