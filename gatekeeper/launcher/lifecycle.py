"""A managed node's way through its states, as the launcher's main loop writes it: ready, back to ready, used,
deleting, gone. Every write goes through the node store; the provider manager's node cache follows each write.

Main loop only (cleanup and the image builder reach it by posting to the loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gatekeeper.launcher import model
from gatekeeper.launcher.model import Node, ready_entry
from gatekeeper.launcher.provider_manager import ProviderManager
from gatekeeper.launcher.ready_index import ReadyIndex
from gatekeeper.zk.nodes import NodeStore, Pending, UnreadableRecord

log = logging.getLogger("gatekeeper.launcher.lifecycle")


class NodeLifecycle:
    def __init__(self, store: NodeStore, post: Callable, index: ReadyIndex,
                 after: Callable[[Pending, Callable], None]) -> None:
        self.store = store
        self.post = post
        self.after = after  # run a callback with a sent write's answer on the main loop, once it is answered
        self.index = index  # the launcher's copy of the ready index, kept in step
        self.released_seen: set[str] = set()
        self.signals_done: set[str] = set()  # release signals of deleted nodes, removed in one batch (flush)

    def write(self, manager: ProviderManager, node: Node, version: int, add_ready: bool = False) -> bool:
        """Versioned write of a managed node; on a conflict the cache is re-read and False returned."""
        new_version = self.store.write_node(node, version, add_ready=add_ready)
        if new_version is None:
            log.warning("node %s: write conflicted; re-reading", node.id)
            self.refresh(manager, node.id)
            return False
        manager.nodes[node.id] = (node, new_version)
        if add_ready:
            self.index.add(node.label, ready_entry(node))
        return True

    def write_async(self, manager: ProviderManager, node: Node, version: int, add_ready: bool = False) -> None:
        """A versioned write of a managed node, sent without waiting. The cache takes the node at once, with the
        version the write gives it (one session's writes are applied in order, so a later write of the node, a
        hand-out included, builds on it), and its ready entry if `add_ready`; if the write is refused, the entry
        is withdrawn and the node re-read."""
        pending = self.store.write_node_async(node, version, add_ready=add_ready)
        manager.nodes[node.id] = (node, version + 1 if version >= 0 else -1)
        entry = ready_entry(node) if add_ready else ""
        if entry:
            self.index.add(node.label, entry)

        def done(new_version: int | None) -> None:
            if new_version is not None:
                if manager.nodes.get(node.id, (None,))[0] is node:
                    manager.nodes[node.id] = (node, new_version)
                return
            log.warning("node %s: write conflicted; re-reading", node.id)
            if entry:
                self.index.remove(node.label, entry)
            if manager.nodes.get(node.id, (None,))[0] is node:
                self.refresh(manager, node.id)
        self.after(pending, done)

    def refresh(self, manager: ProviderManager, node_id: str) -> Node | None:
        """Re-read a node into the manager's cache; None (and forgotten) when gone or unreadable."""
        try:
            found = self.store.read_node(node_id)
        except UnreadableRecord:
            found = None
        if found is None:
            manager.nodes.pop(node_id, None)
            return None
        manager.nodes[node_id] = found
        return found[0]

    def make_ready(self, manager: ProviderManager, node: Node, version: int) -> None:
        """Write the node ready and add it to the ready index, in one transaction (sent without waiting). A copy is
        written: the object given may be one a write still in flight holds."""
        node = Node.from_dict(node.to_dict())
        self.write_async(manager, node, version, add_ready=node.free())  # (held, if a hold was asked meanwhile)

    def return_to_ready(self, manager: ProviderManager, node_id: str) -> None:
        node, version = manager.nodes[node_id]
        self.make_ready(manager, node, version)

    def delete(self, manager: ProviderManager, node_id: str, refresh: bool = False) -> None:
        """Mark the node deleting (a ready one only if it is still unallocated) and delete its server."""
        node = self.refresh(manager, node_id) if refresh else manager.nodes.get(node_id, (None,))[0]
        if node is None or node_id in manager.deleting:
            return
        if node.state == model.HOLD:
            return  # released into hold: cleanup deletes it when the hold expires
        if node.state == model.READY:
            if not self.store.remove_ready_entry(node):
                return  # handed out meanwhile
            self.index.remove(node.label, ready_entry(node))
        if node.state != model.DELETING:
            node = Node.from_dict(node.to_dict())  # (the cached object may be one a write in flight holds)
            node.set_state(model.DELETING)
            self.write(manager, node, manager.nodes[node_id][1])
        manager.start_delete(node)

    def delete_released(self, manager: ProviderManager, node_id: str, check: bool = False) -> None:
        """A consumer (or operator) released the node as used: it is ours again; recycle or delete it. `check`:
        the signal comes from a listing, which may predate our recycling of the node: look whether it is there."""
        node, _ = manager.nodes[node_id]
        if node_id in manager.deleting:
            return
        if check and node.state == model.READY and not self.store.is_released(node_id):
            return  # a stale listing from before we recycled this node
        node = Node.from_dict(node.to_dict())
        if manager.recycles_nodes and manager.adapter.configured(node.external_id) and \
                node.label in manager.config.labels:
            # the server outlives its node (a static host): hand the same record out again (the write is not
            # waited for, so many releases share one round trip)
            node.request = node.comment = ""
            node.set_state(model.READY)

            def done(version: int | None) -> None:
                if version is None:
                    self._delete_used(manager, node)
                    return
                manager.nodes[node_id] = (node, version)
                self.released_seen.discard(node_id)
                self.index.add(node.label, ready_entry(node))
            self.after(self.store.write_node_async(node, -1, add_ready=True, remove_released=True), done)
            return
        self._delete_used(manager, node)

    def _delete_used(self, manager: ProviderManager, node: Node) -> None:
        node_id = node.id
        node.set_state(model.USED)
        manager.nodes[node_id] = (node, -1)
        # the record says "used" while a quick delete runs; it is marked "deleting" only if the delete is slow
        manager.start_delete(node, on_slow=lambda n=node_id: self.post(lambda: self.mark_deleting(manager, n)))

    def mark_deleting(self, manager: ProviderManager, node_id: str) -> None:
        entry = manager.nodes.get(node_id)
        if entry is None or node_id not in manager.deleting:
            return
        node = Node.from_dict(entry[0].to_dict())
        node.set_state(model.DELETING)
        version = self.store.write_node(node, -1)  # unconditional: nobody else writes it now
        if version is not None:
            manager.nodes[node_id] = (node, version)

    def on_deleted(self, manager: ProviderManager, node_id: str, ok: bool) -> None:
        """Its server is gone: remove the node's record (not waited for, so many deleted servers share one round
        trip; the record counts against quota until it is answered)."""
        manager.deleting.discard(node_id)
        if not ok:
            log.error("provider %s: node %s's server would not go away; cleanup will retry", manager.name, node_id)
            return

        def done(deleted: bool) -> None:
            if not deleted:
                log.warning("node %s is locked by a consumer; keeping its record", node_id)
                return
            if node_id in self.released_seen:
                self.signals_done.add(node_id)
            manager.nodes.pop(node_id, None)
            manager.quota_blocked_until = 0.0  # room was freed: try again now
        self.after(self.store.delete_node_async(node_id), done)

    def flush_signals(self) -> None:
        """Remove the release signals of nodes deleted since the last flush, in one transaction: one change of
        the released list (so one re-read by every launcher's watch) for many nodes instead of one each."""
        if self.signals_done:
            done, self.signals_done = sorted(self.signals_done), set()
            self.store.remove_released(done)
