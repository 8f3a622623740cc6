"""One request queue for every kind of remote work (merges, builds): submit, claim, complete, cancel, result.

The protocol, the same for each kind (its paths are given by a `JobKind`):

- A request is a record at `<requests>/<id>`; its priority travels in the record (`sort_key`, lower first), so a
  submitter may write it in any transaction of its own.  The parent of its lock, `/locks/<kind>/<id>`, may be
  created with it so that taking it costs less.
- A worker claims a request with a kazoo lock at `/locks/<kind>/<id>` (an ephemeral node: held for as long as the
  worker's session lives), then reads it; a request that is gone (completed or cancelled) cannot be claimed.
- `complete` publishes the result at `<results>/<id>` and deletes the request in one transaction: a result is
  published at most once, and never for a cancelled request; given the claim's lock, the same transaction
  releases it.  `cancel` deletes the request; the submitter reads the result (`result`) when `watch_results`
  says it is there.
- A worker that dies loses its lock with its session, without a result.  `ClaimWatch` tells the other workers,
  from a watch on the lock node (no polling), when such a request is free again; what happens to it then is the
  kind's own rule (a merge is simply done again; a build that was started is reported lost, so that its retry
  counts as an attempt).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kazoo.exceptions import (
    KazooException,
    LockTimeout,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.recipe.lock import Lock
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from gatekeeper.zk import paths
from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.record import Record

log = logging.getLogger("gatekeeper.zk.jobs")


RequestT = TypeVar("RequestT", bound=Record)
ResultT = TypeVar("ResultT", bound=Record)


@dataclass(frozen=True)
class JobKind(Generic[RequestT, ResultT]):
    """Where one kind of work lives in ZooKeeper, and the records it travels as."""

    name: str  # the lock directory: /locks/<name>/<id>
    requests: str
    results: str
    request_type: type[RequestT]
    result_type: type[ResultT]

    def request_path(self, ident: str) -> str:
        return f"{self.requests}/{ident}"

    def result_path(self, ident: str) -> str:
        return f"{self.results}/{ident}"

    def lock_path(self, ident: str) -> str:
        return paths.lock(self.name, ident)

    def submit_writes(self, request: RequestT) -> list[tuple[str, bytes]]:
        """The znodes a submit creates, as (path, data): the request, and the parent of the lock its taker
        will hold (so that taking it costs a request less). A submitter that writes them in a transaction of its
        own (the scheduler, with the pipeline state that names the request) creates exactly these."""
        return [(self.request_path(request.id), request.to_bytes()), (self.lock_path(request.id), b"")]


class JobQueue(Generic[RequestT, ResultT]):
    """The requests and results of one kind of work, for the submitter and the workers alike."""

    def __init__(self, zk: ZKClient, kind: JobKind[RequestT, ResultT]) -> None:
        self.zk = zk
        self.kind = kind

    def ensure_paths(self) -> None:
        """The parents every party watches; idempotent."""
        self.zk.client.ensure_path(self.kind.requests)
        self.zk.client.ensure_path(self.kind.results)

    # -- submitting -------------------------------------------------------------------------------------------
    def submit(self, request: RequestT) -> str:
        self.ensure_paths()
        self.zk.client.ensure_path(paths.lock(self.kind.name))
        writes = self.kind.submit_writes(request)
        while True:
            tx = self.zk.client.transaction()
            for path, data in writes:
                tx.create(path, data)
            failed = [(n, r) for n, r in enumerate(tx.commit())
                      if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
            if not failed:
                return request.id
            n, error = failed[0]
            if n == 0 or not isinstance(error, NodeExistsError):
                raise error
            writes = writes[:1]  # the lock's parent is there already (a contender made it): the request alone

    def cancel(self, ident: str) -> bool:
        """Withdraw a request, claimed or not; False when it had already completed (or was cancelled)."""
        try:
            self.zk.client.delete(self.kind.request_path(ident))
        except NoNodeError:
            return False
        return True

    def finished(self) -> list[str]:
        """The ids of the published results not yet read away."""
        return self._children(self.kind.results)

    def result(self, ident: str, delete: bool = True) -> ResultT | None:
        """The result of request `ident`, or None before it completes; read away unless `delete` is False."""
        try:
            raw, _ = self.zk.client.get(self.kind.result_path(ident))
        except NoNodeError:
            return None
        if delete:
            try:
                self.zk.client.delete(self.kind.result_path(ident))
            except NoNodeError:
                pass
        return self.kind.result_type.from_bytes(raw)

    def watch_results(self, on_results: Callable[[list[str]], None]) -> ChildrenWatch:
        """Call `on_results(ids)` with the published results now and whenever one is published or read away."""
        self.zk.client.ensure_path(self.kind.results)

        def fired(children: list[str]) -> None:
            on_results(sorted(children))

        return ChildrenWatch(self.zk.client, self.kind.results, fired)

    # -- working ----------------------------------------------------------------------------------------------
    def pending(self) -> list[str]:
        """The ids of the requests not completed or cancelled, claimed or not (in id order)."""
        return self._children(self.kind.requests)

    def read(self, ident: str) -> RequestT | None:
        try:
            raw, _ = self.zk.client.get(self.kind.request_path(ident))
        except NoNodeError:
            return None
        return self.kind.request_type.from_bytes(raw)

    def exists(self, ident: str) -> bool:
        """False once the request was cancelled (or completed): a running worker checks this to abort."""
        return self.zk.client.exists(self.kind.request_path(ident)) is not None

    def watch_request(self, ident: str, on_gone: Callable[[], None], active: Callable[[], bool]) -> None:
        """Call `on_gone()` once when request `ident` is deleted (cancelled); the watch ends when `active()` no
        longer holds (the worker is done with it)."""

        def fired(data: bytes | None, stat: object, event: WatchedEvent | None = None) -> bool:
            if not active():
                return False
            if stat is None:
                on_gone()
                return False
            return True

        DataWatch(self.zk.client, self.kind.request_path(ident), fired)

    def holders(self, ident: str) -> list[str]:
        """The lock nodes of request `ident`: its claimer first, then any contender taking a look."""
        return self._children(self.kind.lock_path(ident))

    def claim(self, ident: str, identifier: str = "") -> tuple[Lock, RequestT] | None:
        """Lock a request for this worker and read it; None when another worker holds it, or it is gone.

        The worker releases the claim (`release`) after `complete`, or to hand the request back.
        """
        lock = self.lock(ident, identifier)
        if lock is None:
            return None
        request = self.read(ident)
        if request is None:  # completed or cancelled before we got the lock
            self.release(ident, lock)
            return None
        return lock, request

    def lock(self, ident: str, identifier: str = "") -> Lock | None:
        """The first half of `claim`: the request's lock, or None when another worker holds it."""
        path = self.kind.lock_path(ident)
        lock = self.zk.client.Lock(path, identifier)
        # The submitter writes the lock's parent with the request: do not ask whether it is there (a request
        # fewer per claim); where it is not (a request handed back, or written without it), ask after all.
        lock.assured_path = True
        try:
            return lock if lock.acquire(blocking=False) else None
        except NoNodeError:
            lock = self.zk.client.Lock(path, identifier)
        try:
            return lock if lock.acquire(blocking=False) else None
        except (LockTimeout, NoNodeError):
            return None  # the lock node vanished under us: the request was just completed

    def release(self, ident: str, lock: Lock) -> None:
        """Give up a claim and remove the lock's parent (left in place while another contender holds it);
        nothing to do after `complete` released it."""
        if not lock.is_acquired:
            return
        try:
            lock.release()
            self.zk.client.delete(self.kind.lock_path(ident))
        except (NoNodeError, NotEmptyError):
            pass

    def complete(self, result: ResultT, lock: Lock | None = None) -> bool:
        """Publish the result and remove the request, in one transaction; False when the request was gone
        (cancelled, or completed by another worker), and nothing was published.

        Given the claim's `lock`, the same transaction releases it and removes its parent, unless another
        worker is looking at it (then the parent stays), or the lock was lost with a session (then the result
        is published all the same: only one is ever published).
        """
        held = lock is not None and lock.is_acquired and lock.node
        release = [f"{lock.path}/{lock.node}", lock.path] if held else []
        while True:
            tx = self.zk.client.transaction()
            tx.delete(self.kind.request_path(result.id))
            tx.create(self.kind.result_path(result.id), result.to_bytes())
            for path in release:
                tx.delete(path)
            failed = [(n, r) for n, r in enumerate(tx.commit())
                      if isinstance(r, Exception) and not isinstance(r, (RolledBackError, RuntimeInconsistency))]
            if not failed:
                if release:
                    lock.is_acquired, lock.node = False, None  # released by the transaction
                return True
            n, error = failed[0]
            if n < 2:
                if isinstance(error, (NoNodeError, NodeExistsError)):
                    return False
                raise error
            release = release[:1] if n == 3 else []  # the parent has a contender; or our lock is gone

    def _children(self, path: str) -> list[str]:
        try:
            return sorted(self.zk.client.get_children(path))
        except NoNodeError:
            return []


