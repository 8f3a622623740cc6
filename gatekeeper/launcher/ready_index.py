"""The launcher's copy of the ready index (label -> ready-index entries, oldest first), kept by the main loop.

The loop changes it as it decides (a hand-out takes entries, a node made ready adds one) and refreshes a label
with a read it does not wait for. The read's answer replaces the label's entries, and the changes the loop made
after sending it are applied again on top: the read may predate them, never the other way round (one session's
requests are answered in order). Nothing here blocks on ZooKeeper.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable

from gatekeeper.zk.nodes import NodeStore, Pending

log = logging.getLogger("gatekeeper.launcher.ready_index")

RETRY_S = 0.5  # after a read that failed (a lost connection), the label is read again no sooner than this


class ReadyIndex:
    def __init__(self, store: NodeStore, after: Callable[[Pending, Callable], None]) -> None:
        self.store = store
        self.after = after  # run a callback with an answer on the main loop
        self.entries: dict[str, list[str]] = {}
        self.dirty: set[str] = set()  # labels to read afresh at their next use
        self._reading: dict[str, list[tuple[bool, str]]] = {}  # label -> changes made since its read was sent
        self._read_at: dict[str, float] = {}  # label -> when its last read was answered (monotonic)
        self._retry_at: dict[str, float] = {}

    def get(self, label: str) -> list[str]:
        """The label's entries as known; a dirty label's read is sent (answered later)."""
        if label in self.dirty:
            self.refresh(label)
        return self.entries.setdefault(label, [])

    def add(self, label: str, entry: str) -> None:
        entries = self.entries.setdefault(label, [])
        if entry not in entries:
            bisect.insort(entries, entry)
        if label in self._reading:
            self._reading[label].append((True, entry))

    def remove(self, label: str, entry: str) -> None:
        entries = self.entries.get(label, [])
        if entry in entries:
            entries.remove(entry)
        if label in self._reading:
            self._reading[label].append((False, entry))

    def mark_dirty(self, labels) -> None:
        self.dirty.update(labels)

    def fresh(self, labels, within: float, now: float | None = None) -> bool:
        """Whether every label's entries come from a read answered less than `within` seconds ago (and none is
        due) at `now` (the start of the main loop's batch: a read answered in that batch is fresh however long
        the batch takes). Counted from the answer, not the request: under load a round trip may take longer than
        `within`, and a read must still be able to count as fresh once it is in."""
        now = time.monotonic() if now is None else now
        return all(label not in self.dirty and label not in self._reading
                   and now - self._read_at.get(label, -within) < within for label in labels)

    def refresh(self, label: str) -> None:
        """Send a read of the label's index, unless one is on its way (or a failed one is too recent: it is then
        sent at a use of the label after RETRY_S)."""
        if label in self._reading:
            return
        if time.monotonic() < self._retry_at.get(label, 0.0):
            self.dirty.add(label)
            return
        self.dirty.discard(label)
        self._reading[label] = []
        self.after(self.store.ready_entries_async(label), lambda found: self._answered(label, found))

    def _answered(self, label: str, found: list[str] | None) -> None:
        changes = self._reading.pop(label, [])
        if found is None:
            self._retry_at[label] = time.monotonic() + RETRY_S
            self.dirty.add(label)
            return
        entries = set(found)
        for added, entry in changes:
            if added:
                entries.add(entry)
            else:
                entries.discard(entry)
        self.entries[label] = sorted(entries)
        self._read_at[label] = time.monotonic()
