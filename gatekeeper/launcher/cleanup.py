"""Periodic cleanup: expired holds, nodes whose consumer vanished, leaked servers and images, old images.

Runs outside the main loop (it waits on clouds); it changes the launcher's caches only by posting to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_fixed

from gatekeeper.launcher import model
from gatekeeper.launcher.model import META_BUILD, META_NODE

log = logging.getLogger("gatekeeper.launcher.cleanup")

KEEP_READY_BUILDS = 2  # the current build of an image and the previous one, to fall back on if the current fails


def run_cleanup(launcher) -> None:
    for manager in list(launcher.managers.values()):
        if manager.active and not launcher.stopping:
            try:
                cleanup_provider(launcher, manager)
            except Exception:
                log.exception("provider %s: cleanup failed", manager.name)


def cleanup_provider(launcher, manager) -> None:
    """One pass over one provider, from what ZooKeeper and the cloud say now (never from the launcher's cache)."""
    store = launcher.store
    now = time.time()
    nodes, unreadable = store.scan_nodes(manager.name)
    for node_id in unreadable:
        store.set_aside(node_id)
    for rid in store.unreadable_requests():
        store.set_aside_request(rid)
    live_requests = set(store.request_ids())
    # Each delete below is posted with the condition that called for it, and runs only if the node's fresh record
    # still meets it: the record read above may be stale by then (a consumer that released its node as held
    # between this scan and the lock check must not lose the hold).
    max_age = launcher.nodepool.max_hold_age
    for node_id, (node, _version) in nodes.items():
        if _hold_expired(node, now, max_age):
            over = not _hold_expired(node, now, 0)  # held past max-hold-age, before its hold's own expiry
            log.info("node %s: hold (%s) %s; deleting", node_id, node.hold_reason,
                     f"older than max-hold-age ({max_age:g}s)" if over else "expired")
            launcher.post(lambda n=node_id: _delete_after_sync(
                launcher, manager, n, lambda fresh: _hold_expired(fresh, time.time(), max_age)))
        elif node.state == model.IN_USE and not store.is_locked(node_id):
            log.info("node %s: in use but its consumer's lock is gone; deleting", node_id)
            launcher.post(lambda n=node_id: _delete_after_sync(
                launcher, manager, n, lambda fresh: fresh.state == model.IN_USE and not store.is_locked(fresh.id)))
        elif node.state in (model.USED, model.DELETING, model.FAILED):
            # a delete that failed, or never started, is retried every pass until the record is gone
            launcher.post(lambda n=node_id: _delete_after_sync(
                launcher, manager, n, lambda fresh: fresh.state in (model.USED, model.DELETING, model.FAILED)))
        elif node.state == model.ALLOCATED and not store.is_locked(node_id) and (
                node.request not in live_requests or not launcher.request_holds(node)):
            launcher.post(lambda n=node_id: _ready_after_sync(launcher, manager, n))
    # release signals of nodes that are gone (their launcher stopped before it removed them); signals are read
    # first: a node released after that read cannot be taken for gone
    signals = store.released_ids()
    present = set(store.node_ids())
    stale = [node_id for node_id in signals if node_id not in present]
    if stale:
        store.remove_released(stale)
    if not manager.adapter.boots:
        return  # its servers are not created or destroyed by us: nothing can leak
    manager.refresh_limits()
    # leaked servers: ours by metadata, but no node record and no image build claims them
    building_templates = set()
    build_ids = set()
    builds_by_image = {}
    for image in manager.config.images:
        builds = store.image_builds(image.name, manager.name)
        builds_by_image[image.name] = builds
        build_ids.update(b.id for b in builds)
        building_templates.update(b.id for b in builds if b.state == model.BUILDING)
    # another provider's servers and images (one sharing this cloud project) are its own to clean up
    # builds of images no longer in the provider's configuration: deleted below, once no node uses them
    configured = {image.name for image in manager.config.images}
    removed = [b for name in store.image_names() if name not in configured
               for b in store.image_builds(name, manager.name)]
    build_ids.update(b.id for b in removed)
    servers = {sid: s for sid, s in manager.adapter.poll().items() if manager.made(s.metadata)}
    # read after the listing: a node record (a build's) is written before its server (its template) is created,
    # so a server listed above without a record here has none
    known = set(store.node_ids())
    for image in manager.config.images:
        building_templates.update(b.id for b in store.image_builds(image.name, manager.name)
                                  if b.state == model.BUILDING)
    for server in servers.values():
        node_id = server.metadata.get(META_NODE)
        build_id = server.metadata.get(META_BUILD)
        if node_id and node_id in known:
            continue
        if build_id and build_id in building_templates:
            continue
        log.info("provider %s: deleting leaked server %s (%s)", manager.name, server.id, server.name)
        manager.delete_server(server.id)
    # ready nodes whose server is gone (deleted behind our back, or lost with the cloud): remove them
    for node_id, (node, _version) in nodes.items():
        if node.state == model.READY and node.external_id and node.external_id not in servers:
            log.warning("provider %s: ready node %s's server %s is gone; removing the node", manager.name,
                        node_id, node.external_id)
            launcher.post(lambda n=node_id: launcher.nodes.delete(manager, n, refresh=True))
    # leaked images (ours, no build record), superseded ones (older than the last two ready builds, as Nodepool
    # keeps the current and the previous one to fall back on) and deleted or vanished ones, once no node uses them
    in_use = {n.image_build for n, _ in nodes.values()}
    cloud_images = manager.adapter.list_images()
    # read after the listing: a build's record is written before its snapshot, so an image listed above whose
    # build has no record here has none (builds read before the listing miss those started meanwhile)
    for name in configured:
        build_ids.update(b.id for b in store.image_builds(name, manager.name))
    for image in cloud_images:
        if not manager.made(image.metadata):
            continue
        build_id = image.metadata.get(META_BUILD)
        if build_id and build_id not in build_ids:
            log.info("provider %s: deleting leaked image %s (%s)", manager.name, image.id, image.name)
            _delete_image(manager, image.id)
    for name, builds in builds_by_image.items():
        ready = [b for b in builds if b.state == "ready"]
        for old in ready[:-KEEP_READY_BUILDS]:
            if old.id in in_use:
                continue
            log.info("provider %s: deleting superseded image %s build %s", manager.name, name, old.id)
            if _delete_image(manager, old.external_id):
                store.delete_image_build(old)
        failed = [b for b in builds if b.state == "failed"]
        for old in failed[:-1]:
            store.delete_image_build(old)
        for gone in (b for b in builds if b.state in (model.IMAGE_GONE, model.IMAGE_DELETING)
                     and b.id not in in_use):
            if _delete_image(manager, gone.external_id):
                store.delete_image_build(gone)
    # as in Nodepool, an image removed from a provider's configuration is deleted from its cloud
    for old in removed:
        if old.id not in in_use and old.state != model.BUILDING:
            log.info("provider %s: image %s is no longer configured; deleting its build %s", manager.name,
                     old.image, old.id)
            if _delete_image(manager, old.external_id):
                store.delete_image_build(old)


def _delete_image(manager, image_id: str) -> bool:
    """Delete and verify; True once the cloud no longer has it."""
    if not image_id:
        return True
    # The cloud may take a moment to forget a deleted image: ask again, three times half a second apart.
    gone = Retrying(stop=stop_after_attempt(3), wait=wait_fixed(0.5), retry=retry_if_result(lambda gone: not gone),
                    retry_error_callback=lambda state: False)(_delete_and_check, manager, image_id)
    if not gone:
        log.warning("provider %s: image %s is still there after delete", manager.name, image_id)
    return gone


def _delete_and_check(manager, image_id: str) -> bool:
    manager.adapter.delete_image(image_id)
    return manager.adapter.get_image(image_id) is None


def _hold_expired(node, now: float, max_age: float) -> bool:
    """Whether a held node's hold is over: its own expiry passed, or it has been held longer than `max_age`
    seconds (the layout's max-hold-age; 0: no limit), which caps every hold as Nodepool's does."""
    if node.state != model.HOLD:
        return False
    return (bool(node.hold_until) and node.hold_until <= now) or (max_age > 0 and now - node.state_time >= max_age)


def _delete_after_sync(launcher, manager, node_id: str, still: Callable[[model.Node], bool]) -> None:
    """Delete the node if its fresh record still meets `still`; a held or in-use one is first marked used with a
    versioned write, so that a change made meanwhile (a release, a longer hold) wins."""
    node = launcher.nodes.refresh(manager, node_id)
    if node is None or not still(node):
        return
    if node.state in (model.HOLD, model.IN_USE):
        node.set_state(model.USED)
        if not launcher.nodes.write(manager, node, manager.nodes[node_id][1]):
            return
    launcher.nodes.delete(manager, node_id)


def _ready_after_sync(launcher, manager, node_id: str) -> None:
    node = launcher.nodes.refresh(manager, node_id)
    if node is not None and node.state == model.ALLOCATED and (
            not launcher.has_request(node.request) or not launcher.request_holds(node)):
        launcher.nodes.return_to_ready(manager, node_id)
