"""A launcher's claim of a request and the reset of a request its launcher lost, in ZooKeeper. A part of
gatekeeper.zk.nodes.NodeStore.

Both move nodes with the request in one transaction: a claim allocates the ready nodes it takes and creates the
records of those it launches; a reset gives the nodes allocated to the request back to the ready index. A node is
never both ready and allocated, and never allocated to a request that does not hold it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kazoo.exceptions import BadVersionError, NoNodeError

from gatekeeper.zk import node_records as model
from gatekeeper.zk import paths
from gatekeeper.zk.node_records import Node, NodeRequest, ready_entry
from gatekeeper.zk.nodes_pending import Pending, failed

log = logging.getLogger("gatekeeper.zk.nodes")


def allocate(tx, picks: list[tuple[str, Node, int]], request_id: str) -> list[tuple[Node, int]]:
    """Add to transaction `tx` the allocation of ready nodes (`picks`: ready entry, node, version) to a request:
    each out of the ready index and written allocated, if unchanged. Returns (the node as written, its version
    before)."""
    out = []
    for entry, node, version in picks:
        node = Node.from_dict(node.to_dict())
        node.set_state(model.ALLOCATED)
        node.request = request_id
        tx.delete(paths.ready_node(node.label, entry))
        tx.set_data(paths.node(node.id), node.to_bytes(), version=version)
        out.append((node, version))
    return out


@dataclass
class Moved:
    """A claim or a reset written: the request's new version and the moved nodes with theirs."""

    version: int
    nodes: list[tuple[Node, int]]


class RequestClaims:
    """The claim and reset methods of NodeStore (which provides the client they use)."""

    def claim_request(self, req: NodeRequest, version: int, create: list[Node],
                      picks: list[tuple[str, Node, int]] = ()) -> Pending:
        """Versioned write of a request a launcher claims, with the records of the nodes it launches for it and
        its ready nodes it takes (`picks`: ready entry, node, node version; allocated to it), in one transaction,
        sent without waiting: result() is a Moved (the picks as written), or None if the request or a pick
        changed or went away meanwhile."""
        tx = self.kz.transaction()
        tx.set_data(paths.node_request(req.id), req.to_bytes(), version=version)
        for node in create:
            tx.create(paths.node(node.id), node.to_bytes())
            tx.create(paths.node_lock(node.id), b"")
        taken = [node for node, _ in allocate(tx, picks, req.id)]

        def interpret(results) -> Moved | None:
            if isinstance(results, Exception) or failed(results):
                expected = (BadVersionError, NoNodeError)
                if isinstance(results, Exception) or not (isinstance(results[0], expected) or any(
                        isinstance(r, expected) for r in results[1 + 2 * len(create):])):
                    log.error("request %s: could not claim it with its nodes: %s", req.id, results)
                return None
            at = 1 + 2 * len(create)
            return Moved(results[0].version,
                         [(node, results[at + 2 * i + 1].version) for i, node in enumerate(taken)])
        return Pending(tx.commit_async(), interpret)

    def reset_request_async(self, req: NodeRequest, version: int, nodes: list[tuple[Node, int]]) -> Pending:
        """Offer a request again (written as given, with its version) and give the nodes allocated to it (each
        with its version) back to the ready index, in one transaction, sent without waiting: result() is a Moved
        (the nodes as written, ready), or None if the request or one of the nodes changed meanwhile."""
        tx = self.kz.transaction()
        tx.set_data(paths.node_request(req.id), req.to_bytes(), version=version)
        freed = []
        at = []  # the index in the results of each node's write
        for node, node_version in nodes:
            node = Node.from_dict(node.to_dict())
            ready = node.free()  # (held instead, if an operator asked for a hold of it)
            at.append(len(tx.operations))
            tx.set_data(paths.node(node.id), node.to_bytes(), version=node_version)
            if ready:
                tx.create(paths.ready_node(node.label, ready_entry(node)), b"")
            freed.append(node)

        def interpret(results) -> Moved | None:
            if isinstance(results, Exception) or failed(results):
                log.debug("request %s: reset refused (%s)", req.id, results)
                return None
            return Moved(results[0].version, [(node, results[i].version) for i, node in zip(at, freed, strict=True)])
        return Pending(tx.commit_async(), interpret)
