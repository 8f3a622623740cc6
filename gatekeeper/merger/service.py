"""The merger service: takes merge requests from ZooKeeper, merges them with a worker pool, writes results.

Wakes on a children watch of /merger/requests.  Each request is claimed through the job queue
(gatekeeper.zk.jobs: a lock at /locks/merge/<id>, so a merger that dies releases it with its session); a request
claimed by another merger is watched (a watch on its lock, no polling) and taken over when that lock goes away
without a result.

New requests are read as they arrive, and the changes they need are fetched together, one fetch per project for
a whole batch.  A request made while the one ahead of it was still pending (`after`) waits here for that one's
result, its base, instead of the scheduler waiting for it: a queue's merges follow one another with no round
trip between them.  Such a request is locked while it waits, so that its turn needs no lock and no look.

A claim whose handling ZooKeeper drops midway (ConnectionLoss, the session living on) is kept, not let go: its
lock outlives the connection, so nobody else would take the request.  It is handled again once ZooKeeper answers,
its merge not redone when the result is known, and let go of when the session, and with it the lock, was lost.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable

from kazoo.exceptions import ConnectionLoss, KazooException, NoNodeError, SessionExpiredError
from kazoo.recipe.watchers import ChildrenWatch

from gatekeeper.merger.cache import RepoCache
from gatekeeper.merger.speculative import MergerCounters, SpeculativeMerger
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.components import Component
from gatekeeper.zk.jobs import ClaimWatch
from gatekeeper.zk.merges import ChangeSpec, MergeRequest, MergeResult, merge_queue

log = logging.getLogger("gatekeeper.merger")

_STOP = object()
KEPT_RESULTS = 512  # results kept in memory as bases of requests made after them
RETRY_KEPT_CLAIM = 1.0  # seconds between tries of a claim whose handling ZooKeeper dropped


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
        self._intake: queue.Queue = queue.Queue()  # batches of request ids, read and prefetched before work
        self._requests: dict[str, MergeRequest] = {}  # read, not yet done
        self._waiting: dict[str, list[str]] = {}  # request id -> requests whose base is its result
        self._results: collections.OrderedDict[str, MergeResult] = collections.OrderedDict()
        self._locked: dict[str, object] = {}  # request id -> its lock, taken while it waits for its base
        self._locking: set[str] = set()  # requests whose lock the intake is taking
        self._kept: dict[str, object] = {}  # request id -> its lock: claimed, ZooKeeper failed us handling it
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._claims: ClaimWatch | None = None
        self._guard = threading.Lock()
        self._locks_taken = threading.Condition(self._guard)
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

    @property
    def kept_claims(self) -> list[str]:
        """The requests claimed here whose handling ZooKeeper dropped, waiting for it to answer again."""
        with self._guard:
            return sorted(self._kept)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> MergerService:
        self.cache.open()
        self._stopping.clear()
        for n in range(self.workers):
            t = threading.Thread(target=self._work, name=f"merger-worker-{n}", daemon=True)
            t.start()
            self._threads.append(t)
        intake = threading.Thread(target=self._read_loop, name="merger-intake", daemon=True)
        intake.start()
        self._threads.append(intake)
        self.queue.ensure_paths()
        self._claims = ClaimWatch(self.queue, self._enqueue)
        self._watch = ChildrenWatch(self.zk.client, self.queue.kind.requests, self._on_requests)
        self.component.register("running")
        log.info("merger %s started with %d workers, cache %s", self.ident, self.workers, self.cache.root)
        return self

    def stop(self) -> None:
        """Stop taking requests, let running merges finish, and unregister."""
        self._stopping.set()
        self._intake.put(_STOP)
        for _ in range(self.workers):
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(30)
        self._threads = []
        with self._guard:
            locked, self._locked = self._locked, {}
            locked.update(self._kept)
            self._kept = {}
        for ident, lock in locked.items():
            self._release(ident, lock)
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
        self._enqueue(*sorted(children))
        return None

    def _enqueue(self, *idents: str) -> None:
        with self._guard:
            fresh = [i for i in idents if i not in self._queued and i not in self._active and i not in self._kept]
            if not fresh or self._stopping.is_set():
                return
            self._queued.update(fresh)
        self._intake.put(fresh)

    def _read_loop(self) -> None:
        """Read each batch of new requests, fetch what they need at once, and hand them to the workers, each
        request made after another one still here behind that one."""
        while True:
            batch = self._intake.get()
            if batch is _STOP:
                return
            try:
                self._read(batch)
            except Exception:
                log.exception("reading merge requests failed in merger %s", self.ident)
            ready, parked = [], []
            with self._guard:
                for ident in batch:
                    after = self._requests[ident].after if ident in self._requests else ""
                    if after and after in self._requests and after not in self._results:
                        self._waiting.setdefault(after, []).append(ident)
                        parked.append(ident)
                    else:
                        ready.append(ident)
            for ident in ready:
                self._queue.put(ident)
            for ident in parked:  # locked now, while the ones ahead are merged: not on the way of each merge
                if self._stopping.is_set():
                    break
                try:
                    self._lock_ahead(ident)
                except Exception:
                    log.debug("locking merge %s ahead failed; it is locked when its turn comes", ident, exc_info=True)

    def _read(self, batch: list[str]) -> None:
        unread = [i for i in batch if i not in self._requests]
        pending = [(i, self.zk.client.get_async(self.queue.kind.request_path(i))) for i in unread]
        wanted: dict[str, tuple[str, list[ChangeSpec]]] = {}  # project -> (url, changes)
        for ident, result in pending:
            try:
                raw, _ = result.get()
            except NoNodeError:
                continue  # done or withdrawn already
            request = MergeRequest.from_bytes(raw)
            with self._guard:
                self._requests[ident] = request
            for data in request.changes:
                change = ChangeSpec.from_dict(data)
                if change.url and change.ref:
                    wanted.setdefault(change.project, (change.url, []))[1].append(change)
        for project, (url, changes) in wanted.items():
            try:
                self.merger.prefetch(project, url, changes)
            except Exception as exc:  # each merge fetches what is still missing, and reports a failure itself
                log.info("prefetching %d change(s) of %s failed: %s", len(changes), project, exc)

    def _lock_ahead(self, ident: str) -> None:
        """Take the lock of a request waiting for its base; once locked here, it exists until this merger
        completes it (nobody else may), so its turn needs no lock and no look."""
        with self._guard:
            if self._stopping.is_set() or not any(ident in waiting for waiting in self._waiting.values()):
                return  # its turn came already
            self._locking.add(ident)  # its turn waits for this lock (`_handle`)
        lock = None
        try:
            lock = self.queue.lock(ident, self.ident)
            if lock is not None and not self.queue.exists(ident):
                self._release(ident, lock)
                lock = None
        finally:
            with self._guard:
                self._locking.discard(ident)
                if lock is not None:
                    self._locked[ident] = lock
                self._locks_taken.notify_all()

    def _release_waiting(self, ident: str) -> None:
        """The requests whose base is `ident`'s result go to the workers (its result is known, or never here)."""
        with self._guard:
            self._requests.pop(ident, None)
            waiting = self._waiting.pop(ident, [])
        for other in waiting:
            self._queue.put(other)

    def _base_of(self, request: MergeRequest) -> tuple[str, MergeResult | None]:
        """For a request made after another one: ("ok"|"failed"|"gone", that one's result), or ("waiting", None)
        while another merger still works on it."""
        after = request.after
        with self._guard:
            known = self._results.get(after)
        if known is None:
            known = self.queue.result(after, delete=False)
        if known is None:
            if not self.queue.exists(after):
                return "gone", None
            with self._guard:
                waiting = self._waiting.setdefault(after, [])
                if request.id not in waiting:
                    waiting.append(request.id)
            self._wait_for_claimer(after)  # when its claimer lets go, it is looked at, and this one with it
            return "waiting", None
        return ("ok" if known.ok else "failed"), known

    # -- doing work -------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            ident = self._queue.get()
            if ident is _STOP:
                return
            with self._guard:
                self._queued.discard(ident)
                self._active.add(ident)
            status = "done"
            try:
                status = self._handle(ident)
            except Exception:
                log.exception("merge request %s failed in merger %s", ident, self.ident)
            finally:
                with self._guard:
                    self._active.discard(ident)
            if status not in ("waiting", "kept", "lost"):
                self._release_waiting(ident)
            if status == "elsewhere" and not self._stopping.is_set():
                self._wait_for_claimer(ident)
            if status == "lost":
                self._enqueue(ident)  # anyone's again, ours too

    def _wait_for_claimer(self, ident: str) -> None:
        """Come back to `ident` when the merger holding it lets it go (done, or dead with its session)."""
        assert self._claims is not None
        try:
            if not self._claims.watch(ident):
                self._enqueue(ident)  # let go of meanwhile
        except KazooException:
            log.debug("could not watch the lock of merge %s; watched again on reconnection", ident, exc_info=True)

    def _release(self, ident: str, lock) -> None:
        try:
            self.queue.release(ident, lock)
        except KazooException:
            log.debug("releasing the lock of merge %s failed", ident, exc_info=True)

    def _handle(self, ident: str) -> str:
        """Claim, merge and complete one request: "done", or "elsewhere" when another merger holds it, or
        "waiting" when its base is another merger's request still pending, or "kept" when ZooKeeper failed us
        midway (the claim is kept, and tried again), or "lost" when a kept claim went with the session."""
        with self._guard:
            self._locks_taken.wait_for(lambda: ident not in self._locking, timeout=30)
            kept = self._kept.pop(ident, None)
            lock = kept or self._locked.pop(ident, None)  # taken ahead: the request is there and ours
        looked = lock is not None
        if lock is None:
            lock = self.queue.lock(ident, self.ident)
        if lock is None:
            self.lock_waits += 1
            return "elsewhere"
        try:
            status = self._still_ours(ident, lock) if kept is not None else "ours"
            if status == "ours":
                status = self._merge_and_complete(ident, lock, looked)
            self.queue.release(ident, lock)  # nothing left to do when `complete` released it
            return status
        except (ConnectionLoss, SessionExpiredError) as exc:
            self._keep(ident, lock, exc, again=kept is not None)
            return "kept"
        except BaseException:
            self._release(ident, lock)
            raise

    def _still_ours(self, ident: str, lock) -> str:
        """For a claim kept through a ZooKeeper failure: "ours" while our session still holds its lock, "done"
        when the request is gone, "lost" when the lock went with an expired session (the request is anyone's)."""
        if not self.queue.exists(ident):
            return "done"  # completed (by our own transaction, whose answer was lost), or cancelled
        node = self.zk.client.exists(f"{lock.path}/{lock.node}") if lock.node else None
        if node is not None and node.ephemeralOwner == self.zk.client.client_id[0]:
            return "ours"
        log.info("merge %s: our claim was lost with the ZooKeeper session; the request is anyone's again", ident)
        return "lost"

    def _keep(self, ident: str, lock, exc: Exception, again: bool) -> None:
        """Keep a claim whose handling ZooKeeper dropped (the session, and with it the lock, usually outlives a
        lost connection: letting go is not possible, and nobody else would take it), and try it again later."""
        if again:
            log.debug("merge %s: ZooKeeper still fails (%s); trying again", ident, type(exc).__name__)
        else:
            log.warning("merge %s: ZooKeeper failed while handling it (%s); keeping the claim and trying again",
                        ident, type(exc).__name__)
        with self._guard:
            self._kept[ident] = lock
        retry = threading.Timer(RETRY_KEPT_CLAIM, self._retry_kept, args=(ident,))
        retry.daemon = True
        retry.start()

    def _retry_kept(self, ident: str) -> None:
        with self._guard:
            if self._stopping.is_set() or ident not in self._kept:
                return
            self._queued.add(ident)
        self._queue.put(ident)

    def _merge_and_complete(self, ident: str, lock, looked: bool) -> str:
        """Merge a request we hold the lock of, and publish its result: "done", or "waiting" for its base."""
        with self._guard:
            request = self._requests.get(ident)  # read on arrival
        if request is not None and not looked and not self.queue.exists(ident):
            request = None  # completed by another merger, which released the lock since
        elif request is None:
            request = self.queue.read(ident)
        if request is None:
            return "done"  # by another merger already
        with self._guard:
            known = self._results.get(ident)
        if known is not None:  # merged here before ZooKeeper failed us: only its completion is left
            self.queue.complete(known, lock)
            return "done"
        started = time.monotonic()
        base = None
        if request.after and not request.base:
            found, base = self._base_of(request)
            if found == "waiting":
                return "waiting"
        try:
            if request.after and not request.base and (base is None or not base.ok):
                why = "could not be merged" if base is not None else "is no longer known"
                result = MergeResult(id=request.id, item=request.item, pipeline=request.pipeline,
                                     message=f"merger error: the merge of the item ahead ({request.after}) {why}")
            else:
                if base is not None:
                    request.base = base.repo_state
                result = self.merger.merge(request)
        except Exception as exc:  # a bug must still answer the scheduler, or the item waits forever
            log.exception("[%s %s] merger error", request.pipeline, request.item or ident)
            result = MergeResult(id=request.id, item=request.item, pipeline=request.pipeline,
                                 message=f"merger error: {type(exc).__name__}: {exc}")
        result.id = ident
        result.merger = self.ident
        result.elapsed = time.monotonic() - started
        with self._guard:
            self._results[ident] = result
            while len(self._results) > KEPT_RESULTS:
                self._results.popitem(last=False)
        if result.ok:
            # The merge behind it may start while this result is written; a failed one is written first, so
            # that the scheduler never sees the error behind it before its cause.
            self._release_waiting(ident)
        self.queue.complete(result, lock)
        return "done"
