"""A consumer's side of the node pool (the executor, a test, an operator's script): request nodes, wait, lock them,
mark them in use, give them back. Built on the node store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import Node, NodeRequest
from gatekeeper.zk.nodes import NodeStore, NodeStoreError

log = logging.getLogger("gatekeeper.zk.node_consumer")


class NodeConsumer:
    """Request, lock and release nodes: a consumer's side of the node pool. One per consumer process; thread-safe."""

    def __init__(self, zk: ZKClient, requestor: str = "") -> None:
        self.zk = zk
        self.store = NodeStore(zk)
        self.requestor = requestor
        self._versions: dict[str, tuple[Node, int]] = {}  # what we last wrote to each node we hold
        self._mutex = threading.Lock()

    @staticmethod
    def priority(precedence: int, position: int) -> int:
        """Pipeline precedence (0 high, 1 normal, 2 low) first, then position in its queue."""
        return precedence * 10000 + min(position, 9999)

    def request(self, labels: list[str], requestor: str | None = None, priority: int = 100,
                provider: str = "", avoid: Sequence[str] = ()) -> str:
        """Ask for one node per label (all from one provider: `provider` if named; not one of `avoid`, where an
        earlier attempt failed, while another provider can serve them); returns the request id.

        The request is ephemeral: if this consumer's ZooKeeper session ends, the request goes away with it.
        """
        return self.store.submit_request(labels, requestor or self.requestor, priority, provider, avoid)

    def get(self, request_id: str) -> NodeRequest | None:
        return self.store.get_request(request_id)

    def watch(self, request_id: str, callback: Callable[[NodeRequest | None], None]) -> None:
        """Call `callback(request)` once, when the request is fulfilled or failed (None: it vanished)."""
        self.store.watch_request(request_id, callback)

    def wait(self, request_id: str, timeout: float | None = None) -> NodeRequest:
        """Block until the request is fulfilled or failed; raises TimeoutError, NodeStoreError if it vanished."""
        box: list[NodeRequest | None] = []
        ev = threading.Event()

        def done(req: NodeRequest | None) -> None:
            box.append(req)
            ev.set()

        self.store.watch_request(request_id, done, now=True)  # (done only sets an event: fine on kazoo's thread)
        if not ev.wait(timeout):
            raise TimeoutError(f"node request {request_id} not fulfilled within {timeout}s")
        if box[0] is None:
            raise NodeStoreError(f"node request {request_id} disappeared")
        return box[0]

    def cancel(self, request_id: str) -> None:
        """Withdraw a request; nodes already allocated to it go back to the pool."""
        self.store.cancel_request(request_id)

    def lock_nodes(self, request: NodeRequest) -> list[Node]:
        """Lock the request's nodes, mark them in-use, and remove the request (one transaction). Returns the nodes."""
        taken = self.store.take_nodes(request, self.requestor or "consumer")
        with self._mutex:
            for node, version in taken:
                self._versions[node.id] = (node, version)
        return [node for node, _ in taken]

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        """Give a node back: used (the launcher deletes it) or held for `hold_hours` with `reason` (for the build
        of `change`, "N,P", owned by `owner`, who may then ask for access to it). The node's lock goes in the same
        transaction."""
        with self._mutex:
            cached = self._versions.pop(node.id, None)
        self.store.release(node.id, cached, held, reason, hold_hours, change, owner, locked=cached is not None)
