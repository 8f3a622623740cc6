"""The executor service: takes build requests from ZooKeeper and runs up to `concurrency` of them at once.

Several executors share the work: each claims a request with its build lock (gatekeeper.zk.builds), highest
priority first. When a build starts, `/executor/running/<build>` (a BuildStart) records which executor runs it,
and, once the build has its node, when its job started, on which node and provider, and its live console URL: what
the status page shows of a running build. An executor that dies loses its lock (its ZooKeeper session ends) but
not that record; the other executors learn from a watch on the lock (gatekeeper.zk.jobs.ClaimWatch, no polling)
that the request is free, and the next to claim it sees that someone else started it and reports ERROR
("executor X stopped"), which the scheduler retries on a new node. A failed build's known-bug matches are recorded
under /diagnosis/signature-hits (gatekeeper.zk.signatures). A cancelled request (deleted by the scheduler) aborts
its build: the remote process group is killed, the node released, and nothing is published.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kazoo.exceptions import ConnectionLoss, KazooException, NoNodeError, SessionExpiredError

from gatekeeper.config.layout import Signature
from gatekeeper.config.store import read_layout
from gatekeeper.executor.build import BuildRunner, ExecutorSettings
from gatekeeper.executor.console import ConsoleRegistry, ConsoleServer
from gatekeeper.executor.logs import LogStore
from gatekeeper.executor.nodes import LauncherNodes, NodeSource
from gatekeeper.executor.workspace import GitCache
from gatekeeper.zk import builds, paths
from gatekeeper.zk.builds import ABORTED, ERROR, BuildRequest, BuildResult, BuildStart
from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.components import Component
from gatekeeper.zk.jobs import ClaimWatch
from gatekeeper.zk.node_records import Node
from gatekeeper.zk.signatures import SignatureHit, record_hits

log = logging.getLogger("gatekeeper.executor")


@dataclass
class RunningBuild:
    request: BuildRequest
    lock: object
    abort: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    stopping: bool = False  # aborted because this executor stops: hand the request over, publish nothing
    start: BuildStart = field(default_factory=BuildStart)  # what /executor/running/<id> says about it


class LayoutSignatures:
    """The known-bug signatures of the layout published in ZooKeeper, read again whenever a new one is published
    (a reload takes effect on the next failed build, with no restart)."""

    def __init__(self, zk: ZKClient) -> None:
        self.zk = zk
        self._version: int | None = None
        self._signatures: list[Signature] = []
        self._lock = threading.Lock()

    def __call__(self) -> list[Signature]:
        stat = self.zk.client.exists(paths.LAYOUT)
        if stat is None:
            return []
        with self._lock:
            if stat.mzxid != self._version:
                layout = read_layout(self.zk)
                self._signatures = list(layout.signatures.values()) if layout is not None else []
                self._version = stat.mzxid
            return self._signatures


class ExecutorService:
    """`start()`, `stop()`; everything else happens on its own threads."""

    def __init__(self, zk: ZKClient, settings: ExecutorSettings, log_store: LogStore,
                 url_for_project: Callable[[str], str], *, ssh: str | None = None, concurrency: int = 4,
                 nodes: NodeSource | None = None, console_host: str = "127.0.0.1", console_port: int = 0) -> None:
        self.zk = zk
        self.settings = settings
        self.concurrency = concurrency
        self.queue = builds.build_queue(zk)
        self.component = Component(zk, "executor")
        self.name = self.component.info.ident
        self.consoles = ConsoleRegistry()
        self.console_server = ConsoleServer(self.consoles, console_host, console_port)
        self.component.info.extra.update(console=self.console_server.base_url, concurrency=concurrency)
        cache = GitCache(os.path.join(settings.work_dir, "git"), url_for_project, ssh)
        self.nodes = nodes or LauncherNodes(zk, self.name)
        self.signatures = LayoutSignatures(zk)
        self.runner = BuildRunner(settings, cache, self.nodes, log_store, self.consoles, self.name, self.signatures)
        self.running: dict[str, RunningBuild] = {}
        self._unstarted: dict[str, tuple[BuildRequest, object]] = {}  # claimed; ZooKeeper failed us starting it
        self.history: collections.deque[tuple[BuildRequest, BuildResult]] = collections.deque(maxlen=500)
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._claims: ClaimWatch | None = None  # requests other executors hold: a watch says when one is free

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> ExecutorService:
        os.makedirs(self.settings.work_dir, exist_ok=True)
        self.queue.ensure_paths()
        self.zk.client.ensure_path(paths.EXECUTOR_RUNNING)
        self.console_server.start()
        self.component.register()
        self.zk.add_listener(self._on_connection)
        self._claims = ClaimWatch(self.queue, lambda ident: self._wake.set())
        self.zk.client.ChildrenWatch(self.queue.kind.requests, self._on_requests)
        self._thread = threading.Thread(target=self._loop, name=f"executor-{self.name}", daemon=True)
        self._thread.start()
        log.info("executor %s started: %d concurrent builds, live consoles on %s", self.name, self.concurrency,
                 self.console_server.base_url)
        return self

    def stop(self) -> None:
        """Stop taking builds, abort the running ones and hand their requests back (another executor reruns them)."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(30)  # no build starts after this
        if self._claims is not None:
            self._claims.close()
        with self._mutex:
            running = list(self.running.values())
        for rb in running:
            rb.stopping = True
            rb.abort.set()
        for rb in running:
            if rb.thread:
                rb.thread.join(60)
        try:
            self.zk.remove_listener(self._on_connection)
        except ValueError:
            pass
        self.component.unregister()
        self.console_server.stop()
        self.runner.log_store.flush()
        log.info("executor %s stopped", self.name)

    def watched_claims(self) -> list[str]:
        """The requests other executors hold whose locks this one watches, to take one over if its executor dies."""
        return self._claims.watching() if self._claims is not None else []

    # -- taking work --------------------------------------------------------------------------------------------
    def _on_requests(self, children: list[str]) -> bool:
        self._wake.set()
        return not self._stopping.is_set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()  # a new request, a free slot, or a request another executor let go of
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self._take_work()
            except Exception:
                log.exception("executor %s: taking build requests failed", self.name)

    def _free_slots(self) -> int:
        with self._mutex:
            return self.concurrency - len(self.running) - len(self._unstarted)

    def _take_work(self) -> None:
        self._retry_unstarted()
        if self._free_slots() <= 0:
            return
        requests = []
        assert self._claims is not None
        for ident in self.queue.pending():
            with self._mutex:
                if ident in self.running:
                    continue
            if self._claims.watch(ident):  # another executor runs it: the watch tells when it lets go
                continue
            req = self.queue.read(ident)
            if req is not None:
                requests.append(req)
        for req in sorted(requests, key=lambda r: r.sort_key):
            if self._free_slots() <= 0 or self._stopping.is_set():
                return
            claimed = self.queue.claim(req.id, self.name)
            if claimed is None:  # another executor was quicker: watch its claim, as for any other
                if not self._claims.watch(req.id) and self.queue.exists(req.id):
                    self._wake.set()  # and let go of it already
                continue
            lock, req = claimed
            self._begin(req, lock)

    def _begin(self, req: BuildRequest, lock) -> None:
        """Start a claimed request. When ZooKeeper fails us midway the claim is kept (our session, and with it
        the lock, usually outlive a lost connection) and the start is tried again once it is back."""
        try:
            if not self._report_lost(req, lock):
                self._start_build(req, lock)
        except (ConnectionLoss, SessionExpiredError) as exc:
            log.warning("[%s %s] build %s: ZooKeeper failed while starting it (%s); trying again", req.pipeline,
                        req.job, req.id, type(exc).__name__)
            with self._mutex:
                self._unstarted[req.id] = (req, lock)
            retry = threading.Timer(1.0, self._wake.set)
            retry.daemon = True
            retry.start()

    def _retry_unstarted(self) -> None:
        with self._mutex:
            pending, self._unstarted = list(self._unstarted.values()), {}
        for req, lock in pending:
            try:
                node = self.zk.client.exists(f"{lock.path}/{lock.node}") if lock.node else None
                ours = node is not None and node.ephemeralOwner == self.zk.client.client_id[0]
            except (ConnectionLoss, SessionExpiredError):
                with self._mutex:
                    self._unstarted[req.id] = (req, lock)
                continue
            if ours:
                self._begin(req, lock)
            else:  # the lock went with an expired session: the request is anyone's again
                log.info("[%s %s] build %s: our claim was lost with the session", req.pipeline, req.job, req.id)

    def _report_lost(self, req: BuildRequest, lock) -> bool:
        """A request someone else started and lost (we hold its lock now): report it for a retry."""
        result = builds.lost_build(self.zk, req, self.name)
        if result is None:
            return False
        log.warning("[%s %s] build %s: %s", req.pipeline, req.job, req.id, result.message)
        try:
            self.queue.complete(result, lock)
        finally:
            self._forget(req.id)
            self.queue.release(req.id, lock)
        return True

    def _start_record(self, req: BuildRequest) -> BuildStart:
        return BuildStart(id=req.id, executor=self.name, started=time.time(),
                          console_url=self.console_server.url(req.id), pipeline=req.pipeline, item=req.item,
                          job=req.job, attempt=req.attempt)

    def _start_build(self, req: BuildRequest, lock) -> None:
        start = self._start_record(req)
        builds.write_build_start(self.zk, start)
        rb = RunningBuild(req, lock, start=start)
        with self._mutex:
            self.running[req.id] = rb

        # cancelled by the scheduler: abort
        self.queue.watch_request(req.id, rb.abort.set, lambda: self.running.get(req.id) is rb)
        rb.thread = threading.Thread(target=self._run, args=(rb,), name=f"build-{req.id[:8]}", daemon=True)
        rb.thread.start()

    def _on_node(self, rb: RunningBuild, node: Node) -> None:
        """The build has its node and its job starts: say so, for the status page and `gatekeeper status`."""
        rb.start.start_time = time.time()
        rb.start.node = {"name": node.id, "label": node.label, "provider": node.provider, "address": node.address}
        if not rb.abort.is_set():
            builds.write_build_start(self.zk, rb.start)

    def _run(self, rb: RunningBuild) -> None:
        req = rb.request
        try:
            result = self.runner.run(req, rb.abort, on_start=lambda node: self._on_node(rb, node))
            self.history.append((req, result))
            if result.signatures and not rb.stopping:
                self._record_hits(req, result)
            if rb.stopping:
                log.info("build %s handed back: executor %s is stopping", req.id, self.name)
            elif result.result == ABORTED:
                log.info("build %s aborted: its request was cancelled", req.id)
            elif not self.queue.complete(result, rb.lock):
                log.info("build %s finished %s after its request was cancelled", req.id, result.result)
        except Exception:
            log.exception("build %s failed in the executor", req.id)
            if not rb.stopping:
                now = time.time()
                self.queue.complete(BuildResult(
                    id=req.id, pipeline=req.pipeline, item=req.item, job=req.job, result=ERROR,
                    message=f"executor {self.name} failed running the build", executor=self.name,
                    attempt=req.attempt, start_time=now, end_time=now), rb.lock)
        finally:
            self._forget(req.id)
            with self._mutex:
                self.running.pop(req.id, None)
            try:
                self.queue.release(req.id, rb.lock)
            except Exception:
                log.warning("could not release the lock of build %s", req.id, exc_info=True)
            self._wake.set()

    def _record_hits(self, req: BuildRequest, result: BuildResult) -> None:
        change = req.change or {}
        key = f"{change.get('number')},{change.get('patchset')}" if change.get("number") else ""
        hits = [SignatureHit(signature=s["id"], title=s.get("title", ""), url=s.get("url", ""), build=req.id,
                             job=req.job, pipeline=req.pipeline, change=key, project=change.get("project", ""),
                             provider=(result.node or {}).get("provider", ""), log_url=result.log_url)
                for s in result.signatures]
        try:
            record_hits(self.zk, hits)
        except KazooException as exc:
            log.warning("build %s: could not record its known-bug hits: %s", req.id, exc)

    def _forget(self, ident: str) -> None:
        try:
            self.zk.client.delete(paths.executor_running(ident))
        except NoNodeError:
            pass
        except KazooException as exc:
            log.warning("could not remove the running record of build %s: %s", ident, exc)

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event in (ConnectionEvent.CONNECTED, ConnectionEvent.RECONNECTED):
            self._wake.set()  # look again: what changed while we were away may not change the requests' list
            return
        if event is not ConnectionEvent.LOST:
            return
        # our build locks are gone with the session: another executor reports these builds; stop them here
        with self._mutex:
            running = list(self.running.values())
            self._unstarted.clear()
        for rb in running:
            log.warning("build %s: ZooKeeper session lost; aborting it here", rb.request.id)
            rb.stopping = True
            rb.abort.set()
