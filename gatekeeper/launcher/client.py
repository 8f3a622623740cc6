"""The consumer's side of the node pool: ask for nodes, wait, lock them, use them over SSH, give them back.

Example (what the executor does for one build)::

    from gatekeeper.launcher.client import NodeRequestClient

    nodes_client = NodeRequestClient(zk, requestor="executor-1 build 42")
    req_id = nodes_client.request(["debian"], priority=nodes_client.priority(precedence=1, position=3))
    req = nodes_client.wait(req_id, timeout=600)          # NodeRequest: state "fulfilled" or "failed"
    if req.state != "fulfilled":
        raise RuntimeError(req.reason)
    nodes = nodes_client.lock_nodes(req)                  # locked, marked in-use; the request is removed
    with nodes_client.ssh(nodes[0]) as ssh:               # paramiko, host key verified against the pinned keys
        _, out, _ = ssh.exec_command("uname -a")
    for node in nodes:                                    # success: delete; failure: hold for 24 h
        nodes_client.release(node, held=failed, reason="build 42 failed", hold_hours=24)

`release_after_build` applies autohold requests instead of a caller-chosen hold.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import paramiko
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.recipe.lock import Lock

from gatekeeper.launcher import model
from gatekeeper.launcher.model import Autohold, Node, NodeRequest
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient

log = logging.getLogger("gatekeeper.launcher.client")

PRIORITY_DIGITS = 6


class NodeRequestError(Exception):
    pass


def request_path(request_id: str) -> str:
    return paths.node_request(request_id)


def read_node(zk: ZKClient, node_id: str) -> tuple[Node, int]:
    raw, stat = zk.client.get(paths.node(node_id))
    return Node.from_bytes(raw), stat.version


def host_key_policy(node: Node) -> paramiko.HostKeys:
    """The node's pinned host keys as paramiko HostKeys, for a RejectPolicy client."""
    keys = paramiko.HostKeys()
    name = node.address if node.port == 22 else f"[{node.address}]:{node.port}"
    for line in node.host_keys:
        kind, b64 = line.split()[:2]
        keys.add(name, kind, paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64)))
    return keys


def connect_ssh(node: Node, timeout: float = 10.0) -> paramiko.SSHClient:
    """An SSH connection to `node` that refuses any host key but the ones pinned in its record."""
    ssh = paramiko.SSHClient()
    ssh._host_keys = host_key_policy(node)  # paramiko has no public setter for a HostKeys object
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(node.address, node.port, node.username, key_filename=node.private_key or None,
                look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                auth_timeout=timeout)
    return ssh


