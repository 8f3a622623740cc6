"""Draining a provider flagged as a job-failure outlier, when the layout asks for it (`nodepool:
auto-drain-outliers: true`), through the node pool's own drain: the launcher then launches nothing there.

A provider is never drained when it is the last undrained one serving one of its labels: those jobs would have no
node at all.  Undraining stays with operators (`gatekeeper undrain`), who judge when the cloud is fixed.
"""

from __future__ import annotations

import logging
from typing import Any

from gatekeeper.config.model import Layout
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.provider_store import ProviderStore

log = logging.getLogger("gatekeeper.history.autodrain")
audit = logging.getLogger("gatekeeper.audit")

REASON = "automatically, as a job-failure outlier"


class OutlierDrain:
    """Drains flagged providers; remembers which ones it already said it must keep, to say it once."""

    def __init__(self, zk: ZKClient) -> None:
        self.store = ProviderStore(zk)
        self._kept: set[str] = set()

    def apply(self, layout: Layout | None, outliers: list[dict[str, Any]]) -> list[str]:
        """Drain the flagged providers that may be drained; returns the names drained now."""
        if layout is None or not layout.nodepool.auto_drain_outliers:
            return []
        providers = layout.nodepool.providers
        drained = {name for name in providers if self.store.provider_state(name).drained}
        now: list[str] = []
        for outlier in outliers:
            name = outlier["provider"]
            if name in drained or name not in providers:
                continue
            alone = sorted(label for label in providers[name].labels
                           if not any(label in p.labels for other, p in providers.items()
                                      if other != name and other not in drained))
            if alone:
                if name not in self._kept:
                    self._kept.add(name)
                    log.warning("provider %s is a job-failure outlier but is not drained automatically: it is the "
                                "last undrained provider serving %s", name, ", ".join(alone))
                continue
            self._kept.discard(name)
            reason = f"{REASON} ({outlier.get('description', '')})"
            self.store.set_drained(name, True, reason)
            drained.add(name)
            now.append(name)
            log.warning("provider %s drained %s", name, reason)
            audit.info("provider %s drained %s", name, reason)
        return now
