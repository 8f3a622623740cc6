"""Pipeline locks: each pipeline is processed by one scheduler at a time, under a kazoo Lock kept for a short lease
after its last pass; a lock held elsewhere is watched, so work left by a dead scheduler is taken up when its session
ends. A mixin of `Scheduler` (gatekeeper.scheduler.scheduler).
"""

from __future__ import annotations

import logging
import time

from kazoo.exceptions import NoNodeError

from gatekeeper.models.store import delete_all
from gatekeeper.zk import paths

log = logging.getLogger("gatekeeper.scheduler")

RESULTS_BATCH = 32  # applied merge and build results are deleted this many at a time (or when quiet)
LOCK_LEASE = 1.0  # a pipeline lock is kept this long after its last pass, so a burst of events costs one lock
TIDY_QUIET = 1.0  # what is consumed (events, results, ledger records) is deleted after this long without a pass


class PipelineLocks:
    """Taking, keeping and giving back pipeline locks, for Scheduler."""

    # -- pipeline locks -------------------------------------------------------------------------------------------
    def _acquire(self, name: str) -> bool:
        """Hold the pipeline's lock (kept between passes for LOCK_LEASE); False when another scheduler has it."""
        if name in self._held:
            return True
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = self.zk.client.Lock(paths.lock("pipeline", name), self.component.info.ident)
        if lock.is_acquired and self._still_ours(lock):
            pass  # a release that failed on a lost connection: the lock is still ours (same session)
        elif lock.is_acquired:
            lock = self._locks[name] = self.zk.client.Lock(paths.lock("pipeline", name), self.component.info.ident)
            if not lock.acquire(blocking=False):
                return False
        elif not lock.acquire(blocking=False):
            self._watch_lock(name)
            return False  # the holder sees the same events and results, and applies them
        self._held[name] = time.monotonic()
        self._fresh.discard(name)
        return True

    def _watch_lock(self, name: str) -> None:
        """Wake when the holder of `name`'s lock lets go (or its session expires, as when it was killed): the
        work it left is ours to do then, not at the next safety round."""
        if name in self._lock_watched:
            return
        self._lock_watched.add(name)

        def changed(event) -> None:
            self._lock_watched.discard(name)
            self._idle.clear()
            self._wake.set()

        try:
            self.zk.client.get_children(paths.lock("pipeline", name), watch=changed)
        except NoNodeError:
            self._lock_watched.discard(name)

    def _still_ours(self, lock) -> bool:
        stat = self.zk.client.exists(lock.node) if lock.node else None
        return stat is not None and stat.ephemeralOwner == self.zk.client.client_id[0]

    def _release_idle_locks(self) -> None:
        now = time.monotonic()
        quiet = False
        last_pass = max(self._held.values(), default=0.0)
        for name, last in list(self._held.items()):
            if now - last >= LOCK_LEASE:
                self._release(name)
                quiet = True
        # Quiet: a lock let go, none held, or no pass for TIDY_QUIET whatever the lease (tidied once per lull).
        if quiet or not self._held or (self._tidied_at < last_pass and now - last_pass >= TIDY_QUIET):
            self._tidied_at = now
            self._tidy(force=True)

    def _tidy_timeout(self, timeout: float) -> float:
        """`timeout`, shortened to wake for the tidy-up a lull is due (see `_release_idle_locks`)."""
        last_pass = max(self._held.values(), default=0.0)
        if self._held and self._tidied_at < last_pass:
            return min(timeout, max(0.0, last_pass + TIDY_QUIET - time.monotonic()))
        return timeout

    def _tidy(self, force: bool = False) -> None:
        """Delete what is consumed: events, applied results, and the ledger entries of items gone."""
        self._delete_consumed_events(force)
        self._delete_applied_results(force)
        for reports in self._report_queues.values():
            reports.flush(force)
            if force:
                reports.take_records(set())  # quiet: no save is coming soon to carry them

    def _delete_applied_results(self, force: bool = False) -> None:
        """Delete applied results, in one transaction once RESULTS_BATCH are due (or when `force`)."""
        due = [ident for ident, (_, deleted) in self._results_done.items() if not deleted]
        if not due or (len(due) < RESULTS_BATCH and not force):
            return
        delete_all(self.zk.client, [self._results_done[i][0] for i in due])
        for ident in due:
            self._results_done[ident] = (self._results_done[ident][0], True)

    def _release(self, name: str) -> None:
        self._held.pop(name, None)
        self._fresh.discard(name)
        lock = self._locks.get(name)
        try:
            if lock is not None:
                lock.release()
        except Exception:
            log.debug("releasing the %s lock failed", name, exc_info=True)

    def _release_locks(self) -> None:
        for name in list(self._held):
            self._release(name)
