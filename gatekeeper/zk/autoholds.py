"""Autoholds in ZooKeeper: an operator's standing request to hold the nodes of the next failed builds of a
project, job and change, each unit taken atomically by the build that uses it. A part of
gatekeeper.zk.nodes.NodeStore."""

from __future__ import annotations

import re

from kazoo.exceptions import BadVersionError, NoNodeError

from gatekeeper.zk import paths
from gatekeeper.zk.node_records import Autohold
from gatekeeper.zk.provider_store import UnreadableRecord


class AutoholdStore:
    """The autohold methods of NodeStore (which provides the client and the safe record reading they use)."""

    def add_autohold(self, hold: Autohold) -> str:
        path = self.kz.create(f"{paths.HOLDS}/hold-", hold.to_bytes(), sequence=True, makepath=True)
        return path.rsplit("/", 1)[1]

    def autoholds(self) -> list[tuple[Autohold, int]]:
        out = []
        for name in sorted(self._children(paths.HOLDS)):
            try:
                raw, stat = self.kz.get(paths.hold(name))
                hold = self._decode(Autohold, paths.hold(name), raw)
            except (NoNodeError, UnreadableRecord):
                continue
            hold.id = name
            out.append((hold, stat.version))
        return out

    def delete_autohold(self, hold_id: str) -> None:
        try:
            self.kz.delete(paths.hold(hold_id))
        except NoNodeError:
            pass

    def claim_autohold(self, project: str, job: str, change: str, node_id: str) -> Autohold | None:
        """Take one unit of the first autohold matching this failed build (atomically); None if none matches."""
        for _ in range(10):
            for hold, version in self.autoholds():
                if hold.project not in ("", project) or hold.job not in ("", job):
                    continue
                if node_id in hold.held_nodes:  # claimed already (a retried call whose first write went through)
                    return hold
                if not re.fullmatch(hold.change or ".*", change) or len(hold.held_nodes) >= hold.count:
                    continue
                hold.held_nodes.append(node_id)
                try:
                    self.kz.set(paths.hold(hold.id), hold.to_bytes(), version=version)
                except (BadVersionError, NoNodeError):
                    break  # changed meanwhile: look again
                return hold
            else:
                return None
        return None
