"""Static hosts an operator already has: "create" takes a free job slot of a host, "delete" frees it.

A host runs up to `max-parallel-jobs` nodes at once (Nodepool's static driver; default 1): each slot is one server
to the launcher. The first slot's id is the host's name, the others' `<name>#<n>` (n from 2), so that a host of one
slot keeps the id it always had.
"""

from __future__ import annotations

import threading

from gatekeeper.config.layout import StaticHost
from gatekeeper.launcher.providers.base import ProviderAdapter, QuotaError, ServerInfo


def slot_ids(host: StaticHost) -> list[str]:
    """The server ids of a host's job slots."""
    return [host.name] + [f"{host.name}#{n}" for n in range(2, host.max_parallel_jobs + 1)]


class StaticAdapter(ProviderAdapter):
    """Each job slot of a host is one server; a slot serves one node at a time, and is handed out again once
    released."""

    recycles_nodes = True
    boots = False
    uses_keypair = False

    def __init__(self, hosts: tuple[StaticHost, ...]) -> None:
        self.hosts = {h.name: h for h in hosts}
        # slot order: every host's first slot, then every host's second, ...: parallel nodes spread over hosts
        per_host = [slot_ids(h) for h in hosts]
        depth = max((len(s) for s in per_host), default=0)
        self.slots = {ids[i]: h for i in range(depth) for h, ids in zip(hosts, per_host, strict=True)
                      if i < len(ids)}
        self.in_use: dict[str, dict] = {}
        self._lock = threading.Lock()

    def create(self, name: str, image: str, flavor: str, metadata: dict, key_name: str = "",
               networks: tuple[str, ...] = (), userdata: str = "") -> str:
        label = metadata.get("gatekeeper-label", "")
        with self._lock:
            for slot, host in self.slots.items():
                if slot not in self.in_use and (not label or label in host.labels):
                    self.in_use[slot] = dict(metadata)
                    return slot
        raise QuotaError(f"no free static host for label {label!r}")

    def adopt(self, host_name: str, metadata: dict) -> None:
        """Mark a slot taken by a node that already exists (after a launcher restart)."""
        with self._lock:
            self.in_use[host_name] = dict(metadata)

    def _info(self, slot: str, metadata: dict | None = None) -> ServerInfo:
        host = self.slots[slot]
        return ServerInfo(slot, host.name, "ACTIVE", host.address, host.port, metadata=metadata or {},
                          username=host.username)

    def ready_now(self, server_id: str) -> ServerInfo | None:
        return self._info(server_id)

    def scan_timeout(self, server_id: str) -> float | None:
        return self.slots[server_id].timeout

    def configured(self, server_id: str) -> bool:
        return server_id in self.slots

    def pinned_host_key(self, server_id: str) -> str:
        return self.slots[server_id].host_key or ""

    def free_for(self, label: str) -> int | None:
        with self._lock:
            return sum(1 for s, h in self.slots.items() if label in h.labels and s not in self.in_use)

    def username_for(self, label: str) -> str | None:
        return next(h.username for h in self.hosts.values() if label in h.labels)

    def standing_labels(self) -> list[str]:
        """One entry per idle slot: its host's first label."""
        with self._lock:
            return [h.labels[0] for s, h in self.slots.items() if s not in self.in_use]

    def poll(self) -> dict[str, ServerInfo]:
        """The taken slots that are still configured (a node adopted after a restart may name one whose host was
        removed, or a slot beyond a lowered max-parallel-jobs)."""
        with self._lock:
            return {s: self._info(s, m) for s, m in self.in_use.items() if s in self.slots}

    def delete(self, server_id: str) -> None:
        with self._lock:
            self.in_use.pop(server_id, None)