class NodeRequestClient:
    """Request, lock, use and release nodes. One per consumer process; thread-safe."""

    def __init__(self, zk: ZKClient, requestor: str = "") -> None:
        self.zk = zk
        self.requestor = requestor
        self._locks: dict[str, Lock] = {}
        self._versions: dict[str, tuple[Node, int]] = {}  # what we last wrote to each locked node
        self._mutex = threading.Lock()

    @staticmethod
    def priority(precedence: int, position: int) -> int:
        """Pipeline precedence (0 high, 1 normal, 2 low) first, then position in its queue."""
        return precedence * 10000 + min(position, 9999)

    def request(self, labels: list[str], requestor: str | None = None, priority: int = 100) -> str:
        """Ask for one node per label (all from one provider); returns the request id.

        The request is ephemeral: if this consumer's ZooKeeper session ends, the request goes away with it.
        """
        req = NodeRequest(labels=list(labels), requestor=requestor or self.requestor, priority=priority)
        path = self.zk.client.create(f"{paths.NODE_REQUESTS}/{priority:0{PRIORITY_DIGITS}d}-", req.to_bytes(),
                                     ephemeral=True, sequence=True, makepath=True)
        return path.rsplit("/", 1)[1]

    def get(self, request_id: str) -> NodeRequest | None:
        try:
            raw, _ = self.zk.client.get(request_path(request_id))
        except NoNodeError:
            return None
        req = NodeRequest.from_bytes(raw)
        req.id = request_id
        return req

    def watch(self, request_id: str, callback: Callable[[NodeRequest | None], None]) -> None:
        """Call `callback(request)` once, when the request is fulfilled or failed (None: it vanished)."""
        done = threading.Event()

        def on_change(event=None) -> None:
            if done.is_set():
                return
            try:
                raw, _ = self.zk.client.get(request_path(request_id), watch=on_change)
            except NoNodeError:
                done.set()
                callback(None)
                return
            req = NodeRequest.from_bytes(raw)
            req.id = request_id
            if req.state in (model.FULFILLED, model.REQUEST_FAILED):
                done.set()
                callback(req)

        on_change()

    def wait(self, request_id: str, timeout: float | None = None) -> NodeRequest:
        """Block until the request is fulfilled or failed; raises TimeoutError, NodeRequestError if it vanished."""
        box: list[NodeRequest | None] = []
        ev = threading.Event()

        def done(req: NodeRequest | None) -> None:
            box.append(req)
            ev.set()

        self.watch(request_id, done)
        if not ev.wait(timeout):
            raise TimeoutError(f"node request {request_id} not fulfilled within {timeout}s")
        if box[0] is None:
            raise NodeRequestError(f"node request {request_id} disappeared")
        return box[0]

    def cancel(self, request_id: str) -> None:
        """Withdraw a request; nodes already allocated to it go back to the pool."""
        try:
            self.zk.client.delete(request_path(request_id))
        except NoNodeError:
            pass

    def lock_nodes(self, request: NodeRequest) -> list[Node]:
        """Lock the request's nodes, mark them in-use, and remove the request (one transaction). Returns the nodes."""
        try:
            for node_id in request.nodes:
                lock = Lock(self.zk.client, paths.node_lock(node_id), self.requestor)
                lock.assured_path = True  # the launcher creates the lock's parent with the node
                if not lock.acquire(blocking=False):
                    raise NodeRequestError(f"node {node_id} of request {request.id} is locked by someone else")
                with self._mutex:
                    self._locks[node_id] = lock
            # first with the records the launcher put in the request (no reads); if a node changed since, re-read
            for use_handed in (True, False):
                nodes, tx = [], self.zk.client.transaction()
                for node_id in request.nodes:
                    handed = next((h for h in request.handed if h["node"].get("id") == node_id), None)
                    if use_handed and handed is not None:
                        node, version = Node.from_dict(handed["node"]), handed["version"]
                    else:
                        node, version = read_node(self.zk, node_id)
                    node.set_state(model.IN_USE)
                    node.comment = request.requestor
                    tx.set_data(paths.node(node_id), node.to_bytes(), version=version)
                    nodes.append(node)
                tx.delete(request_path(request.id))
                results = tx.commit()
                if not any(isinstance(r, Exception) for r in results):
                    break
            else:
                raise NodeRequestError(f"request {request.id}: could not mark its nodes in use ({results})")
        except Exception:
            for node_id in request.nodes:
                self._unlock(node_id)
            raise
        with self._mutex:
            for node, stat in zip(nodes, results, strict=False):
                self._versions[node.id] = (node, stat.version)
        return nodes

    def ssh(self, node: Node, timeout: float = 10.0) -> paramiko.SSHClient:
        """A paramiko client connected to the node, host key verified against the pinned keys."""
        return connect_ssh(node, timeout)

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        """Give a node back: used (the launcher deletes it) or held for `hold_hours` with `reason` (for the build
        of `change`, "N,P", owned by `owner`, who may then ask for access to it)."""
        with self._mutex:
            cached = self._versions.pop(node.id, None)
        for _ in range(5):
            if cached is None:
                try:
                    cached = read_node(self.zk, node.id)
                except NoNodeError:
                    self._unlock(node.id)
                    return
            current, version = Node.from_dict(cached[0].to_dict()), cached[1]
            hold, why = held, reason
            if not hold and current.hold_requested:
                hold, why = True, current.hold_requested
            tx = self.zk.client.transaction()
            if hold:
                current.set_state(model.HOLD)
                current.hold_reason = why
                current.hold_until = time.time() + hold_hours * 3600
                if held:
                    current.hold_change, current.hold_owner = change, owner
                tx.set_data(paths.node(node.id), current.to_bytes(), version=version)
            else:
                current.set_state(model.USED)
                tx.set_data(paths.node(node.id), current.to_bytes(), version=version)
                tx.create(paths.released_node(node.id), b"")
            results = tx.commit()
            if not any(isinstance(r, Exception) for r in results):
                break
            cached = None  # changed under us (an operator asked for a hold): read and try again
        else:
            raise NodeRequestError(f"node {node.id}: could not release it (it keeps changing)")
        self._unlock(node.id)

    def release_after_build(self, node: Node, failed: bool, project: str, job: str, change: str,
                            reason: str = "") -> bool:
        """Release after a build: held if an autohold matches a failed build, else used. True if held."""
        if failed:
            hold = claim_autohold(self.zk, project, job, change, node.id)
            if hold is not None:
                self.release(node, held=True, reason=hold.reason or reason or f"autohold {hold.id}",
                             hold_hours=hold.hold_hours)
                return True
        self.release(node)
        return False

    def _unlock(self, node_id: str) -> None:
        with self._mutex:
            lock = self._locks.pop(node_id, None)
        if lock is not None:
            try:
                lock.release()
            except Exception:
                log.warning("could not release the lock of node %s", node_id)


