"""The merger service: takes merge requests from ZooKeeper, merges them with a worker pool, writes results.

Wakes on a children watch of /merger/requests.  Each request is claimed through the job queue
(gatekeeper.zk.jobs: a lock at /locks/merge/<id>, so a merger that dies releases it with its session); a request
claimed by another merger is watched (a watch on its lock, no polling) and taken over when that lock goes away
without a result.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from kazoo.exceptions import KazooException
from kazoo.recipe.watchers import ChildrenWatch

from gatekeeper.merger.cache import RepoCache
from gatekeeper.merger.speculative import MergerCounters, SpeculativeMerger
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.components import Component
from gatekeeper.zk.jobs import ClaimWatch
from gatekeeper.zk.merges import MergeResult, merge_queue

log = logging.getLogger("gatekeeper.merger")

_STOP = object()


class MergerService:
    """One merger process: a repo cache, `workers` threads, and its registration as a 'merger' component."""

    def __init__(
        self,
        zk: ZKClient,
        git_dir: str,
        *,
        workers: int = 2,
        ssh: str | None = None,
        url_for_project: Callable[[str], str | None] | None = None,
    ) -> None:
        self.zk = zk
        self.cache = RepoCache(git_dir, ssh=ssh)
        self.merger = SpeculativeMerger(self.cache, url_for_project)
        self.workers = workers
        self.queue = merge_queue(zk)
        self.component = Component(zk, "merger", extra={"workers": workers})
        self._queue: queue.Queue = queue.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._claims: ClaimWatch | None = None
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch: ChildrenWatch | None = None
        self.lock_waits = 0  # requests found locked by another merger (then watched until released)

    @property
    def ident(self) -> str:
        return self.component.info.ident

    @property
    def counters(self) -> MergerCounters:
        return self.merger.counters

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> MergerService:
        self.cache.open()
        self._stopping.clear()
        for n in range(self.workers):
            t = threading.Thread(target=self._work, name=f"merger-worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        self.queue.ensure_paths()
        self._claims = ClaimWatch(self.queue, self._enqueue)
        self._watch = ChildrenWatch(self.zk.client, self.queue.kind.requests, self._on_requests)
        self.component.register("running")
        log.info("merger %s started with %d workers, cache %s", self.ident, self.workers, self.cache.root)
        return self

    def stop(self) -> None:
        """Stop taking requests, let running merges finish, and unregister."""
        self._stopping.set()
        for _ in range(self.workers):
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(30)
        self._threads = []
        if self._claims is not None:
            self._claims.close()
        try:
            self.component.unregister()
        except KazooException:
            log.warning("merger %s could not unregister (ZooKeeper unreachable)", self.ident)
        self.cache.close()
        log.info("merger %s stopped", self.ident)

    # -- finding work -----------------------------------------------------------------------------------------
    def _on_requests(self, children: list[str]) -> bool | None:
        if self._stopping.is_set():
            return False  # ends the watch
        for ident in sorted(children):
            self._enqueue(ident)
        return None

    def _enqueue(self, ident: str) -> None:
        with self._guard:
            if ident in self._queued or ident in self._active or self._stopping.is_set():
                return
            self._queued.add(ident)
        self._queue.put(ident)

    # -- doing work -------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            ident = self._queue.get()
            if ident is _STOP:
                return
            with self._guard:
                self._queued.discard(ident)
                self._active.add(ident)
            locked_elsewhere = False
            try:
                locked_elsewhere = self._handle(ident)
            except Exception:
                log.exception("merge request %s failed in merger %s", ident, self.ident)
            finally:
                with self._guard:
                    self._active.discard(ident)
            if locked_elsewhere and not self._stopping.is_set():
                self._wait_for_claimer(ident)

    def _wait_for_claimer(self, ident: str) -> None:
        """Come back to `ident` when the merger holding it lets it go (done, or dead with its session)."""
        assert self._claims is not None
        try:
            if not self._claims.watch(ident):
                self._enqueue(ident)  # let go of meanwhile
        except KazooException:
            log.debug("could not watch the lock of merge %s; watched again on reconnection", ident, exc_info=True)

    def _handle(self, ident: str) -> bool:
        """Claim, merge and complete one request; True when another merger holds it."""
        lock = self.queue.lock(ident, self.ident)
        if lock is None:
            self.lock_waits += 1
            return True
        try:
            request = self.queue.read(ident)
            if request is None:
                return False  # done by another merger already
            started = time.monotonic()
            try:
                result = self.merger.merge(request)
            except Exception as exc:  # a bug must still answer the scheduler, or the item waits forever
                log.exception("[%s %s] merger error", request.pipeline, request.item or ident)
                result = MergeResult(id=request.id, item=request.item, pipeline=request.pipeline,
                                     message=f"merger error: {type(exc).__name__}: {exc}")
            result.id = ident
            result.merger = self.ident
            result.elapsed = time.monotonic() - started
            self.queue.complete(result, lock)
            return False
        finally:
            try:
                self.queue.release(ident, lock)
            except KazooException:
                log.debug("releasing the lock of merge %s failed", ident, exc_info=True)
