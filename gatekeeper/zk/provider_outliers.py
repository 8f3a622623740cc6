"""Providers flagged now as job-failure outliers, published for the services that act on it.

The history recorder, which sees every finished build, recomputes the outliers (gatekeeper.stats.outliers) after
storing new builds and publishes them at `/diagnosis/provider-outliers`.  An executor reads them (through a watch)
so that a failed build's diagnosis says when its provider is flagged; the auto-drain acts on them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import DataWatch

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import Record

log = logging.getLogger("gatekeeper.zk.provider_outliers")


@dataclass
class OutlierReport(Record):
    """The providers flagged now, each as gatekeeper.stats.outliers.outliers_from_history gives it."""

    outliers: list[dict[str, Any]] = field(default_factory=list)
    computed: float = field(default_factory=time.time)

    def get(self, provider: str) -> dict[str, Any] | None:
        return next((o for o in self.outliers if o.get("provider") == provider), None)


def read_outliers(zk: ZKClient) -> OutlierReport:
    """What was published last; an empty report when nothing was, or it cannot be read."""
    try:
        raw, _ = zk.client.get(paths.PROVIDER_OUTLIERS)
        return OutlierReport.from_bytes(raw)
    except NoNodeError:
        return OutlierReport(computed=0.0)
    except (ValueError, TypeError) as exc:
        log.warning("%s: unreadable outlier report ignored: %s", paths.PROVIDER_OUTLIERS, exc)
        return OutlierReport(computed=0.0)


def publish_outliers(zk: ZKClient, outliers: list[dict[str, Any]]) -> bool:
    """Publish the flagged providers; True when the set of flagged providers changed."""
    before = {o.get("provider") for o in read_outliers(zk).outliers}
    data = OutlierReport(outliers=list(outliers)).to_bytes()
    try:
        zk.client.set(paths.PROVIDER_OUTLIERS, data)
    except NoNodeError:
        zk.client.create(paths.PROVIDER_OUTLIERS, data, makepath=True)
    return before != {o.get("provider") for o in outliers}


class OutlierWatch:
    """The published outliers, kept current by a watch: reading them costs no ZooKeeper round trip."""

    def __init__(self, zk: ZKClient) -> None:
        self.zk = zk
        self._report = OutlierReport(computed=0.0)
        self._watching = False
        self._lock = threading.Lock()

    def get(self, provider: str) -> dict[str, Any] | None:
        """The provider's outlier entry when it is flagged now, else None."""
        with self._lock:
            if not self._watching:
                self._watching = True
                DataWatch(self.zk.client, paths.PROVIDER_OUTLIERS, self._changed)
            return self._report.get(provider)

    def _changed(self, data: bytes | None, _stat: object) -> None:
        report = OutlierReport(computed=0.0)
        if data:
            try:
                report = OutlierReport.from_bytes(data)
            except (ValueError, TypeError) as exc:
                log.warning("%s: unreadable outlier report ignored: %s", paths.PROVIDER_OUTLIERS, exc)
        self._report = report
