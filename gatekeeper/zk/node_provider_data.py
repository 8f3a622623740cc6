"""What ZooKeeper holds for one provider, and its erasure (Nodepool's `info` and `erase`): its image builds and
node records, for an operator cleaning up after a provider was removed from the layout.

A provider a launcher serves now is never erased: its launcher owns those records and would write them again.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field

from kazoo.exceptions import NoNodeError, NotEmptyError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import ImageBuild, Node, ready_entry
from gatekeeper.zk.nodes import NodeStore

log = logging.getLogger("gatekeeper.zk.node_provider_data")


class ProviderLive(Exception):
    """The provider is served by a running launcher: its data is that launcher's."""


@dataclass
class ProviderData:
    """A provider's records in ZooKeeper: image builds by image, and nodes."""

    name: str
    builds: dict[str, list[ImageBuild]] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    locked: set[str] = field(default_factory=set)  # ids of nodes a consumer holds (in use by a build)
    live: bool = False

    def to_dict(self) -> dict:
        return {"provider": self.name, "live": self.live,
                "image_builds": {image: [b.to_dict() | {"id": b.id} for b in builds]
                                 for image, builds in sorted(self.builds.items())},
                "nodes": [n.to_dict() | {"locked": n.id in self.locked} for n in self.nodes]}


def provider_data(zk: ZKClient, name: str) -> ProviderData:
    """Every image build and node record of provider `name` (unreadable records are skipped, as listings do)."""
    store = NodeStore(zk)
    data = ProviderData(name, live=name in store.live_provider_names())
    for image in store.image_names():
        builds = store.image_builds(image, name)
        if builds:
            data.builds[image] = builds
    data.nodes = sorted((n for n, _ in store.load_nodes(name).values()), key=lambda n: n.created)
    data.locked = {n.id for n in data.nodes if store.is_locked(n.id)}
    return data


def erase_provider(zk: ZKClient, name: str) -> ProviderData:
    """Remove provider `name`'s image builds, node records (with their ready-index entries and release signals)
    and its operator state and health. Nodes a consumer holds are left (a build runs on them: erase again once
    it is done). Returns what was found; raises ProviderLive while a launcher serves the provider."""
    data = provider_data(zk, name)
    if data.live:
        raise ProviderLive(f"provider {name} is served by a running launcher: remove it from the layout (and let "
                           "the launchers take the new layout) before erasing its data")
    kz = zk.client
    for image in data.builds:
        _delete_tree(kz, paths.image_build(image, name))
    for node in data.nodes:
        if node.id in data.locked:
            continue
        for path in (paths.ready_node(node.label, ready_entry(node)), paths.released_node(node.id)):
            _delete_tree(kz, path)
        try:
            kz.delete(paths.node_lock(node.id))
        except NoNodeError:
            pass
        except NotEmptyError:  # taken by a consumer since it was listed: leave it
            data.locked.add(node.id)
            continue
        _delete_tree(kz, paths.node(node.id))
    _delete_tree(kz, posixpath.dirname(paths.provider_state(name)))  # its drain state and published health
    log.info("provider %s erased: %d image builds, %d nodes (%d in use left)", name,
             sum(len(b) for b in data.builds.values()), len(data.nodes) - len(data.locked), len(data.locked))
    return data


def _delete_tree(kz, path: str) -> None:
    try:
        kz.delete(path, recursive=True)
    except NoNodeError:
        pass
