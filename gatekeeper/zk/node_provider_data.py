"""What ZooKeeper holds for one provider, and its erasure (Nodepool's `info` and `erase`): its image builds and
node records, for an operator cleaning up after a provider was removed from the layout.

A provider the published layout still has, or one a launcher serves now, is never erased: its launchers own those
records and would take them back (a launcher that is down or restarting included). Nor is a node a consumer was
given (allocated, in use, or locked): a build may run on it.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Collection
from dataclasses import dataclass, field

from kazoo.exceptions import BadVersionError, NoNodeError, NotEmptyError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import ALLOCATED, IN_USE, ImageBuild, Node, ready_entry
from gatekeeper.zk.nodes import NodeStore

log = logging.getLogger("gatekeeper.zk.node_provider_data")

CONSUMERS_STATES = (ALLOCATED, IN_USE)  # given to a consumer, whether or not it holds the lock yet


class ErasureRefused(Exception):
    """The provider's data is not the operator's to erase now; the message says why, in one sentence."""


class ProviderInLayout(ErasureRefused):
    """The published layout has the provider: its launchers serve it (or will, once they run again)."""


class ProviderLive(ErasureRefused):
    """The provider is served by a running launcher: its data is that launcher's."""


@dataclass
class ProviderData:
    """A provider's records in ZooKeeper: image builds by image, and nodes."""

    name: str
    builds: dict[str, list[ImageBuild]] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    locked: set[str] = field(default_factory=set)  # ids of nodes a consumer holds (in use by a build)
    live: bool = False
    versions: dict[str, int] = field(default_factory=dict)  # node id -> the version of the record listed
    spared: set[str] = field(default_factory=set)  # ids of the nodes an erasure left to their consumers

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
    nodes = store.load_nodes(name)
    data.nodes = sorted((n for n, _ in nodes.values()), key=lambda n: n.created)
    data.versions = {node_id: version for node_id, (_, version) in nodes.items()}
    data.locked = {n.id for n in data.nodes if store.is_locked(n.id)}
    return data


def check_erasable(data: ProviderData, layout_providers: Collection[str]) -> None:
    """Raise ErasureRefused, in a sentence naming the provider, unless its data may be erased: it is not in the
    published layout (whose providers are `layout_providers`) and no launcher serves it."""
    if data.name in layout_providers:
        raise ProviderInLayout(f"provider {data.name} is in the published layout, so its launchers serve it (or "
                               "will when they run again): remove it from the layout before erasing its data")
    if data.live:
        raise ProviderLive(f"provider {data.name} is served by a running launcher: remove it from the layout (and "
                           "let the launchers take the new layout) before erasing its data")


def erase_provider(zk: ZKClient, name: str, layout_providers: Collection[str]) -> ProviderData:
    """Remove provider `name`'s image builds, node records (with their ready-index entries and release signals)
    and its operator state and health. Nodes given to a consumer (allocated, in use, locked, or changed since they
    were listed) are left: erase again once they are released. Returns what was found, with `spared` the nodes
    left; raises ErasureRefused while the published layout has the provider or a launcher serves it."""
    data = provider_data(zk, name)
    check_erasable(data, layout_providers)
    kz = zk.client
    for image in data.builds:
        _delete_tree(kz, paths.image_build(image, name))
    for node in data.nodes:
        if node.id in data.locked or node.state in CONSUMERS_STATES or not _delete_node(kz, node, data):
            data.spared.add(node.id)
    _delete_tree(kz, posixpath.dirname(paths.provider_state(name)))  # its drain state and published health
    log.info("provider %s erased: %d image builds, %d nodes (%d given to consumers left)", name,
             sum(len(b) for b in data.builds.values()), len(data.nodes) - len(data.spared), len(data.spared))
    return data


def _delete_node(kz, node: Node, data: ProviderData) -> bool:
    """Delete a node's record as it was listed; False (and left) if a consumer took it meanwhile."""
    _delete_tree(kz, paths.ready_node(node.label, ready_entry(node)))  # once gone, nobody can hand it out
    try:
        kz.delete(paths.node_lock(node.id))
    except NoNodeError:
        pass
    except NotEmptyError:  # taken by a consumer since it was listed
        return False
    try:
        kz.delete(paths.node(node.id), version=data.versions.get(node.id, -1))
    except NoNodeError:
        pass
    except (BadVersionError, NotEmptyError):  # handed out or locked since it was listed
        return False
    _delete_tree(kz, paths.released_node(node.id))
    return True


def _delete_tree(kz, path: str) -> None:
    try:
        kz.delete(path, recursive=True)
    except NoNodeError:
        pass