class ClaimWatch:
    """Tells a worker when a request claimed by another worker is free again, from a watch on its lock node.

    `watch(id)` looks at the lock once and, while someone holds it, leaves a watch there; when the last holder
    goes (it finished, handed the request back, or died and its session took its ephemeral lock node with it)
    and the request is still there, `on_free(id)` is called once, from a ZooKeeper thread.  Nothing is read
    again until the lock changes.  Watches dropped with a lost connection are set again on reconnection.
    """

    def __init__(self, queue: JobQueue, on_free: Callable[[str], None]) -> None:
        self.queue = queue
        self.on_free = on_free
        self._watchers: dict[str, Callable[[WatchedEvent], None]] = {}
        self._guard = threading.Lock()
        self._closed = False
        queue.zk.add_listener(self._on_connection)

    def watching(self) -> list[str]:
        with self._guard:
            return sorted(self._watchers)

    def watch(self, ident: str) -> bool:
        """True when another worker holds request `ident` (it is watched until free); False when nobody does."""
        with self._guard:
            if self._closed:
                return False
            watcher = self._watchers.get(ident)
            if watcher is None:
                watcher = self._watchers[ident] = lambda event: self._fired(ident, event)
        try:
            holders = self.queue.zk.client.get_children(self.queue.kind.lock_path(ident), watch=watcher)
        except NoNodeError:
            holders = []
        if not holders:
            self.forget(ident)
        return bool(holders)

    def forget(self, ident: str) -> None:
        with self._guard:
            self._watchers.pop(ident, None)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            self._watchers.clear()
        try:
            self.queue.zk.remove_listener(self._on_connection)
        except ValueError:
            pass

    def _fired(self, ident: str, event: WatchedEvent) -> None:
        if event.type == EventType.NONE:
            return  # the connection dropped, and every watch with it: `_on_connection` sets them again
        with self._guard:
            if ident not in self._watchers:
                return
        try:
            self._check(ident)
        except KazooException:
            log.warning("could not look at the lock of %s request %s again", self.queue.kind.name, ident,
                        exc_info=True)

    def _check(self, ident: str) -> None:
        if not self.queue.exists(ident):  # completed or cancelled: the usual end of a claim
            self.forget(ident)
            return
        if not self.watch(ident):
            log.info("%s request %s is free again: its claimer let it go without a result", self.queue.kind.name,
                     ident)
            self.on_free(ident)

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event not in (ConnectionEvent.CONNECTED, ConnectionEvent.RECONNECTED):
            return
        for ident in self.watching():
            try:
                self._check(ident)
            except KazooException:
                log.warning("could not watch the lock of %s request %s again", self.queue.kind.name, ident,
                            exc_info=True)
