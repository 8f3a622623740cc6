"""The launcher's copy of the ready index: reads it does not wait for, merged with what it changed meanwhile."""

from __future__ import annotations

from gatekeeper.launcher import ready_index
from gatekeeper.launcher.ready_index import ReadyIndex


class HeldReads:
    """A node store whose ready-index reads are answered when the test says, with what the test says."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.waiting: list = []

    def ready_entries_async(self, label: str) -> str:
        self.sent.append(label)
        return label

    def after(self, pending, done) -> None:
        self.waiting.append(done)

    def answer(self, found) -> None:
        self.waiting.pop(0)(found)


def test_a_read_answered_after_local_changes_keeps_them():
    store = HeldReads()
    index = ReadyIndex(store, store.after)
    index.mark_dirty(["debian"])
    assert index.get("debian") == [] and store.sent == ["debian"]  # sent, not waited for
    index.add("debian", "002-p-b")  # a node made ready after the read was sent
    index.remove("debian", "001-p-a")  # a hand-out of a node the read will still list
    assert not index.fresh(["debian"], 10.0)
    store.answer(["000-p-z", "001-p-a"])  # the index as it was when the read was sent
    assert index.get("debian") == ["000-p-z", "002-p-b"]
    assert index.fresh(["debian"], 10.0)


def test_one_read_at_a_time_and_a_failed_one_is_sent_again_after_a_while(monkeypatch):
    store = HeldReads()
    index = ReadyIndex(store, store.after)
    index.refresh("debian")
    index.refresh("debian")
    assert store.sent == ["debian"]
    store.answer(None)  # the read failed (a lost connection)
    assert not index.fresh(["debian"], 10.0) and "debian" in index.dirty
    index.get("debian")
    assert store.sent == ["debian"]  # not again before RETRY_S
    monkeypatch.setattr(ready_index.time, "monotonic", lambda: 1e9)  # RETRY_S later
    index.get("debian")
    assert store.sent == ["debian", "debian"]
