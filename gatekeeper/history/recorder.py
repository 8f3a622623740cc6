"""The history recorder: drains `/history/queue` (written by the scheduler) into the history database.

Why a queue rather than the scheduler writing SQL itself: the scheduler stays free of a database dependency, a slow
or down database never holds up the gate (events wait in ZooKeeper until it is back), and one recorder per
installation is elected by a lock, so several web or all-in-one processes can each run one safely.

Having stored new builds, the recorder recomputes which providers are job-failure outliers and publishes them
(gatekeeper.zk.provider_outliers) for the executors' failure reports; when the layout asks for it, it drains them
(gatekeeper.history.autodrain).
"""

from __future__ import annotations

import logging
import threading

from kazoo.exceptions import LockTimeout

from gatekeeper.config.store import read_layout
from gatekeeper.history.autodrain import OutlierDrain
from gatekeeper.history.db import HistoryDB
from gatekeeper.stats.outliers import outliers_from_history
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient, through_outages
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.history import BuildEvent, BuildsetEvent
from gatekeeper.zk.provider_outliers import publish_outliers

log = logging.getLogger("gatekeeper.history.recorder")

RETRY_SECONDS = 5.0
OUTLIER_WINDOW = 600  # latest builds over which provider failure rates are compared (as on the status page)


class HistoryRecorder:
    """A service: start() it, stop() it; it stores every queued history event exactly once (idempotently)."""

    def __init__(self, zk: ZKClient, db: HistoryDB) -> None:
        self.zk = zk
        self.db = db
        self.queue = EventQueue(zk, paths.history_queue())
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = zk.client.Lock(paths.lock("history-recorder"))
        self.outlier_drain = OutlierDrain(zk)
        self.stored = 0

    def start(self) -> HistoryRecorder:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="history-recorder", daemon=True)
        self._thread.start()
        through_outages(self.queue.watch, lambda _ids: self._wake.set())
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._lock.release()
        except Exception:
            pass

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(RETRY_SECONDS)
            self._wake.clear()
            if self._stopped.is_set():
                break
            try:
                if not self._lock.is_acquired and not self._lock.acquire(blocking=False):
                    continue  # another recorder drains the queue
            except LockTimeout:
                continue
            try:
                self.drain()
            except Exception:
                log.exception("history recorder: storing events failed; retrying in %ss", RETRY_SECONDS)

    def drain(self) -> int:
        """Store every pending event, oldest first; returns how many. Stops at the first database error."""
        count = builds = 0
        for ident, event in self.queue.list():
            kind = event.get("type")
            record = event.get("record") or {}
            if kind == "buildset":
                self.db.record_buildset(BuildsetEvent.from_dict(record))
            elif kind == "build":
                build = BuildEvent.from_dict(record)
                self.db.record_build(build)
                builds += 1
                log.info("[%s %s,%s %s] recorded build %s: %s", build.pipeline, build.change, build.patchset,
                         build.job, build.id, build.result)
            else:
                log.warning("history queue: skipping event %s of unknown type %r", ident, kind)
            self.queue.ack(ident)
            count += 1
        self.stored += count
        if builds:
            try:
                self.publish_outliers()
            except Exception:  # the builds are stored; the next ones publish again
                log.exception("history recorder: publishing the provider outliers failed")
        return count

    def publish_outliers(self) -> list[dict]:
        """Recompute the providers whose job failure rate is an outlier, publish them and drain them if the layout
        says so; returns them."""
        found = outliers_from_history(self.db.builds(limit=OUTLIER_WINDOW), OUTLIER_WINDOW)
        if publish_outliers(self.zk, found):
            log.warning("providers flagged as job-failure outliers now: %s",
                        "; ".join(o["description"] for o in found) or "none")
        if found:
            self.outlier_drain.apply(read_layout(self.zk), found)
        return found
