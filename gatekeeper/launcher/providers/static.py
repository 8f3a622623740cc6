"""Static hosts an operator already has: "create" takes a free host, "delete" frees it."""

from __future__ import annotations

import threading

from gatekeeper.config.layout import StaticHost
from gatekeeper.launcher.providers.base import ProviderAdapter, QuotaError, ServerInfo


class StaticAdapter(ProviderAdapter):
    """Each host is one server; a host serves one node at a time, and is handed out again once released."""

    recycles_nodes = True
    boots = False
    uses_keypair = False

    def __init__(self, hosts: tuple[StaticHost, ...]) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.in_use: dict[str, dict] = {}
        self._lock = threading.Lock()

    def create(self, name: str, image: str, flavor: str, metadata: dict, key_name: str = "") -> str:
        label = metadata.get("gatekeeper-label", "")
        with self._lock:
            for host in self.hosts.values():
                if host.name not in self.in_use and (not label or label in host.labels):
                    self.in_use[host.name] = dict(metadata)
                    return host.name
        raise QuotaError(f"no free static host for label {label!r}")

    def adopt(self, host_name: str, metadata: dict) -> None:
        """Mark a host taken by a node that already exists (after a launcher restart)."""
        with self._lock:
            self.in_use[host_name] = dict(metadata)

    def ready_now(self, server_id: str) -> ServerInfo | None:
        host = self.hosts[server_id]
        return ServerInfo(host.name, host.name, "ACTIVE", host.address, host.port)

    def pinned_host_key(self, server_id: str) -> str:
        return self.hosts[server_id].host_key or ""

    def free_for(self, label: str) -> int | None:
        with self._lock:
            return sum(1 for h in self.hosts.values() if label in h.labels and h.name not in self.in_use)

    def username_for(self, label: str) -> str | None:
        return next(h.username for h in self.hosts.values() if label in h.labels)

    def standing_labels(self) -> list[str]:
        """One entry per idle host: its first label."""
        with self._lock:
            return [h.labels[0] for h in self.hosts.values() if h.name not in self.in_use]

    def poll(self) -> dict[str, ServerInfo]:
        with self._lock:
            return {n: ServerInfo(n, n, "ACTIVE", self.hosts[n].address, self.hosts[n].port, metadata=m)
                    for n, m in self.in_use.items()}

    def delete(self, server_id: str) -> None:
        with self._lock:
            self.in_use.pop(server_id, None)
