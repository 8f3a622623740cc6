"""Periodic cleanup: expired holds, nodes whose consumer vanished, leaked servers and images, old images.

Runs outside the main loop (it waits on clouds); it changes the launcher's caches only by posting to it.
"""

from __future__ import annotations

import logging
import time

from kazoo.exceptions import NoNodeError

from gatekeeper.launcher import model
from gatekeeper.launcher.images import list_builds
from gatekeeper.launcher.model import META_BUILD, META_NODE, Node
from gatekeeper.zk import paths

log = logging.getLogger("gatekeeper.launcher.cleanup")


def run_cleanup(launcher) -> None:
    for manager in list(launcher.managers.values()):
        if manager.active and not launcher._stop.is_set():
            try:
                cleanup_provider(launcher, manager)
            except Exception:
                log.exception("provider %s: cleanup failed", manager.name)


def cleanup_provider(launcher, manager) -> None:
    kz = launcher.kz
    now = time.time()
    nodes = launcher._load_nodes(manager.name)
    live_requests = set(kz.get_children(paths.NODE_REQUESTS))
    for node_id, (node, _version) in nodes.items():
        if node.state == model.HOLD and node.hold_until and node.hold_until <= now:
            log.info("node %s: hold (%s) expired; deleting", node_id, node.hold_reason)
            launcher._events.put(lambda n=node_id: _delete_after_sync(launcher, manager, n, force=True))
        elif node.state == model.IN_USE and not _locked(kz, node_id):
            log.info("node %s: in use but its consumer's lock is gone; deleting", node_id)
            launcher._events.put(lambda n=node_id: _delete_after_sync(launcher, manager, n, force=True))
        elif node.state == model.USED:
            launcher._events.put(lambda n=node_id: _delete_after_sync(launcher, manager, n))
        elif node.state == model.ALLOCATED and node.request not in live_requests and not _locked(kz, node_id):
            launcher._events.put(lambda n=node_id: _ready_after_sync(launcher, manager, n, live_requests))
    if manager.static:
        return
    manager.refresh_limits()
    # leaked servers: ours by metadata, but no node record and no image build claims them
    building_templates = set()
    build_ids = set()
    builds_by_image = {}
    for image in manager.config.images:
        builds = list_builds(kz, image.name, manager.name)
        builds_by_image[image.name] = builds
        build_ids.update(b.id for b in builds)
        building_templates.update(b.id for b in builds if b.state == model.BUILDING)
    servers = manager.adapter.poll()
    known = set(kz.get_children(paths.NODES))
    for server in servers.values():
        node_id = server.metadata.get(META_NODE)
        build_id = server.metadata.get(META_BUILD)
        if node_id and node_id in known:
            continue
        if build_id and build_id in building_templates:
            continue
        if node_id and node_id in manager.nodes:
            continue  # created this instant; its record is being written
        log.info("provider %s: deleting leaked server %s (%s)", manager.name, server.id, server.name)
        manager.delete_server(server.id)
    # leaked images (ours, no build record) and superseded ones (an older build no node uses)
    in_use = {n.image_build for n, _ in launcher._load_nodes(manager.name).values()}
    for image in manager.adapter.list_images():
        build_id = image.metadata.get(META_BUILD)
        if build_id and build_id not in build_ids:
            log.info("provider %s: deleting leaked image %s (%s)", manager.name, image.id, image.name)
            _delete_image(manager, image.id)
    for name, builds in builds_by_image.items():
        ready = [b for b in builds if b.state == "ready"]
        for old in ready[:-1]:
            if old.id in in_use:
                continue
            log.info("provider %s: deleting superseded image %s build %s", manager.name, name, old.id)
            if _delete_image(manager, old.external_id):
                _delete_build(kz, old)
        failed = [b for b in builds if b.state == "failed"]
        for old in failed[:-1]:
            _delete_build(kz, old)


def _delete_image(manager, image_id: str) -> bool:
    """Delete and verify; True once the cloud no longer has it."""
    if not image_id:
        return True
    for _ in range(3):
        manager.adapter.delete_image(image_id)
        if manager.adapter.get_image(image_id) is None:
            return True
        time.sleep(0.5)
    log.warning("provider %s: image %s is still there after delete", manager.name, image_id)
    return False


def _delete_build(kz, build) -> None:
    try:
        kz.delete(paths.image_build(build.image, build.provider, build.id))
    except NoNodeError:
        pass


def _locked(kz, node_id: str) -> bool:
    try:
        return bool(kz.get_children(paths.node_lock(node_id)))
    except NoNodeError:
        return False


def _delete_after_sync(launcher, manager, node_id: str, force: bool = False) -> None:
    node: Node | None = launcher._refresh_node(manager, node_id)
    if node is None:
        return
    if force and node.state in (model.HOLD, model.IN_USE):
        node.set_state(model.USED)
        if not launcher._write(manager, node, manager.nodes[node_id][1]):
            return
    launcher._delete_node(manager, node_id)


def _ready_after_sync(launcher, manager, node_id: str, live_requests: set[str]) -> None:
    node = launcher._refresh_node(manager, node_id)
    if node is not None and node.state == model.ALLOCATED and node.request not in launcher.requests:
        launcher._return_to_ready(manager, node_id)
