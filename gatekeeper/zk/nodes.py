"""The node store: every read and write of nodes, node requests, the ready index, image builds, autoholds and
provider state in ZooKeeper, behind one class.

Launchers, their consumers (the executor), operators' commands and the web call its methods; nobody else builds
node-pool paths or transactions. Writes are versioned where two parties may race; the hand-out of ready nodes is
one transaction (remove the ready-index entries, mark the nodes allocated, fulfil the request: all or nothing).

A record that cannot be read (empty, not JSON, not a record) never raises out of a listing: it is logged once and
skipped; `set_aside` moves it under /nodepool/unreadable for an operator to look at.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.protocol.states import Callback, KazooState

from gatekeeper.zk import node_records as model
from gatekeeper.zk import paths
from gatekeeper.zk.autoholds import AutoholdStore
from gatekeeper.zk.node_records import Node, NodeRequest, ready_entry
from gatekeeper.zk.nodes_claims import Moved, RequestClaims, allocate
from gatekeeper.zk.nodes_pending import Pending, link
from gatekeeper.zk.nodes_pending import failed as _failed
from gatekeeper.zk.provider_store import ProviderStore, UnreadableRecord, providers_status

log = logging.getLogger("gatekeeper.zk.nodes")

PRIORITY_DIGITS = 6
UNREADABLE = paths.UNREADABLE

__all__ = ["HandOut", "Moved", "NodeStore", "NodeStoreError", "Pending", "UnreadableRecord", "providers_status"]


class NodeStoreError(Exception):
    """A node-pool change could not be made (locked by someone else, keeps changing, ...)."""


@dataclass
class HandOut:
    """The outcome of a hand-out transaction: the fulfilled request and the nodes' new versions, or why not."""

    ok: bool
    request: NodeRequest | None = None
    request_version: int = -1
    nodes: list[tuple[Node, int]] | None = None
    request_changed: bool = False  # the request was changed or withdrawn: re-read it


def node_holder(node_id: str) -> str:
    """A consumer's lock on a node: an ephemeral child of the node's lock path, made when it takes the node."""
    return f"{paths.node_lock(node_id)}/holder"


def _fulfilled(request: NodeRequest, handed: list[tuple[Node, int]]) -> NodeRequest:
    """A copy of `request`, fulfilled with `handed`: its nodes in the requested order, each with the version it
    has once the fulfilment is applied (what the consumer takes them with)."""
    new = NodeRequest.from_dict(request.to_dict())
    new.id = request.id
    new.set_state(model.FULFILLED)
    new.nodes = [n.id for n, _ in handed]
    new.handed = [{"node": n.to_dict(), "version": v} for n, v in handed]
    return new


