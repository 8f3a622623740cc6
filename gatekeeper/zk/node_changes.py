"""Operators' changes to nodes (hold, release, delete) and autohold requests, through the node store: what the
launcher's CLI and the web's admin API share."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kazoo.exceptions import NoNodeError

from gatekeeper.zk import node_records as model
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import MAX_HOLD_HOURS, Autohold, Node
from gatekeeper.zk.nodes import NodeStore, NodeStoreError, node_holder


# -- autoholds ------------------------------------------------------------------------------------------------
def add_autohold(zk: ZKClient, hold: Autohold) -> str:
    return NodeStore(zk).add_autohold(hold)


def list_autoholds(zk: ZKClient) -> list[Autohold]:
    return [hold for hold, _ in NodeStore(zk).autoholds()]


def delete_autohold(zk: ZKClient, hold_id: str) -> list[str]:
    """Delete autohold `hold_id` and release the nodes it holds still (as Zuul does: they are marked used, and
    their launcher deletes them); returns the ids of the nodes released."""
    store = NodeStore(zk)
    held = next((hold.held_nodes for hold, _ in store.autoholds() if hold.id == hold_id), [])
    store.delete_autohold(hold_id)
    released = []
    for node_id in held:
        try:
            release_node(zk, node_id, comment=f"released with autohold {hold_id}")
        except NodeChangeError:  # gone already, or no longer held (released, or held again by an operator)
            continue
        released.append(node_id)
    return released


def claim_autohold(zk: ZKClient, project: str, job: str, change: str, node_id: str) -> Autohold | None:
    """Take one unit of the first autohold matching this failed build (atomically); None if none matches."""
    return NodeStore(zk).claim_autohold(project, job, change, node_id)


# -- operators' node changes: the CLI and the web admin API share these --------------------------------------------
class NodeChangeError(Exception):
    """An operator's change to a node was refused; `status` says why in HTTP terms (404 no node, 409 wrong state)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


def change_node(zk: ZKClient, node_id: str, change: Callable[[Node], bool]) -> Node:
    """Apply `change(node)` (returning True to signal its release) with a versioned write, retried on a race."""
    try:
        node = NodeStore(zk).change_node(node_id, change)
    except NodeStoreError as e:
        raise NodeChangeError(str(e), 409) from None
    if node is None:
        raise NodeChangeError(f"no node {node_id}", 404)
    return node


def hold_node(zk: ZKClient, node_id: str, reason: str, hours: float = 24.0, replace: bool = False) -> Node:
    """Hold a node for `hours` (at most MAX_HOLD_HOURS): a ready one at once, an allocated or in-use one when its
    consumer releases it, for the hours asked here. A node held already, or with a hold asked already, is refused
    unless `replace`: another's hold (a failed build's, an operator's) is not shortened or renamed by accident."""
    if not 0 < hours <= MAX_HOLD_HOURS:  # also refuses NaN
        raise NodeChangeError(f"node {node_id}: a hold lasts more than 0 and at most {MAX_HOLD_HOURS} hours, "
                              f"not {hours:g}", 400)

    def change(node: Node) -> bool:
        held = _held_already(node)
        if held and not replace:
            raise NodeChangeError(f"node {node.id} {held}; to put this reason and expiry in its place, hold it "
                                  'with --replace (admin API: "replace": true), or release it')
        if node.state in (model.READY, model.HOLD):
            if node.state != model.HOLD:  # (a replaced hold keeps its start: max-hold-age counts from it)
                node.set_state(model.HOLD)
            node.hold_reason, node.hold_until = reason, time.time() + hours * 3600
        elif node.state in (model.IN_USE, model.ALLOCATED):
            node.hold_requested, node.hold_requested_hours = reason, hours  # held so when its consumer releases it
        else:
            raise NodeChangeError(f"node {node.id} is {node.state}; only ready, allocated or in-use nodes can be held")
        return False

    return change_node(zk, node_id, change)


def _held_already(node: Node) -> str:
    """How `node` is held already, as a phrase after its name ("" when it is not): the hold another hold would
    replace."""
    if node.state == model.HOLD:
        until = (f"until {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(node.hold_until))}" if node.hold_until
                 else "with no expiry")
        return f"is held already {until} ({node.hold_reason or 'no reason given'})"
    if node.state in (model.IN_USE, model.ALLOCATED) and node.hold_requested:
        return f"has a hold asked already, for when its build ends ({node.hold_requested})"
    return ""


DELETABLE = (model.READY, model.HOLD, model.IN_USE, model.USED, model.FAILED, model.ALLOCATED)


def delete_node(zk: ZKClient, node_id: str) -> Node:
    """Nodepool's `delete`: mark a node used so that its launcher deletes it, unless its consumer holds it locked
    (a running build: Nodepool's delete must take the node's lock first). The versioned write fails if a consumer
    locked it after the look, and the look is taken again."""
    store = NodeStore(zk)

    def change(node: Node) -> bool:
        if node.state not in DELETABLE:
            raise NodeChangeError(f"node {node.id} is {node.state} (expected {' or '.join(DELETABLE)})")
        if store.is_locked(node.id):
            try:
                holder = zk.client.get(node_holder(node.id))[0].decode(errors="replace") or "its consumer"
            except NoNodeError:  # released meanwhile: the write below fails on its version, and we look again
                holder = "its consumer"
            raise NodeChangeError(f"node {node.id} is {node.state} and locked by {holder} (a running build): not "
                                  "deleted; it is deleted when its build gives it back, or hold it to keep it")
        node.set_state(model.USED)
        node.comment = "deleted by an operator"
        return True

    return change_node(zk, node_id, change)


def wait_node_gone(zk: ZKClient, node_id: str, timeout: float) -> bool:
    """Wait until the node's record is removed (its launcher deleted its server); False if it is still there after
    `timeout` seconds."""
    gone = threading.Event()

    def watch(_event=None) -> None:
        if zk.client.exists(paths.node(node_id), watch=watch) is None:
            gone.set()

    watch()
    return gone.wait(timeout)


def release_node(zk: ZKClient, node_id: str, allowed: tuple[str, ...] = (model.HOLD,),
                 comment: str = "released by an operator") -> Node:
    """Mark a node used so that the launcher deletes it (by default only a held one: `release`)."""

    def change(node: Node) -> bool:
        if node.state not in allowed:
            raise NodeChangeError(f"node {node.id} is {node.state} (expected {' or '.join(allowed)})")
        node.set_state(model.USED)
        node.comment = comment
        return True

    return change_node(zk, node_id, change)