# -- autoholds ------------------------------------------------------------------------------------------------
def add_autohold(zk: ZKClient, hold: Autohold) -> str:
    path = zk.client.create(f"{paths.HOLDS}/hold-", hold.to_bytes(), sequence=True, makepath=True)
    return path.rsplit("/", 1)[1]


def list_autoholds(zk: ZKClient) -> list[Autohold]:
    out = []
    try:
        names = sorted(zk.client.get_children(paths.HOLDS))
    except NoNodeError:
        return []
    for name in names:
        try:
            raw, _ = zk.client.get(paths.hold(name))
        except NoNodeError:
            continue
        h = Autohold.from_bytes(raw)
        h.id = name
        out.append(h)
    return out


def delete_autohold(zk: ZKClient, hold_id: str) -> None:
    try:
        zk.client.delete(paths.hold(hold_id))
    except NoNodeError:
        pass


def claim_autohold(zk: ZKClient, project: str, job: str, change: str, node_id: str) -> Autohold | None:
    """Take one unit of the first autohold matching this failed build (atomically); None if none matches."""
    for hold in list_autoholds(zk):
        if hold.project not in ("", project) or hold.job not in ("", job):
            continue
        if not re.fullmatch(hold.change or ".*", change):
            continue
        try:
            raw, stat = zk.client.get(paths.hold(hold.id))
        except NoNodeError:
            continue
        current = Autohold.from_bytes(raw)
        current.id = hold.id
        if len(current.held_nodes) >= current.count:
            continue
        current.held_nodes.append(node_id)
        try:
            zk.client.set(paths.hold(hold.id), current.to_bytes(), version=stat.version)
        except (BadVersionError, NoNodeError):
            return claim_autohold(zk, project, job, change, node_id)
        return current
    return None


# -- operators' node changes: the CLI and the web admin API share these --------------------------------------------
class NodeChangeError(Exception):
    """An operator's change to a node was refused; `status` says why in HTTP terms (404 no node, 409 wrong state)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def change_node(zk: ZKClient, node_id: str, change: Callable[[Node, object], None]) -> Node:
    """Apply `change(node, transaction)` with a versioned write, retried on a concurrent update."""
    for _ in range(5):
        try:
            raw, stat = zk.client.get(paths.node(node_id))
        except NoNodeError:
            raise NodeChangeError(f"no node {node_id}", 404) from None
        node = Node.from_bytes(raw)
        tx = zk.client.transaction()
        change(node, tx)
        tx.set_data(paths.node(node_id), node.to_bytes(), version=stat.version)
        results = tx.commit()
        if not any(isinstance(r, Exception) for r in results):
            return node
        if not any(isinstance(r, (BadVersionError, NoNodeError, NodeExistsError)) for r in results):
            raise NodeChangeError(f"node {node_id}: {[type(r).__name__ for r in results]}", 500)
    raise NodeChangeError(f"node {node_id} keeps changing; try again", 409)


def hold_node(zk: ZKClient, node_id: str, reason: str, hours: float = 24.0) -> Node:
    """Hold a node for `hours`: a ready one at once, an allocated or in-use one when its consumer releases it."""

    def change(node: Node, tx) -> None:
        if node.state == model.READY:
            tx.delete(paths.ready_node(node.label, model.ready_entry(node)))
            node.set_state(model.HOLD)
            node.hold_reason, node.hold_until = reason, time.time() + hours * 3600
        elif node.state in (model.IN_USE, model.ALLOCATED):
            node.hold_requested = reason  # held when its consumer releases it
        elif node.state == model.HOLD:
            node.hold_reason, node.hold_until = reason, time.time() + hours * 3600
        else:
            raise NodeChangeError(f"node {node.id} is {node.state}; only ready, allocated or in-use nodes can be held")

    return change_node(zk, node_id, change)


def release_node(zk: ZKClient, node_id: str, allowed: tuple[str, ...] = (model.HOLD,),
                 comment: str = "released by an operator") -> Node:
    """Mark a node used so that the launcher deletes it (by default only a held one: `release`)."""
    zk.client.ensure_path(paths.NODES_RELEASED)

    def change(node: Node, tx) -> None:
        if node.state not in allowed:
            raise NodeChangeError(f"node {node.id} is {node.state} (expected {' or '.join(allowed)})")
        if node.state == model.READY:
            tx.delete(paths.ready_node(node.label, model.ready_entry(node)))
        node.set_state(model.USED)
        node.comment = comment
        tx.create(paths.released_node(node.id), b"")

    return change_node(zk, node_id, change)
