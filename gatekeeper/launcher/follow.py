"""A launcher that follows the published layout's node-pool section, as Nodepool follows its configuration file:
when `gatekeeper reload` (or a scheduler) publishes a layout whose node-pool section differs from the one the
launcher runs, the launcher is replaced by one on the new section. Nodes and requests live in ZooKeeper, so the
new launcher takes them over as after a restart; a layout whose node-pool section did not change changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kazoo.recipe.watchers import DataWatch

from gatekeeper.config.layout import NodePool
from gatekeeper.config.store import read_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.launcher.launcher import Launcher
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient

log = logging.getLogger("gatekeeper.launcher.follow")


class LayoutFollower:
    """Runs `make(nodepool).start()` and replaces it whenever the published layout's node-pool section changes."""

    def __init__(self, zk: ZKClient, nodepool: NodePool, make: Callable[[NodePool], Launcher]) -> None:
        self.zk = zk
        self.nodepool = nodepool
        self.make = make
        self.launcher: Launcher | None = None
        self.replaced = 0  # how many times a new node-pool section was taken (for operators and tests)
        self.checked = 0  # how many published layouts were read
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="launcher-layout-follower", daemon=True)
        self._first = True

    def start(self) -> LayoutFollower:
        self.launcher = self.make(self.nodepool).start()
        DataWatch(self.zk.client, paths.LAYOUT, self._on_layout)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout=30)
        if self.launcher is not None:
            self.launcher.stop()

    def _on_layout(self, data, stat) -> bool | None:
        if self._stop.is_set():
            return False
        if self._first:  # the layout as it was when we started: the launcher runs its own file's section
            self._first = False
            return None
        self._changed.set()
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._changed.wait()
            self._changed.clear()
            if self._stop.is_set():
                return
            try:
                layout = read_layout(self.zk)
            except ConfigErrors as exc:  # published layouts parsed when published: only a newer version's
                log.warning("the published layout cannot be read here; the launcher keeps its node pool: %s",
                            "; ".join(str(e) for e in exc.errors))
                continue
            except Exception:
                log.exception("reading the published layout; the launcher keeps its node pool")
                continue
            self.checked += 1
            if layout is None or layout.nodepool == self.nodepool:
                continue
            log.info("the published layout changed the node pool: the launcher takes the new section "
                     "(providers %s)", ", ".join(layout.nodepool.providers) or "none")
            old, self.launcher = self.launcher, None
            if old is not None:
                old.stop()
            self.nodepool = layout.nodepool
            self.launcher = self.make(self.nodepool).start()
            self.replaced += 1