class NodeStore(ProviderStore, AutoholdStore, RequestClaims):
    """One per ZooKeeper client; thread-safe (kazoo is), holds no cache except the set of records reported bad.

    Takes a ZKClient, or a raw KazooClient for callers that only hold one."""

    # -- setup -----------------------------------------------------------------------------------------------
    def ensure_paths(self, labels: list[str] = ()) -> None:
        for path in (paths.NODE_REQUESTS, paths.NODES, paths.NODES_READY, paths.NODES_RELEASED,
                     paths.LAUNCHERS, paths.IMAGES, paths.HOLDS, paths.PROVIDERS):
            self.kz.ensure_path(path)
        for label in labels:
            self.kz.ensure_path(paths.ready_node(label))

    # -- nodes -----------------------------------------------------------------------------------------------
    def node_ids(self) -> list[str]:
        try:
            return self.kz.get_children(paths.NODES)
        except NoNodeError:
            return []

    def read_node(self, node_id: str) -> tuple[Node, int] | None:
        """The node and its version; None if it is gone. Raises UnreadableRecord for garbage."""
        try:
            raw, stat = self.kz.get(paths.node(node_id))
        except NoNodeError:
            return None
        node = self._decode(Node, paths.node(node_id), raw)
        node.id = node.id or node_id
        return node, stat.version

    def _read_all(self, cls, ids: list[str], path_of: Callable[[str], str]) -> tuple[dict, list[str]]:
        """Records of `ids`, read at once (one round trip, not one per record): the readable ones with their
        versions, and the ids of the unreadable ones (logged once); gone ones are left out."""
        answers = [(i, self.kz.get_async(path_of(i))) for i in ids]
        found, bad = {}, []
        for i, answer in answers:
            try:
                raw, stat = answer.get()
            except NoNodeError:
                continue
            try:
                record = self._decode(cls, path_of(i), raw)
            except UnreadableRecord:
                bad.append(i)
                continue
            record.id = (record.id or i) if cls is Node else i  # a request's id is its znode's name
            found[i] = (record, stat.version)
        return found, bad

    def load_nodes(self, provider: str | None = None) -> dict[str, tuple[Node, int]]:
        """Every readable node (of one provider) with its version; unreadable ones are logged once and skipped."""
        return self.scan_nodes(provider)[0]

    def scan_nodes(self, provider: str | None) -> tuple[dict[str, tuple[Node, int]], list[str]]:
        """One read of every node record: the provider's (or every) readable nodes with their versions, and the
        ids of the records (of any provider) that cannot be read."""
        found, bad = self._read_all(Node, self.node_ids(), paths.node)
        return {i: f for i, f in found.items() if provider is None or f[0].provider == provider}, bad

    def unreadable_requests(self) -> list[str]:
        """Ids of request znodes whose record cannot be read."""
        return self._read_all(NodeRequest, self.request_ids(), paths.node_request)[1]

    def set_aside_request(self, rid: str) -> None:
        """Move an unreadable request under /nodepool/unreadable (no launcher can serve it)."""
        self._set_aside(paths.node_request(rid), f"request-{rid}")

    def unreadable_nodes(self) -> list[str]:
        """Ids of node znodes whose record cannot be read."""
        return self.scan_nodes(None)[1]

    def set_aside(self, node_id: str) -> None:
        """Move an unreadable node record under /nodepool/unreadable (kept for an operator), with its lock."""
        self._set_aside(paths.node(node_id), f"node-{node_id}")

    def _set_aside(self, path: str, name: str) -> None:
        try:
            raw, _ = self.kz.get(path)
        except NoNodeError:
            return
        self.kz.ensure_path(paths.UNREADABLE)
        tx = self.kz.transaction()
        tx.create(f"{paths.UNREADABLE}/{name}-{int(time.time())}", raw)
        for child in self._children(path):
            tx.delete(f"{path}/{child}")
        tx.delete(path)
        if _failed(tx.commit()):
            log.warning("%s could not be set aside (it changed meanwhile)", path)
        else:
            log.warning("%s was unreadable: moved to %s", path, paths.UNREADABLE)

    def create_node(self, node: Node) -> bool:
        """Create a new node record and its lock parent, in one transaction."""
        return self.create_node_async(node).result()

    def create_node_async(self, node: Node) -> Pending:
        """create_node, sent without waiting (a Pending whose result() is whether the record was made)."""
        tx = self.kz.transaction()
        tx.create(paths.node(node.id), node.to_bytes())
        tx.create(paths.node_lock(node.id), b"")

        def interpret(results) -> bool:
            if isinstance(results, Exception) or _failed(results):
                log.error("node %s: could not create its record: %s", node.id, results)
                return False
            return True
        return Pending(tx.commit_async(), interpret)

    def write_node(self, node: Node, version: int, *, add_ready: bool = False, remove_ready: bool = False,
                   remove_released: bool = False) -> int | None:
        """Versioned write of a node (version -1: unconditional), optionally adding or removing its ready-index
        entry and its release signal in the same transaction. Returns the new version, None on a conflict."""
        return self.write_node_async(node, version, add_ready=add_ready, remove_ready=remove_ready,
                                     remove_released=remove_released).result()

    def write_node_async(self, node: Node, version: int, *, add_ready: bool = False, remove_ready: bool = False,
                         remove_released: bool = False) -> Pending:
        """write_node, sent without waiting for the answer (a Pending whose result() is the new version)."""
        tx = self.kz.transaction()
        tx.set_data(paths.node(node.id), node.to_bytes(), version=version)
        if add_ready:
            tx.create(paths.ready_node(node.label, ready_entry(node)), b"")
        if remove_ready:
            tx.delete(paths.ready_node(node.label, ready_entry(node)))
        if remove_released:
            tx.delete(paths.released_node(node.id))

        def interpret(results) -> int | None:
            if isinstance(results, Exception) or _failed(results):
                log.debug("node %s: write conflicted (%s)", node.id, results)
                return None
            return results[0].version
        return Pending(tx.commit_async(), interpret)

    def remove_ready_entry(self, node: Node) -> bool:
        """Take a ready node out of the index; False if it was handed out (or removed) meanwhile."""
        try:
            self.kz.delete(paths.ready_node(node.label, ready_entry(node)))
            return True
        except NoNodeError:
            return False

    def delete_node_async(self, node_id: str) -> Pending:
        """Remove a node's record with its lock parent, in one transaction, sent without waiting for the answer: a
        Pending whose result() is False while a consumer holds its lock, else True (its release signal, if any,
        goes too when the transaction could not be used)."""
        tx = self.kz.transaction()
        tx.delete(paths.node_lock(node_id))
        tx.delete(paths.node(node_id))

        def interpret(results) -> bool:
            if not isinstance(results, Exception) and any(isinstance(r, NotEmptyError) for r in results):
                return False
            if isinstance(results, Exception) or _failed(results):  # some part was gone already: one by one
                for path in (paths.node_lock(node_id), paths.node(node_id), paths.released_node(node_id)):
                    try:
                        self.kz.delete(path)
                    except NoNodeError:
                        pass
                    except NotEmptyError:
                        return False
            return True
        return Pending(tx.commit_async(), interpret)

    def remove_released(self, node_ids: list[str]) -> None:
        """Remove release signals (of nodes already deleted) in one transaction, one by one if some are gone."""
        tx = self.kz.transaction()
        for node_id in node_ids:
            tx.delete(paths.released_node(node_id))
        if _failed(tx.commit()):
            for node_id in node_ids:
                try:
                    self.kz.delete(paths.released_node(node_id))
                except NoNodeError:
                    pass

    def is_locked(self, node_id: str) -> bool:
        return bool(self._children(paths.node_lock(node_id)))

    def is_released(self, node_id: str) -> bool:
        return self.kz.exists(paths.released_node(node_id)) is not None

    def released_ids(self) -> list[str]:
        return self._children(paths.NODES_RELEASED)

    def count_held(self) -> int:
        return sum(1 for node, _ in self.load_nodes().values() if node.state == model.HOLD)

    # -- ready index -----------------------------------------------------------------------------------------
    def ready_entries(self, label: str, watch: Callable | None = None) -> list[str]:
        """The label's ready-index entries, oldest first (a one-shot watch fires on the next change)."""
        try:
            return sorted(self.kz.get_children(paths.ready_node(label), watch=watch))
        except NoNodeError:
            self.kz.ensure_path(paths.ready_node(label))
            return []

    def ready_entries_async(self, label: str) -> Pending:
        """ready_entries, sent without waiting: result() is the sorted entries, None if they could not be read."""
        def interpret(answer) -> list[str] | None:
            if isinstance(answer, NoNodeError):
                return []
            if isinstance(answer, Exception):
                log.warning("ready index of %s: could not be read: %s", label, answer)
                return None
            return sorted(answer)
        return Pending(self.kz.get_children_async(paths.ready_node(label)), interpret)

    def hand_out(self, request: NodeRequest, version: int, picks: list[tuple[str, Node, int]], provider: str,
                 launcher: str, create: list[Node] = ()) -> HandOut:
        """Hand ready nodes to a request in one transaction. `picks` is (ready entry, node, node version); `create`
        are new node records (replacements the launcher is about to boot) written in the same transaction."""
        return self.hand_out_async(request, version, picks, provider, launcher, create).result()

    def hand_out_async(self, request: NodeRequest, version: int, picks: list[tuple[str, Node, int]],
                       provider: str, launcher: str, create: list[Node] = ()) -> Pending:
        """hand_out, sent without waiting for the answer (a Pending whose result() is the HandOut)."""
        tx = self.kz.transaction()
        updated = allocate(tx, picks, request.id)
        new = _fulfilled(request, [(n, v + 1) for n, v in updated])
        new.provider = provider
        new.launcher = launcher
        tx.set_data(paths.node_request(request.id), new.to_bytes(), version=version)
        for node in create:
            tx.create(paths.node(node.id), node.to_bytes())
            tx.create(paths.node_lock(node.id), b"")
        at = 2 * len(updated)  # the request's result

        def interpret(results) -> HandOut:
            if isinstance(results, Exception):
                log.warning("request %s: hand-out not answered: %s", request.id, results)
                return HandOut(False, request_changed=True)
            if _failed(results):
                changed = isinstance(results[at], (BadVersionError, NoNodeError)) or any(
                    isinstance(r, NoNodeError) for r in results)
                return HandOut(False, request_changed=changed)
            nodes = [(node, results[2 * i + 1].version) for i, (node, _) in enumerate(updated)]
            return HandOut(True, new, results[at].version, nodes)
        return Pending(tx.commit_async(), interpret)

    def fulfil_async(self, request: NodeRequest, version: int, handed: list[tuple[Node, int]],
                     writes: list[tuple[Node, int]]) -> Pending:
        """Fulfil a request with the nodes launched for it, in one transaction with their versioned writes
        `writes` (node, its version now), sent without waiting; `handed` are the nodes in the requested order,
        each with the version it has once this is applied. result() is a HandOut."""
        new = _fulfilled(request, handed)
        tx = self.kz.transaction()
        for node, node_version in writes:
            tx.set_data(paths.node(node.id), node.to_bytes(), version=node_version)
        tx.set_data(paths.node_request(request.id), new.to_bytes(), version=version)

        def interpret(results) -> HandOut:
            if isinstance(results, Exception) or _failed(results):
                log.debug("request %s: fulfilment refused (%s)", request.id, results)
                return HandOut(False, request_changed=True)
            written = [(node, r.version) for (node, _), r in zip(writes, results[:-1], strict=True)]
            return HandOut(True, new, results[-1].version, written)
        return Pending(tx.commit_async(), interpret)

    def publish_health_async(self, name: str, status: dict) -> Pending:
        """publish_health, sent without waiting (the record is made, waiting, on the provider's first publish)."""
        data = json.dumps(status).encode()

        def interpret(answer) -> bool:
            try:
                if isinstance(answer, NoNodeError):
                    self.publish_health(name, status)  # the provider's first publish makes the record
                elif isinstance(answer, Exception):
                    raise answer
            except Exception as e:
                log.warning("provider %s: could not publish its health: %s", name, e)
                return False
            return True
        return Pending(self.kz.set_async(paths.provider_health(name), data), interpret)

    # -- requests (launcher side) ----------------------------------------------------------------------------
    def read_request(self, rid: str, watch: Callable | None = None) -> tuple[NodeRequest, int] | None:
        """The request and its version; None if gone. Raises UnreadableRecord for garbage."""
        try:
            raw, stat = self.kz.get(paths.node_request(rid), watch=watch)
        except NoNodeError:
            return None
        req = self._decode(NodeRequest, paths.node_request(rid), raw)
        req.id = rid
        return req, stat.version

    def write_request(self, req: NodeRequest, version: int) -> int | None:
        """Versioned write; the new version, or None if it changed or went away meanwhile."""
        try:
            return self.kz.set(paths.node_request(req.id), req.to_bytes(), version=version).version
        except (BadVersionError, NoNodeError):
            return None

    def read_request_async(self, rid: str) -> Pending:
        """read_request, sent without waiting: result() is the request and its version, None if gone or
        unreadable."""
        path = paths.node_request(rid)

        def interpret(answer) -> tuple[NodeRequest, int] | None:
            if isinstance(answer, NoNodeError):
                return None
            if isinstance(answer, Exception):
                log.warning("request %s: could not be read: %s", rid, answer)
                return None
            raw, stat = answer
            try:
                req = self._decode(NodeRequest, path, raw)
            except UnreadableRecord:
                return None
            req.id = rid
            return req, stat.version
        return Pending(self.kz.get_async(path), interpret)

    def request_ids(self) -> list[str]:
        return self._children(paths.NODE_REQUESTS)

    # -- requests (consumer side) ----------------------------------------------------------------------------
    def submit_request(self, labels: list[str], requestor: str, priority: int = 100, provider: str = "",
                       avoid: Sequence[str] = ()) -> str:
        """Ask for one node per label (all from one provider, `provider` if named, not one of `avoid` while
        another can serve them); returns the request id.

        The request is ephemeral: if the consumer's ZooKeeper session ends, the request goes away with it."""
        req = NodeRequest(labels=list(labels), requestor=requestor, priority=priority, requested_provider=provider,
                          avoid_providers=list(avoid))
        path = self.kz.create(f"{paths.NODE_REQUESTS}/{priority:0{PRIORITY_DIGITS}d}-", req.to_bytes(),
                              ephemeral=True, sequence=True, makepath=True)
        return path.rsplit("/", 1)[1]

    def get_request(self, rid: str) -> NodeRequest | None:
        try:
            found = self.read_request(rid)
        except UnreadableRecord:
            return None
        return found[0] if found else None

    def watch_request(self, rid: str, callback: Callable[[NodeRequest | None], None], now: bool = False) -> None:
        """Call `callback(request)` once, when the request is fulfilled or failed (None: it vanished); `now`: on
        kazoo's connection thread as the answer is read (one thread switch less), for a callback that neither
        blocks nor sends a ZooKeeper request.

        Returns at once: the read that sets the watch is answered on kazoo's thread, so a consumer submitting many
        requests waits one round trip for each, not two."""
        done = threading.Event()
        once = threading.Lock()  # (two reads may be answered at once, on two threads)
        path = paths.node_request(rid)
        retries = [5]

        def finish(req: NodeRequest | None) -> None:
            with once:
                if done.is_set():
                    return
                done.set()
            callback(req)

        def answered(answer) -> None:
            if done.is_set():
                return
            try:
                raw, _ = answer.get()
            except NoNodeError:
                finish(None)
                return
            except Exception as e:  # the connection dropped with the read in flight: ask again once it is back
                if retries[0] > 0:
                    retries[0] -= 1
                    log.info("request %s: watching it failed (%s); asking again once connected", rid, e)
                    self._when_connected(on_change)
                else:
                    log.error("request %s: could not watch it: %s", rid, e)
                return
            try:
                req = self._decode(NodeRequest, path, raw)
            except UnreadableRecord:
                return  # wait for the next write
            req.id = rid
            if req.state in (model.FULFILLED, model.REQUEST_FAILED):
                finish(req)

        def on_change(event=None) -> None:
            if not done.is_set():
                link(self.kz.get_async(path, watch=on_change), answered, now)

        on_change()

    def _when_connected(self, fn: Callable[[], None]) -> None:
        """Run `fn` on kazoo's callback thread once the connection is up (at once if it is). Not on the thread that
        saw the failure: that may be kazoo's connection thread failing every pending request, which would fail a
        request sent from there too, and must send none."""
        def dispatch() -> None:
            self.kz.handler.dispatch_callback(Callback("watch", fn, ()))

        def listener(state: str) -> bool:
            if state == KazooState.CONNECTED:
                dispatch()
                return True  # (kazoo removes a listener that returns True)
            return False
        self.kz.add_listener(listener)
        # kazoo.connected, not kazoo.state: kazoo fails the pending requests before it says SUSPENDED, and only
        # `connected` is already false then (a second read, if both fire, is harmless)
        if self.kz.connected:
            self.kz.remove_listener(listener)
            dispatch()

    def cancel_request(self, rid: str) -> None:
        try:
            self.kz.delete(paths.node_request(rid))
        except NoNodeError:
            pass

    def take_nodes(self, request: NodeRequest, holder: str) -> list[tuple[Node, int]]:
        """Lock the request's nodes for `holder`, mark them in use and remove the request, in one transaction.

        The lock is an ephemeral child of the node's lock path (gone with the consumer's session, which is how
        cleanup tells an abandoned in-use node); a node another consumer holds is refused with NodeStoreError."""
        for use_handed in (True, False):
            nodes, tx = [], self.kz.transaction()
            for node_id in request.nodes:
                handed = next((h for h in request.handed if h["node"].get("id") == node_id), None)
                if use_handed and handed is not None:
                    node, version = Node.from_dict(handed["node"]), handed["version"]
                else:
                    found = self.read_node(node_id)
                    if found is None:
                        raise NodeStoreError(f"node {node_id} of request {request.id} is gone")
                    node, version = found
                    if node.state != model.ALLOCATED or node.request != request.id:  # (an operator deleted it)
                        raise NodeStoreError(f"node {node_id} of request {request.id} is {node.state} now, no longer "
                                             "allocated to it")
                node.set_state(model.IN_USE)
                node.comment = request.requestor
                tx.create(node_holder(node_id), holder.encode(), ephemeral=True)
                tx.set_data(paths.node(node_id), node.to_bytes(), version=version)
                nodes.append(node)
            tx.delete(paths.node_request(request.id))
            results = tx.commit()
            if not _failed(results):
                return [(n, results[2 * i + 1].version) for i, n in enumerate(nodes)]
            for i, node in enumerate(nodes):
                if isinstance(results[2 * i], NodeExistsError):
                    raise NodeStoreError(f"node {node.id} of request {request.id} is locked by someone else")
        raise NodeStoreError(f"request {request.id}: could not mark its nodes in use ({results})")

    def release(self, node_id: str, cached: tuple[Node, int] | None, held: bool, reason: str,
                hold_hours: float, change: str = "", owner: str = "", locked: bool = True) -> None:
        """Give a node back and drop its consumer's lock (if `locked`): used (its launcher deletes it) or held for
        `hold_hours` (an operator's earlier hold request wins over "used", with the hours the operator asked, the
        longer when both hold it); a node held for a failed build records its change and that change's owner."""
        for _ in range(5):
            if cached is None:
                cached = self.read_node(node_id)
                if cached is None:
                    return
            current, version = Node.from_dict(cached[0].to_dict()), cached[1]
            hold, why, hours = held, reason, hold_hours
            if current.hold_requested:  # an operator's hold: for the hours asked, or the build's if that is longer
                asked = min(current.hold_requested_hours or hold_hours, model.MAX_HOLD_HOURS)
                hours = max(hold_hours, asked) if held else asked
                hold, why = True, reason if held else current.hold_requested
            tx = self.kz.transaction()
            if hold:
                current.set_state(model.HOLD)
                current.hold_reason = why
                current.hold_until = time.time() + hours * 3600
                if held:
                    current.hold_change, current.hold_owner = change, owner
                tx.set_data(paths.node(node_id), current.to_bytes(), version=version)
            else:
                current.set_state(model.USED)
                tx.set_data(paths.node(node_id), current.to_bytes(), version=version)
                tx.create(paths.released_node(node_id), b"")
            if locked:
                tx.delete(node_holder(node_id))
            results = tx.commit()
            if not _failed(results):
                return
            if locked and isinstance(results[-1], NoNodeError):
                locked = False  # our lock went with an expired session: release without it
                continue
            cached = None  # changed under us (an operator asked for a hold): read and try again
        raise NodeStoreError(f"node {node_id}: could not release it (it keeps changing)")

    # -- operators' changes ----------------------------------------------------------------------------------
    def change_node(self, node_id: str, change: Callable[[Node], bool]) -> Node | None:
        """Apply `change(node)` (True: also take it out of the ready index; False: also signal its release) with a
        versioned write, retried on a concurrent update. None if there is no such node."""
        for _ in range(5):
            found = self.read_node(node_id)
            if found is None:
                return None
            node, version = found
            was_ready = node.state == model.READY
            entry = ready_entry(node)
            release = change(node)
            tx = self.kz.transaction()
            if was_ready and node.state != model.READY:
                tx.delete(paths.ready_node(node.label, entry))
            if release and not self.is_released(node_id):  # (signalled already: a second delete, say)
                self.kz.ensure_path(paths.NODES_RELEASED)
                tx.create(paths.released_node(node_id), b"")
            tx.set_data(paths.node(node_id), node.to_bytes(), version=version)
            results = tx.commit()
            if not _failed(results):
                return node
            if not any(isinstance(r, (BadVersionError, NoNodeError, NodeExistsError)) for r in results):
                raise NodeStoreError(f"node {node_id}: {[type(r).__name__ for r in results]}")
        raise NodeStoreError(f"node {node_id} keeps changing; try again")
