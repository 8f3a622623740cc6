"""Launching, as the launcher decides it: plans (a request being launched on one provider), min-ready, room at
max-servers, launch results, provider health and drain. A part of the Launcher class (its main loop only).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from gatekeeper.launcher import model
from gatekeeper.launcher.events import LaunchResult
from gatekeeper.launcher.model import IMAGE_GONE, Node, NodeRequest
from gatekeeper.launcher.provider_manager import ProviderManager

log = logging.getLogger("gatekeeper.launcher")

PLAN_RETRY_S = 0.5  # a refused fulfilment of a launched request is sent again after this (seconds)


@dataclass
class Plan:
    """A request this launcher claimed and is launching nodes for on one provider."""

    request: str
    provider: str
    labels: list[str]
    nodes: dict[str, str] = field(default_factory=dict)  # node id -> label (launched or launching)
    queued: list[str] = field(default_factory=list)  # labels still to launch
    # launch-retries count for each node of the request, as Nodepool's: node id -> the failed boots of its slot
    # of the request, and label -> those of its slots queued again
    attempts: Counter = field(default_factory=Counter)
    retried: dict[str, list[int]] = field(default_factory=dict)
    up: dict[str, Node] = field(default_factory=dict)  # launched and up (written allocated as they come up, and
    # again, all together, with the request's fulfilment)
    retry_at: float = 0.0  # a refused fulfilment is sent again no sooner than this (monotonic)

    def launched(self, node_id: str, label: str) -> None:
        """Node `node_id` is launched for the next queued slot of `label` (with that slot's failed boots)."""
        self.nodes[node_id] = label
        if self.retried.get(label):
            self.attempts[node_id] = self.retried[label].pop()

    def queue_again(self, node_id: str, label: str) -> None:
        """Launch the slot of node `node_id` (of `label`) again, keeping its failed boots."""
        self.nodes.pop(node_id, None)
        self.queued.insert(0, label)
        self.retried.setdefault(label, []).append(self.attempts.pop(node_id, 0))


class Launching:
    """The launching decisions of gatekeeper.launcher.launcher.Launcher (which provides the state they use)."""

    # -- launching -----------------------------------------------------------------------------------------
    def _start_queued_launches(self) -> None:
        for rid in sorted(self.plans):
            plan = self.plans[rid]
            if rid in self._busy:
                continue  # its claim (or a hand-out to it) is in flight: decided on once answered
            manager = self.managers[plan.provider]
            if plan.queued and not manager.can_launch() and manager.active:
                if not plan.nodes:
                    self._release_plan(plan, "backing off" if not manager.drained else "drained")
                continue
            if plan.queued and not plan.nodes and any(manager.image_for(x) is None for x in plan.queued):
                self._release_plan(plan, "without a usable image")
                continue
            while plan.queued:
                label = plan.queued[0]
                if manager.free(label) <= 0:
                    break
                node = self._new_node(manager, label, rid)
                if node is None:
                    break
                plan.queued.pop(0)
                plan.launched(node.id, label)

    def _may_handle_another(self, manager: ProviderManager) -> bool:
        """Whether `manager` is below its max-concurrency: Nodepool's count of the node requests a provider
        handles at once, here the requests it launches for and the min-ready launches (requests in Nodepool) still
        booting. A request it may not take yet stays open, for another provider or for later."""
        limit = manager.config.max_concurrency
        if limit is None:
            return True
        handling = sum(1 for plan in self.plans.values() if plan.provider == manager.name)
        handling += sum(1 for n, _ in manager.nodes.values() if n.state == model.BUILDING and not n.request)
        return handling < limit

    def _new_node(self, manager: ProviderManager, label: str, rid: str) -> Node | None:
        """Write a new node's record and boot it once written (not waited for: the node counts against quota at
        once); None if the label has no usable image there."""
        launch = self._node_for(manager, label, rid)
        if launch is None:
            return None
        node = launch[0]
        manager.nodes[node.id] = (node, 0)

        def done(created: bool) -> None:
            if created:
                self._boot(manager, *launch)
                return
            manager.nodes.pop(node.id, None)
            plan = self.plans.get(rid) if rid else None
            if plan is not None and node.id in plan.nodes:
                plan.queue_again(node.id, label)  # (launched again by a later pass)
        self._after(self.store.create_node_async(node), done)
        return node

    def _node_for(self, manager: ProviderManager, label: str, rid: str) -> tuple[Node, str, str] | None:
        """A new node record of `label` on `manager` (not written yet), its flavor and cloud image."""
        pool = manager.pool_for(label)
        image = manager.image_for(label, pool)
        if image is None:
            return None
        image_name, build_id, cloud_image = image
        pool, flavor, username = manager.launch_spec(label, pool)
        pl = manager.pool_label(label, pool)
        node = Node(id=uuid.uuid4().hex[:12], provider=manager.name, cloud=manager.config.cloud, pool=pool,
                    label=label, image=image_name, image_build=build_id, username=username,
                    private_key=self.ssh_key, launcher=self.ident, request=rid,
                    attributes=dict(manager.pools[pool].node_attributes) if pool else {},
                    python_path=pl.python_path if pl else "auto", shell_type=pl.shell_type if pl else "")
        return node, flavor, cloud_image

    def _boot(self, manager: ProviderManager, node: Node, flavor: str, cloud_image: str) -> None:
        """Boot a node whose record was written."""
        manager.nodes[node.id] = (node, 0)
        manager.health.launch_started()
        manager.start_launch(node, flavor, cloud_image)

    def _keep_min_ready(self) -> None:
        for manager in self.managers.values():
            if manager.can_launch():
                # a server that is always there (a static host) is a ready node while idle
                for label in manager.standing_deficit():
                    if manager.free(label) <= 0 or self._new_node(manager, label, "") is None:
                        break
        for label in self.nodepool.labels.values():
            while (manager := self._min_ready_launch(label.name)) is not None:
                if self._new_node(manager, label.name, "") is None:
                    break

    def _min_ready_launch(self, label_name: str, taken: int = 0) -> ProviderManager | None:
        """The provider to launch one more node of the label on for its min-ready (counting `taken` ready nodes
        as gone already), or None: no deficit, another launcher keeps it, or nowhere to launch."""
        label = self.nodepool.labels.get(label_name)
        if label is None or label.min_ready <= 0:
            return None
        # the first live provider serving the label that can launch keeps its min-ready
        owners = sorted(p for p in self.live_providers if label.name in self.live_provider_labels.get(p, ())
                        and p not in self.foreign_unable and not self.cannot_launch_label(p, label.name)
                        and not (p in self.managers and self.managers[p].cannot_launch_now()))
        mine = [self.managers[p] for p in owners if p in self.managers and self.managers[p].active]
        if not mine or owners[0] != mine[0].name:
            return None  # another launcher owns this label's min-ready
        spare_building = sum(1 for m in mine for n, _ in m.nodes.values()
                             if n.label == label.name and n.state == model.BUILDING and not n.request)
        if label.min_ready - (len(self.ready_entries(label.name)) - taken) - spare_building <= 0:
            return None
        candidates = [m for m in mine if m.can_launch() and m.name not in self.waiting_for_room
                      and m.free(label.name) > 0 and self._may_handle_another(m)
                      and not m.image_unavailable(label.name) and m.image_for(label.name) is not None]
        if not candidates:
            return None
        return max(candidates, key=lambda m: (-m.config.priority, m.free(label.name)))

    def _replacements(self, labels: list[str]) -> list[tuple[ProviderManager, Node, str, str]]:
        """Nodes to launch for min-ready once these ready nodes are handed out, written with the hand-out itself
        (one transaction instead of two)."""
        out = []
        for label, taken in Counter(labels).items():
            manager = self._min_ready_launch(label, taken)
            launch = self._node_for(manager, label, "") if manager is not None else None
            if launch is not None:
                out.append((manager, *launch))
        return out

    def _on_launch_result(self, res: LaunchResult) -> None:
        manager = next((m for m in self.managers.values() if res.node_id in m.nodes), None)
        if manager is None:
            return
        cached, version = manager.nodes[res.node_id]
        if cached.state == model.DELETING or cached.id in manager.deleting:
            return  # given up meanwhile (its launcher lost its session and took the provider back): being deleted
        cached.external_id = res.external_id or cached.external_id  # (a delete finds its server by it)
        node = Node.from_dict(cached.to_dict())  # the cache keeps what ZooKeeper has until a write changes it
        plan = self.plans.get(node.request) if node.request else None
        if not res.ok:
            retry_free = res.quota or res.image_missing  # says nothing of the cloud's health, nor the request's
            if retry_free:
                manager.health.not_counted()
            else:
                manager.health.record(False, error=res.error)
            if res.image_missing:
                manager.image_boot_failures += res.tried
                self._image_gone(manager, node)
            if res.quota:
                log.info("provider %s: over quota launching %s (%s); will retry", manager.name, node.label,
                         res.error)
                manager.quota_blocked_until = time.monotonic() + 2.0
            else:
                log.warning("provider %s: node %s (%s) failed: %s", manager.name, node.id, node.label, res.error)
            node.comment = res.error[:500]
            node.set_state(model.FAILED)
            self.nodes.write(manager, node, version)
            self.nodes.delete(manager, node.id)
            if plan is not None:
                if not retry_free:
                    plan.attempts[node.id] += 1
                if plan.attempts[node.id] >= manager.config.launch_attempts:
                    plan.nodes.pop(node.id, None)
                    self._decline_plan(plan, f"{manager.name}: {res.error}")
                else:
                    plan.queue_again(node.id, node.label)
            return
        manager.health.record(True, time.time() - node.created)
        node.address, node.port, node.host_keys = res.address, res.port, list(res.host_keys or [])
        node.username = res.username or node.username
        if plan is not None and plan.request in self.requests:
            plan.up[node.id] = node
            if plan.queued or len(plan.up) < len(plan.labels):
                # others of its nodes still boot: written allocated now (as Nodepool shows a node launched for
                # a request once it is up), with its address; the fulfilment writes it again with the others
                allocated = Node.from_dict(node.to_dict())
                allocated.set_state(model.ALLOCATED)
                self.nodes.write_async(manager, allocated, version)
            self._fulfil_plan(plan)
        else:
            self.nodes.make_ready(manager, node, version)

    def _fulfil_plan(self, plan: Plan) -> None:
        """Once every node launched for a plan is up, write them allocated and fulfil the request, in one
        transaction (not waited for). Refused (the request withdrawn or changed, a lost connection): the records
        are read again and, while the request is still ours, it is sent again by a later pass."""
        rid = plan.request
        if plan.queued or len(plan.up) != len(plan.labels) or rid in self._busy or rid not in self.requests \
                or time.monotonic() < plan.retry_at:
            return
        req, req_version = self.requests[rid]
        manager = self.managers[plan.provider]
        if req.state != model.PENDING or req.launcher != self.ident or not manager.active:
            return
        writes = []
        for node_id, up in list(plan.up.items()):
            cached = manager.nodes.get(node_id)
            if cached is None or cached[0].state not in (model.BUILDING, model.ALLOCATED) \
                    or node_id in manager.deleting:
                # its record is gone or given up: launch that label again
                del plan.up[node_id]
                plan.queue_again(node_id, up.label)
                return
            node = Node.from_dict(up.to_dict())
            node.request = rid
            node.set_state(model.ALLOCATED)
            # what others wrote meanwhile stays (an operator's hold asked of it: a refused write re-reads the record)
            node.hold_requested, node.hold_requested_hours = cached[0].hold_requested, cached[0].hold_requested_hours
            writes.append((node, cached[1]))
        launched = [node for node, _ in writes]
        ordered = [launched.pop(next(i for i, n in enumerate(launched) if n.label == label))
                   for label in plan.labels]  # in the requested order, whatever order the launches ended in
        versions = {node.id: version for node, version in writes}

        def done(result) -> None:
            if result.ok:
                for node, version in result.nodes:
                    manager.nodes[node.id] = (node, version)
                self.plans.pop(rid, None)
                if rid in self.requests:  # (its consumer may have taken it and removed it already)
                    self.requests[rid] = (result.request, result.request_version)
                self.handed_out += 1
                return
            plan.retry_at = time.monotonic() + PLAN_RETRY_S
            for node, _ in writes:
                fresh = self.nodes.refresh(manager, node.id)
                if fresh is not None and not fresh.external_id:
                    fresh.external_id = node.external_id  # (known here only, until the node is written)
            if rid in self.requests:
                self._fetch_request(rid)  # gone: forgotten, and its nodes become spares
        pending = self.store.fulfil_async(req, req_version, [(n, versions[n.id] + 1) for n in ordered], writes)
        self._after_request(rid, pending, done)

    def _spares(self, plan: Plan) -> None:
        """A plan ended without its request: the nodes up for it become ready spares, those still launching
        become spares once up."""
        manager = self.managers[plan.provider]
        for node_id in plan.nodes:
            entry = manager.nodes.get(node_id)
            if entry is None:
                continue
            node, version = entry
            if node_id in plan.up:
                self.nodes.make_ready(manager, plan.up[node_id], version)
            elif node.state == model.ALLOCATED:
                self.nodes.return_to_ready(manager, node_id)
            elif node.state == model.BUILDING:
                node.request = ""

    def _image_gone(self, manager: ProviderManager, node: Node) -> None:
        """A boot found its image gone from the cloud: that upload is bad. Stop booting it at once; the image
        builder falls back to the previous good upload, or builds and uploads a new one."""
        image = manager.image_gone(node.label, node.image_build)
        if image is None:
            return  # not the current upload (already handled), or an image we do not build
        log.warning("provider %s: image %s build %s is gone from the cloud; marking it bad", manager.name, image,
                    node.image_build)
        self.store.mark_image_build(image, manager.name, node.image_build, IMAGE_GONE,
                                    f"the cloud no longer has this image (a boot of node {node.id} said so)")
        for builder in self.builders:
            if builder.manager is manager:
                builder.wake()

    def _release_plan(self, plan: Plan, why: str) -> None:
        """Give back a request whose provider cannot launch now (backing off, drained), without declining it."""
        self.plans.pop(plan.request, None)
        if plan.request not in self.requests:
            return
        req, version = self.requests[plan.request]
        req.set_state(model.REQUESTED)
        req.provider = req.launcher = ""
        if self._write_request(plan.request, req, version):
            log.info("request %s: provider %s is %s; offering the request again", plan.request, plan.provider, why)

    def _on_provider_state(self, name: str, drained: bool) -> None:
        manager = self.managers[name]
        if manager.drained == drained:
            return
        manager.drained = drained
        log.warning("provider %s: %s by an operator", name, "drained" if drained else "undrained")
        if drained:
            for node_id, (node, _) in list(manager.nodes.items()):
                if node.state == model.READY and manager.active:
                    self.nodes.delete(manager, node_id)
        self._publish_health()

    def cannot_launch_label(self, provider: str, label: str) -> bool:
        """The provider's cloud has no flavor for the label (its own manager's word, or its launcher's health)."""
        manager = self.managers.get(provider)
        if manager is not None and manager.active:
            return bool(manager.unlaunchable([label]))
        return label in self.foreign_unlaunchable.get(provider, ())

    def providers_status(self) -> list[dict]:
        """Health of the providers this launcher manages, JSON-able (main loop, or a stale read elsewhere)."""
        return [dict(m.health.status(), drained=m.drained, active=m.active, full=m.free() <= 0,
                     unlaunchable=[label for label in m.config.labels if m.unlaunchable([label])])
                for m in self.managers.values()]

    def _publish_health(self) -> None:
        for status in self.providers_status():
            if not status["active"]:
                continue
            shown = {k: v for k, v in status.items() if k != "active"}
            manager = self.managers[status["name"]]
            last = manager.published_health or {}
            # a change of state at once; figures that only drift (percentiles, rates) at most every 10 s
            urgent = any(last.get(k) != shown[k] for k in ("state", "drained", "backing_off_until",
                                                           "consecutive_failures", "full", "unlaunchable"))
            if shown != last and (urgent or time.monotonic() - manager.published_at >= 10.0):
                manager.published_health, manager.published_at = shown, time.monotonic()

                def done(ok: bool, manager: ProviderManager = manager, shown: dict = shown) -> None:
                    if not ok and manager.published_health is shown:
                        manager.published_health = None  # publish it again at the next tick
                self._after(self.store.publish_health_async(status["name"], shown), done)

    def _decline_plan(self, plan: Plan, reason: str) -> None:
        """This provider keeps failing the request: give it back so another provider takes it."""
        self.plans.pop(plan.request, None)
        manager = self.managers[plan.provider]
        self._spares(plan)
        if plan.request not in self.requests:
            return
        req, version = self.requests[plan.request]
        req.set_state(model.REQUESTED)
        req.provider = req.launcher = ""
        req.declined_by = sorted(set(req.declined_by) | {plan.provider})
        self._maybe_fail(req)
        if req.state == model.REQUEST_FAILED:
            req.reason += f" (last error: {reason})"
        log.info("request %s: provider %s declines after %d failed launches", plan.request, plan.provider,
                 manager.config.launch_attempts)
        self._write_request(plan.request, req, version)


    def _leaves_to_preferred(self, manager: ProviderManager, req: NodeRequest, named: str,
                             avoid: frozenset[str]) -> bool:
        """Whether `manager` leaves a request to launch to another launcher's provider of a better priority that
        can take it now (live, serving its labels, with room, not drained or backing off, not declined or
        avoided by it): as in Nodepool, better-priority providers fill up before the others are used."""
        if named == manager.name:
            return False
        for name in self.live_providers:
            config = self.nodepool.providers.get(name)
            if config is None or config.priority >= manager.config.priority or \
                    (name in self.managers and self.managers[name].active):
                continue
            if name in self.foreign_unable or name in self.foreign_full or name in req.declined_by or \
                    name in avoid or not self.live_provider_labels.get(name, set()).issuperset(req.labels) or \
                    any(self.cannot_launch_label(name, label) for label in req.labels):
                continue
            return True
        return False

    def _make_room(self, req: NodeRequest, able: list[ProviderManager], keep: set[str] = frozenset()) -> None:
        """Never wedge at max-servers: when idle ready nodes hold the room a request needs to launch, delete the
        oldest of them, another label's first (one at a time per provider), as Nodepool does; never one of `keep`
        (those the request takes with its claim)."""
        for manager in sorted(able, key=lambda m: m.config.priority):
            if not manager.can_launch() or manager.name in self.waiting_for_room:
                continue  # (a request ahead of this one already looked at this provider in this pass)
            self.waiting_for_room.add(manager.name)
            if not manager.adapter.boots or manager.deleting:
                continue
            idle = [n for n, _ in manager.nodes.values() if n.state == model.READY and n.id not in keep]
            if not idle or manager.capacity() < len(req.labels):
                continue
            # other labels' nodes first (this request could not use them), then its own labels' oldest
            oldest = min(idle, key=lambda n: (n.label in req.labels, n.state_time))
            log.info("request %s (%s): provider %s is full; deleting the oldest idle ready node %s (%s) to make "
                     "room", req.id, ",".join(req.labels), manager.name, oldest.id, oldest.label)
            self.nodes.delete(manager, oldest.id)
            return

    def _expire_ready(self) -> None:
        """Delete ready nodes unused for longer than their label's max-ready-age."""
        now = time.time()
        for manager in self.managers.values():
            if not manager.active:
                continue
            for node_id, (node, _) in list(manager.nodes.items()):
                label = self.nodepool.labels.get(node.label)
                if node.state == model.READY and label is not None and label.max_ready_age \
                        and now - node.state_time > label.max_ready_age:
                    log.info("node %s (%s): ready and unused for more than %ss; deleting", node_id, node.label,
                             label.max_ready_age)
                    self.nodes.delete(manager, node_id)
