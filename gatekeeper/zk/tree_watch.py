"""A persistent recursive watch (ZooKeeper 3.6+ `addWatch`): one watch on a subtree reports every znode created,
changed or deleted under it, with its path, for as long as the connection lasts, with no read to re-arm it after
each event. A children watch costs a listing per change; the node pool's request and release directories change
twice per node request, so this halves what watching them costs.

kazoo (2.11) sends no addWatch: the request goes through its request queue like any other, and the events, which
arrive for paths kazoo has no one-shot watcher on, are taken from its connection before kazoo's own dispatch (which
they leave untouched). After a reconnection the watch is made again and `on_resync` is called: what changed while
the connection was down must then be read afresh.
"""

from __future__ import annotations

import logging
import threading
from collections import namedtuple
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.protocol.serialization import Watch, int_struct, write_string
from kazoo.protocol.states import Callback, KazooState

log = logging.getLogger("gatekeeper.zk.tree_watch")

ADD_WATCH = 106  # ZooKeeper's OpCode.addWatch
PERSISTENT_RECURSIVE = 1  # AddWatchMode.PERSISTENT_RECURSIVE
KINDS = {1: "created", 2: "deleted", 3: "changed"}  # the event types a recursive watch delivers


class _AddWatch(namedtuple("_AddWatch", "path mode")):
    type = ADD_WATCH

    def serialize(self) -> bytearray:
        b = bytearray()
        b.extend(write_string(self.path))
        b.extend(int_struct.pack(self.mode))
        return b

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> bool:
        return True  # the answer has no body


class TreeWatch:
    """Calls `on_event(kind, name)` ("created", "deleted" or "changed"; `name` the path below `path`) for every
    change under `path`, in ZooKeeper's order, on kazoo's callback thread (`now`: on its connection thread as the
    event is read, one thread switch less, for an `on_event` that only hands the event on, such as a queue put: it
    must not block nor send any ZooKeeper request, not even without waiting, as kazoo wakes that thread through a
    socket only that thread drains); `on_resync()` (on a thread of its own) each time the watch was made, first at
    `start()`, so that the caller reads the subtree once."""

    def __init__(self, kz: KazooClient, path: str, on_event: Callable[[str, str], None],
                 on_resync: Callable[[], None], now: bool = False) -> None:
        self.kz = kz
        self.path = path.rstrip("/")
        self.prefix = self.path + "/"
        self.on_event = on_event
        self.on_resync = on_resync
        self.now = now
        self._stopped = False
        self._lost = False  # the connection dropped since the watch was made

    def start(self) -> TreeWatch:
        _install(self.kz).append(self)
        self.kz.add_listener(self._on_state)
        self._add_and_resync()
        return self

    def stop(self) -> None:
        self._stopped = True
        self.kz.remove_listener(self._on_state)
        watches = _install(self.kz)
        if self in watches:
            watches.remove(self)

    def _add_and_resync(self) -> None:
        answer = self.kz.handler.async_result()
        self.kz._call(_AddWatch(self.kz.chroot + self.path, PERSISTENT_RECURSIVE), answer)
        answer.get()
        self.on_resync()

    def _on_state(self, state: str) -> None:
        # kazoo calls listeners on its connection thread: no request may wait there
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            self._lost = True
        elif state == KazooState.CONNECTED and self._lost and not self._stopped:
            self._lost = False
            threading.Thread(target=self._again, name=f"tree-watch-{self.path}", daemon=True).start()

    def _again(self) -> None:
        try:
            self._add_and_resync()
        except Exception as e:  # the connection dropped again: the next CONNECTED tries again
            self._lost = True
            log.warning("watch on %s: could not be made again after a reconnection: %s", self.path, e)

    def _event(self, kind: str, path: str) -> None:
        if self._stopped:
            return
        try:
            self.on_event(kind, path[len(self.prefix):])
        except Exception:  # (on the connection thread, an exception would drop the connection)
            log.exception("watch on %s: handling the event %s of %s failed", self.path, kind, path)


def _install(kz: KazooClient) -> list[TreeWatch]:
    """The tree watches of this client, with the hook that hands them their events (installed once)."""
    conn = kz._connection
    watches = getattr(conn, "_gatekeeper_tree_watches", None)
    if watches is not None:
        return watches
    watches = conn._gatekeeper_tree_watches = []
    kazoo_dispatch = conn._read_watch_event

    def read_watch_event(buffer: bytes, offset: int):
        event, _ = Watch.deserialize(buffer, offset)
        kind = KINDS.get(event.type)
        if kind is not None and watches:
            path = kz.unchroot(event.path)
            for watch in list(watches):
                if not path.startswith(watch.prefix):
                    continue
                if watch.now:
                    watch._event(kind, path)
                else:
                    kz.handler.dispatch_callback(Callback("watch", watch._event, (kind, path)))
        return kazoo_dispatch(buffer, offset)

    conn._read_watch_event = read_watch_event
    return watches

