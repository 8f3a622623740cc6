"""The launcher service: fulfils node requests from ready nodes or by launching, keeps min-ready, cleans up.

Everything that decides (which request gets which node, what to launch) runs in one thread, woken by ZooKeeper
watches and by its own workers; nothing in that thread waits on a cloud. Coordination between launchers is
through ZooKeeper: a kazoo Lock per provider (only its holder launches on it), atomic multi-op transactions for
hand-out (remove the ready-index entry + mark the node + fulfil the request, all or nothing), and versioned
writes on requests.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from kazoo.protocol.states import Callback
from kazoo.recipe.lock import Lock
from kazoo.recipe.watchers import ChildrenWatch

from gatekeeper.config.layout import NodePool, Provider
from gatekeeper.launcher import model
from gatekeeper.launcher.access import AccessKeeper
from gatekeeper.launcher.assigning import Assigning
from gatekeeper.launcher.events import Answer, Call, Event, LaunchResult, ServerDeleted, Stop, Wake
from gatekeeper.launcher.launching import Launching, Plan
from gatekeeper.launcher.lifecycle import NodeLifecycle
from gatekeeper.launcher.model import Node, NodeRequest, ready_entry
from gatekeeper.launcher.provider_manager import ProviderManager
from gatekeeper.launcher.providers import make_adapter
from gatekeeper.launcher.providers.base import ProviderAdapter
from gatekeeper.launcher.ready_index import ReadyIndex
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.components import Component
from gatekeeper.zk.nodes import NodeStore, UnreadableRecord
from gatekeeper.zk.tree_watch import TreeWatch

log = logging.getLogger("gatekeeper.launcher")


class Launcher(Assigning, Launching):
    """One launcher process: serves the providers of the layout's node-pool section whose locks it holds."""

    def __init__(self, zk: ZKClient, nodepool: NodePool, *, ssh_key: str, clouds_yaml: str | None = None,
                 cleanup_interval: float = 3600.0, owner: str = "gatekeeper", poll_interval: float = 0.2,
                 delete_verify_timeout: float = 30.0, image_check_interval: float = 60.0,
                 adapter_factory: Callable[[Provider], ProviderAdapter] | None = None,
                 backoff: tuple[float, float] = (5.0, 300.0)) -> None:
        self.zk = zk
        self.kz = zk.client
        self.store = NodeStore(zk)
        self.nodepool = nodepool
        self.ssh_key = ssh_key
        self.clouds_yaml = clouds_yaml
        self.cleanup_interval = cleanup_interval
        self.owner = owner
        self.poll_interval = poll_interval
        self.delete_verify_timeout = delete_verify_timeout
        self.image_check_interval = image_check_interval
        self.backoff = backoff  # a failing provider's first backoff and its cap, in seconds
        self.adapter_factory = adapter_factory or (lambda p: make_adapter(p, clouds_yaml, owner))
        self.component = Component(zk, "launcher")
        self.ident = self.component.info.ident
        self._events: queue.Queue[Event] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.managers: dict[str, ProviderManager] = {}
        self._provider_locks: dict[str, Lock] = {}
        # caches, touched by the main loop only
        self.requests: dict[str, tuple[NodeRequest, int]] = {}
        self.index = ReadyIndex(self.store, self._after)  # the ready index as this launcher knows it
        self._batch_started = 0.0  # when the main loop took the batch of events it is handling (monotonic)
        self._busy: set[str] = set()  # requests with a write of ours in flight: decided on again once answered
        self._gone_requests: dict[str, None] = {}  # deleted requests, the latest 1000: a late read ignores them
        self.live_providers: set[str] = set()
        self.live_provider_labels: dict[str, set[str]] = {}  # live provider -> labels it serves
        self.live_launchers: set[str] = set()
        self._launchers_known = False  # no orphan judgement before the first launcher listing arrived
        self.plans: dict[str, Plan] = {}
        self._tree_watches: list[TreeWatch] = []
        self._new_requests: dict[str, None] = {}  # named by a listing since the last pass: to read
        self._released_seen: set[str] = set()
        self.builders: list = []
        self.handed_out = 0
        self.access_keeper: AccessKeeper | None = None
        self.nodes = NodeLifecycle(self.store, self.post, self.index, self._after)
        self.foreign_unable: set[str] = set()  # other launchers' providers that cannot launch now
        # other launchers' providers -> labels they cannot launch (their cloud has no flavor for them)
        self.foreign_unlaunchable: dict[str, set[str]] = {}
        self.foreign_full: set[str] = set()  # other launchers' providers at their max-servers or quota
        self.waiting_for_room: set[str] = set()  # providers a request waits on for room: min-ready leaves it be
        self.paused: set[str] = set()  # providers a request waits on in this pass: later (worse-priority) ones wait
        self._reread: set[str] = set()  # nodes read afresh in this pass (their ready entry and record disagreed)
        self._foreign_nodes: dict[str | None, list] = {}  # other providers' nodes, read in this pass
        self._fallback_logged: set[str] = set()  # requests that fell back to a provider they asked to avoid

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> Launcher:
        self.store.ensure_paths(list(self.nodepool.labels))
        self.kz.ensure_path(paths.component("launcher"))
        self.component.register()
        self.zk.add_listener(self._on_connection)
        self.public_key = _public_key(self.ssh_key)
        disabled = frozenset(label.name for label in self.nodepool.labels.values() if label.min_ready < 0)
        for provider in self.nodepool.providers.values():
            adapter = self.adapter_factory(provider)
            self.managers[provider.name] = ProviderManager(
                provider, adapter, owner=self.owner, post=self._events.put, stop_event=self._stop,
                ssh_key=self.ssh_key, key_name=f"{self.owner}-launcher" if adapter.uses_keypair else "",
                poll_interval=self.poll_interval, delete_verify_timeout=self.delete_verify_timeout,
                disabled=disabled)
            health = self.managers[provider.name].health
            health.backoff_base, health.backoff_cap = self.backoff
        self._spawn(self._run, "launcher-main")
        for name in self.managers:
            self._spawn(lambda n=name: self._acquire_provider(n), f"provider-lock-{name}")
        self._spawn(self._timers, "launcher-timers")
        # requests and release signals change twice per node request: watched as trees, events carry the names
        # (handled as they are read: the handlers only send a read or hand the event to the main loop)
        self._tree_watches = [
            TreeWatch(self.kz, paths.NODE_REQUESTS, self._request_event,
                      lambda: self._resync(self.store.request_ids, self._on_requests), now=True).start(),
            TreeWatch(self.kz, paths.NODES_RELEASED, self._release_event,
                      lambda: self._resync(self.store.released_ids, self._on_released), now=True).start(),
        ]
        ChildrenWatch(self.kz, paths.LAUNCHERS, self._watch_post(self._on_live_providers))
        ChildrenWatch(self.kz, paths.component("launcher"), self._watch_post(self._on_launchers))
        for name in self.managers:
            self.store.watch_provider_state(name, lambda state, n=name: False if self._stop.is_set() else self.post(
                lambda: self._on_provider_state(n, state.drained)))
        self.index.mark_dirty(self.nodepool.labels)
        self.access_keeper = AccessKeeper(self.zk, self.ssh_key).start()
        log.info("launcher %s started with providers %s", self.ident, ", ".join(self.managers))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._events.put(Stop())
        for watch in self._tree_watches:
            watch.stop()
        for lock in self._provider_locks.values():
            try:
                lock.cancel()
                lock.release()
            except Exception:
                pass
        for name in list(self.managers):
            try:
                self.store.unregister_provider(name)
            except Exception:
                pass
        if self.access_keeper is not None:
            self.access_keeper.stop()
        for b in self.builders:
            b.stop()
        for t in self._threads:
            t.join(timeout=10)
        for m in self.managers.values():
            m.stop()
        try:
            self.component.unregister()
        except Exception:
            pass

    def _spawn(self, fn, name: str) -> None:
        t = threading.Thread(target=fn, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _watch_post(self, fn):
        def watcher(children):
            if self._stop.is_set():
                return False
            self.post(lambda: fn(children))
        return watcher

    def wake(self) -> None:
        self._events.put(Wake())

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the main loop (the only thread that changes the launcher's caches)."""
        self._events.put(Call(fn))

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def has_request(self, rid: str) -> bool:
        return rid in self.requests

    def _on_connection(self, event) -> None:
        from gatekeeper.zk.client import ConnectionEvent

        if event is ConnectionEvent.LOST and not self._stop.is_set():
            self.post(self._session_lost)

    def _session_lost(self) -> None:
        """Our ephemeral provider locks are gone: stop managing until we hold them again."""
        log.warning("ZooKeeper session lost: pausing providers %s until re-acquired", ", ".join(self.managers))
        self.plans.clear()
        # one-shot watches died with the session (kazoo's recipes re-arm themselves, ours do not)
        self.index.mark_dirty(self.nodepool.labels)
        for name, manager in self.managers.items():
            if manager.active:
                manager.active = False
                self._spawn(lambda n=name: self._acquire_provider(n), f"provider-lock-{name}")

    # -- provider ownership --------------------------------------------------------------------------------
    def _acquire_provider(self, name: str) -> None:
        lock = Lock(self.kz, paths.lock("nodepool-provider", name), self.ident)
        self._provider_locks[name] = lock
        while not self._stop.is_set():
            try:
                if lock.acquire(timeout=1.0):
                    break
            except Exception:
                if self._stop.wait(1.0):
                    return
        else:
            return
        # load the provider's nodes before announcing it live, so its quota counts are right from the start
        nodes = self.store.load_nodes(name)
        manager = self.managers[name]
        manager.public_key = self.public_key
        try:
            manager.ensure_keypair()
        except Exception as e:
            log.error("provider %s: cannot upload the launcher's SSH key (will retry at launch): %s", name, e)
        try:
            manager.refresh_limits()
        except Exception:
            log.exception("provider %s: reading limits", name)
        self.post(lambda: self._activate(name, nodes))

    def _activate(self, name: str, nodes: dict[str, tuple[Node, int]]) -> None:
        manager = self.managers[name]
        manager.nodes = nodes
        manager.active = True
        manager.published_health = None  # publish ours, whatever another launcher left there meanwhile
        for node, _ in nodes.values():
            if node.external_id:
                manager.adapter.adopt(node.external_id, {})
        ready_entries = {e for label in self.nodepool.labels for e in self.store.ready_entries(label)}
        served = manager.config.labels
        for node, version in list(nodes.values()):
            # a node on a server the layout no longer has (a static host removed), or of a label its provider no
            # longer serves (a changed node-pool section), goes once it is idle: nothing would ever ask for it
            retired = (bool(node.external_id) and not manager.adapter.configured(node.external_id)) or \
                node.label not in served
            if node.state in (model.BUILDING, model.FAILED, model.USED, model.DELETING) or \
                    (retired and node.state == model.READY):
                # a launch or delete the previous owner did not finish: finish it by deleting
                self.nodes.delete(manager, node.id)
            elif node.state == model.READY and ready_entry(node) not in ready_entries:
                self.nodes.make_ready(manager, node, version)
            elif node.state == model.ALLOCATED and not self.request_holds(node):
                if retired:
                    self.nodes.delete(manager, node.id)
                else:
                    self.nodes.return_to_ready(manager, node.id)
        self.store.register_provider(name, self.ident, sorted(manager.config.labels))
        # live_providers itself comes only from the watch, so every launcher sees the same registration order
        self.live_provider_labels[name] = set(manager.config.labels)
        from gatekeeper.launcher.images import ImageBuilder

        if any(i.prepare for i in manager.config.images) and not any(b.manager is manager for b in self.builders):
            builder = ImageBuilder(self, manager)
            self.builders.append(builder)
            builder.start()
        log.info("provider %s: managed by %s (%d existing nodes)", name, self.ident, len(nodes))

    def request_holds(self, node: Node) -> bool:
        """Whether the request an allocated node names holds it, read (the cache may be filling still): one being
        launched for (pending: its launcher, or the one that resets it if that launcher is gone, deals with its
        nodes) or fulfilled with it. One gone, unreadable, or offered again (reset by a version that left its
        nodes allocated) does not; one that cannot be read now does (cleanup looks at its nodes again later)."""
        try:
            found = self.store.read_request(node.request)
        except UnreadableRecord:
            return False
        except Exception as e:
            log.warning("request %s: could not be read (%s); its nodes are left to cleanup", node.request, e)
            return True
        if found is None:
            return False
        req = found[0]
        return req.state == model.PENDING or (req.state == model.FULFILLED and node.id in req.nodes)

    # -- main loop -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._events.get()
            self._batch_started = time.monotonic()
            try:
                while True:
                    if isinstance(item, Stop) or self._stop.is_set():
                        return
                    self._handle(item)
                    try:
                        item = self._events.get_nowait()
                    except queue.Empty:
                        break
                self._read_new_requests()
                self._assign()
            except Exception:
                log.exception("launcher main loop")

    def _handle(self, event: Event) -> None:
        match event:
            case LaunchResult():
                self._on_launch_result(event)
            case ServerDeleted(provider=provider, node_id=node_id, ok=ok):
                self.nodes.on_deleted(self.managers[provider], node_id, ok)
            case Answer(pending=pending, done=done):
                done(pending.result())
            case Call(fn=fn):
                fn()
            case Wake():
                pass  # the pass that follows every batch of events is what it asked for

    def _timers(self) -> None:
        next_cleanup = time.monotonic() + min(self.cleanup_interval, 5.0)
        next_tick = 0.0
        while not self._stop.wait(max(0.05, min(1.0, next_cleanup - time.monotonic()))):
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + self.cleanup_interval
                try:
                    from gatekeeper.launcher.cleanup import run_cleanup

                    run_cleanup(self)
                except Exception:
                    log.exception("cleanup failed")
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + 1.0
                self.post(self._publish_health)
                self.post(self._expire_ready)
                self.post(lambda: self.index.mark_dirty(self.nodepool.labels))
                self.post(self.nodes.flush_signals)
                self._read_foreign_health()
            if any(m.health.due() for m in self.managers.values()):
                self.wake()
            if any(m.quota_blocked_until and time.monotonic() >= m.quota_blocked_until
                   for m in self.managers.values()):
                for m in self.managers.values():
                    m.quota_blocked_until = 0.0
                self.wake()

    def _read_foreign_health(self) -> None:
        """Which live providers of other launchers cannot launch now (backing off, drained): their labels'
        min-ready is then kept by the next provider (timer thread; the result goes to the main loop)."""
        unable, full, lacking = set(), set(), {}
        for name in set(self.live_providers) - {n for n, m in self.managers.items() if m.active}:
            try:
                health = self.store.provider_health(name)
                if self.store.provider_state(name).drained or health.get("state") == "backing-off":
                    unable.add(name)
                if health.get("full"):
                    full.add(name)
                if isinstance(health.get("unlaunchable"), list):
                    lacking[name] = {str(label) for label in health["unlaunchable"]}
            except Exception as e:
                log.debug("provider %s: reading its health: %s", name, e)

        def apply() -> None:
            self.foreign_unable, self.foreign_full, self.foreign_unlaunchable = unable, full, lacking
        self.post(apply)

    # -- watch handlers --------------------------------------------------------------------------------------
    def _resync(self, listing: Callable[[], list[str]], handler: Callable[[list[str]], None]) -> None:
        """A tree watch was (re)made: read its directory once and hand the listing to the main loop."""
        children = listing()
        self.post(lambda: handler(children))

    def _request_event(self, kind: str, rid: str) -> None:
        if self._stop.is_set() or "/" in rid:
            return
        if kind == "created":
            # a new request is read at once, from kazoo's callback thread (not from here: this is its connection
            # thread, which must send nothing; nor from the main loop, where the read would wait behind the events
            # queued before it), and the answer goes to the main loop
            self.kz.handler.dispatch_callback(Callback("watch", self._read_created, (rid,)))
            return
        self.post(lambda: self._on_request_event(kind, rid))

    def _read_created(self, rid: str) -> None:
        if self._stop.is_set():
            return
        try:
            pending = self.store.read_request_async(rid)
        except Exception as e:  # the client closed meanwhile: the resync after a reconnection reads it
            log.info("request %s: could not be read: %s", rid, e)
            return
        self._after(pending, lambda found: self._request_read(rid, found, new=True))

    def _release_event(self, kind: str, node_id: str) -> None:
        if self._stop.is_set() or "/" in node_id:
            return
        if kind == "created":
            self.post(lambda: self._on_released_one(node_id))
        elif kind == "deleted":
            self.post(lambda: self.nodes.released_seen.discard(node_id))

    # -- (main loop)
    def _on_requests(self, children: list[str]) -> None:
        """A full listing of the requests: forget the gone ones, read the new ones and re-read the others (what
        changed while the watch was not there)."""
        current = set(children)
        for rid in list(self.requests):
            if rid not in current:
                self._forget_request(rid)
        for rid in children:
            self._new_requests[rid] = None
        self._read_new_requests()

    def _on_request_event(self, kind: str, rid: str) -> None:
        if kind == "deleted":
            self._new_requests.pop(rid, None)
            self._gone_requests[rid] = None  # a read of it may still be on its way: it must not bring it back
            if len(self._gone_requests) > 1000:
                del self._gone_requests[next(iter(self._gone_requests))]
            self._forget_request(rid)
        elif rid in self._busy:
            return  # our own write's change: its answer says what became of it
        elif rid in self.requests:
            req = self.requests[rid][0]
            if req.state == model.FULFILLED or (req.state == model.PENDING and req.launcher == self.ident):
                return  # our own write (a hand-out or a claim), already in our cache
            self._fetch_request(rid)  # declined, given back, failed, or its launcher is gone: look again

    def _read_new_requests(self) -> None:
        """Send the reads of the requests a listing named; each answer comes back to the main loop."""
        new, self._new_requests = self._new_requests, {}
        for rid in sorted(new):
            self._after(self.store.read_request_async(rid), lambda found, rid=rid: self._request_read(rid, found))

    def _request_read(self, rid: str, found: tuple[NodeRequest, int] | None, new: bool = False) -> None:
        """A request read. `new`: read on its creation event, so anything cached already (a listing's read, our
        own write) is as fresh, and a deletion seen meanwhile means it is gone (the read may be answered before or
        after a deletion's event, whichever ZooKeeper did first)."""
        if rid in self._gone_requests or (new and rid in self.requests):
            return
        if found is None:
            self._forget_request(rid)
        elif rid not in self._busy:  # read after every write this launcher sent before it: as fresh as any
            self.requests[rid] = found

    def _fetch_request(self, rid: str) -> None:
        try:
            found = self.store.read_request(rid)
        except UnreadableRecord:
            found = None
        if found is None:
            self._forget_request(rid)
            return
        self.requests[rid] = found

    def _forget_request(self, rid: str) -> None:
        self.requests.pop(rid, None)
        self._fallback_logged.discard(rid)
        plan = self.plans.pop(rid, None)
        if plan is not None:
            self._spares(plan)  # its consumer went away: nodes launched for it become spares

    def ready_entries(self, label: str) -> list[str]:
        """The label's ready index as this launcher knows it. Its own changes keep it in step; what others change
        is read when a decision needs it (before launching, after a lost hand-out) and once a second, not on
        every change: a watch would re-read the index after each of our own hand-outs and readies."""
        return self.index.get(label)

    def _on_live_providers(self, children: list[str]) -> None:
        self.live_providers = set(children)
        for name in list(self.live_provider_labels):
            if name not in self.live_providers:
                del self.live_provider_labels[name]
        for name in children:
            if name not in self.live_provider_labels:
                labels = self.store.live_provider_labels(name)
                if labels is not None:
                    self.live_provider_labels[name] = labels

    def _on_launchers(self, children: list[str]) -> None:
        self.live_launchers = set(children)
        self._launchers_known = True
        for rid, (req, _) in list(self.requests.items()):
            if req.state == model.PENDING and req.launcher not in self.live_launchers:
                self._fetch_request(rid)

    def _on_released(self, children: list[str]) -> None:
        """A full listing of the release signals."""
        self.nodes.released_seen &= set(children)
        for node_id in children:
            self._on_released_one(node_id, listed=True)

    def _on_released_one(self, node_id: str, listed: bool = False) -> None:
        """A release signal, from an event (fresh) or a listing (`listed`: it may predate a recycle of ours)."""
        if node_id in self.nodes.released_seen:
            return
        for manager in self.managers.values():
            if manager.active and node_id in manager.nodes:
                self.nodes.released_seen.add(node_id)
                self.nodes.delete_released(manager, node_id, check=listed)
                return

def _public_key(private_key: str) -> str:
    pub = private_key + ".pub"
    if os.path.exists(pub):
        with open(pub) as f:
            return f.read().strip()
    import paramiko

    key = paramiko.PKey.from_path(private_key)
    return f"{key.get_name()} {key.get_base64()}"


__all__ = ["Launcher"]
