"""A durable FIFO of JSON events in ZooKeeper: producers append, one consumer processes then acks.

Each event is a sequential znode, so order is ZooKeeper's order.  An event is removed only after it was
processed (`ack`), so a consumer that dies mid-way sees it again: consumers must make handling idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import decode, encode

log = logging.getLogger("gatekeeper.zk.event_queue")

PREFIX = "q-"


class EventQueue:
    """Events under `path` as `q-0000000001`, oldest first."""

    def __init__(self, zk: ZKClient, path: str) -> None:
        self.zk = zk
        self.path = path
        self.zk.client.ensure_path(path)

    def put(self, event: dict[str, Any]) -> str:
        """Append `event`; returns its id. When this returns, the event is durable."""
        created = self.zk.client.create(f"{self.path}/{PREFIX}", encode(event), sequence=True)
        return created.rsplit("/", 1)[1]

    def put_many(self, events: list[dict[str, Any]]) -> list[str]:
        """Append several events in one ZooKeeper transaction (one round trip, all or nothing)."""
        if not events:
            return []
        tx = self.zk.client.transaction()
        for event in events:
            tx.create(f"{self.path}/{PREFIX}", encode(event), sequence=True)
        results = tx.commit()
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [r.rsplit("/", 1)[1] for r in results]

    def ids(self) -> list[str]:
        return sorted(c for c in self.zk.client.get_children(self.path) if c.startswith(PREFIX))

    def get(self, ident: str) -> dict[str, Any] | None:
        try:
            raw, _ = self.zk.client.get(f"{self.path}/{ident}")
        except NoNodeError:
            return None
        return decode(raw)

    def list(self) -> list[tuple[str, dict[str, Any]]]:
        """Every pending event, oldest first (an event acked meanwhile is skipped)."""
        out = []
        for ident in self.ids():
            event = self.get(ident)
            if event is not None:
                out.append((ident, event))
        return out

    def ack(self, ident: str) -> None:
        """Remove a processed event (no error if someone already did)."""
        try:
            self.zk.client.delete(f"{self.path}/{ident}")
        except NoNodeError:
            pass

    def __len__(self) -> int:
        return len(self.ids())

    def watch(self, callback: Callable[[list[str]], Any]) -> ChildrenWatch:
        """Call `callback(sorted ids)` now and whenever events are added or removed (from a kazoo thread)."""

        def on_children(children: list[str]) -> None:
            try:
                callback(sorted(c for c in children if c.startswith(PREFIX)))
            except Exception:
                log.exception("event queue watcher on %s failed", self.path)

        return ChildrenWatch(self.zk.client, self.path, on_children)
