"""Assignment, as the launcher decides it: which request gets which ready nodes, and which request is claimed for
launching on which provider. A part of the Launcher class (its main loop only).

Writes are sent as they are decided, and each answer comes back to the main loop as an event (`_after`): the loop
never waits on ZooKeeper for them, so a request that arrives while others' writes are in flight is decided at
once, and many writes share one disk sync on the server. What a decision assumes meanwhile (ready entries taken,
nodes counted against quota, a request busy until its write is answered) is undone if its write fails.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from gatekeeper.launcher import model
from gatekeeper.launcher.events import Answer
from gatekeeper.launcher.launching import Plan
from gatekeeper.launcher.model import Node, NodeRequest, parse_entry, ready_entry
from gatekeeper.zk.nodes import Pending, UnreadableRecord

log = logging.getLogger("gatekeeper.launcher")

INDEX_FRESH_S = 0.25  # a ready index read answered this recently counts as read just now (seconds)


class Assigning:
    """The assignment decisions of gatekeeper.launcher.launcher.Launcher (which provides the state they use)."""

    # -- assignment (main loop) ----------------------------------------------------------------------------
    def _after(self, pending: Pending, done: Callable) -> None:
        """Run `done(answer)` on the main loop once ZooKeeper answered: the loop never waits for an answer, it
        goes on deciding meanwhile (any thread may call this)."""
        pending.on_answer(lambda answered: self._events.put(Answer(answered, done)), now=True)

    def _after_request(self, rid: str, pending: Pending, done: Callable) -> None:
        """`_after` for a write of request `rid`: until it is answered the request is busy, and no other decision
        is made on it. A change event meanwhile is our own write's (a refused write is read afresh by `done`;
        once ours is applied, its consumer only removes the request)."""
        self._busy.add(rid)

        def answered(result) -> None:
            self._busy.discard(rid)
            done(result)
        self._after(pending, answered)

    def _assign(self) -> None:
        self.waiting_for_room.clear()
        self.paused.clear()
        self._reread.clear()
        self._foreign_nodes.clear()
        for rid in sorted(self.requests):
            entry = self.requests.get(rid)
            if entry is None or rid in self._busy:
                continue
            req, _ = entry
            if rid in self.plans and not (req.state == model.PENDING and req.launcher == self.ident):
                self._spares(self.plans.pop(rid))  # no longer ours (offered again by another launcher)
            if req.state == model.REQUESTED:
                self._serve(rid)
            elif req.state == model.PENDING:
                if req.launcher == self.ident and rid in self.plans:
                    self._try_ready_for_plan(rid)
                    if rid in self.plans:
                        self._fulfil_plan(self.plans[rid])  # (a refused fulfilment, sent again)
                elif req.launcher == self.ident:
                    self._reset_orphan(rid)  # its plan went with a lost ZooKeeper session: start it afresh
                elif self._launchers_known and req.launcher not in self.live_launchers:
                    self._reset_orphan(rid)
        self._start_queued_launches()
        self._keep_min_ready()

    def _ready_by_provider(self, labels: list[str], only: str = "") -> list[tuple[str, list[str]]]:
        """Providers (`only` if named) whose ready nodes cover every label, each with the entries to take."""
        found: dict[str, dict[str, list[str]]] = {}
        for label in set(labels):
            for entry in self.ready_entries(label):
                provider, _ = parse_entry(entry)
                if only and provider != only:
                    continue
                found.setdefault(provider, {}).setdefault(label, []).append(entry)
        out = []
        need = Counter(labels)
        for provider, by_label in found.items():
            if all(len(by_label.get(label, [])) >= n for label, n in need.items()):
                unused = {label: list(by_label[label][:n]) for label, n in need.items()}
                take = [(label, unused[label].pop(0)) for label in labels]  # in the requested order
                out.append((min(e for _, e in take), provider, take))
        out.sort()
        return [(p, t) for _, p, t in out]

    def _named_provider(self, req: NodeRequest) -> str:
        """The provider a request is left to: the one it names while that one is live, serves its labels, has
        not declined it and can launch now; else "" (as in Nodepool, a named provider is a preference: when it
        cannot serve the request, any other may)."""
        name = req.requested_provider
        if not name or name in req.declined_by or name not in self.live_providers or name in self.foreign_unable:
            return ""
        labels = self.live_provider_labels.get(name)
        if (labels is not None and not set(req.labels) <= labels) or \
                any(self.cannot_launch_label(name, label) for label in req.labels):
            return ""
        manager = self.managers.get(name)
        if manager is not None and manager.active and manager.cannot_launch_now():
            return ""
        return name

    def _serve(self, rid: str) -> None:
        req, version = self.requests[rid]
        named = self._named_provider(req)
        avoid = self._avoided(rid, req) if req.avoid_providers else frozenset()
        offers = [o for o in self._ready_by_provider(req.labels, named) if o[0] not in avoid]
        if req.requested_provider and not named:
            offers.sort(key=lambda offer: offer[0] != req.requested_provider)  # still its first choice
        for provider, take in offers:
            if self._fulfil_from_ready(rid, provider, take):
                return
        if offers and not self.index.fresh(req.labels, INDEX_FRESH_S, self._batch_started):
            # no longer ready: read the index afresh (answered on the main loop, which decides again); if it was
            # fresh already, those entries are stale ones: launch
            for label in req.labels:
                self.index.refresh(label)
            return
        req, version = self.requests[rid]
        # no ready nodes anywhere: launch on a provider this launcher manages
        could = [m for m in self.managers.values() if m.active and m.name not in req.declined_by
                 and m.can_ever_serve(req.labels) and not any(m.image_unavailable(x) for x in req.labels)]
        able = [m for m in could if named in ("", m.name)  # the others leave it to the provider it names
                and m.name not in avoid and not self._leaves_to_preferred(m, req, named, avoid)]
        able = [m for m in able if self._may_handle_another(m)]  # (not a decline: it takes it later)
        declines = [m.name for m in self.managers.values() if m.active and m.name not in req.declined_by
                    and m not in could and m.name not in avoid]
        if declines:
            req.declined_by = sorted(set(req.declined_by) | set(declines))
            self._maybe_fail(req)
            why = [w for name in declines for w in self.managers[name].unlaunchable(req.labels)]
            if req.state == model.REQUEST_FAILED and why:
                req.reason += f" ({'; '.join(why)})"
            if not self._write_request(rid, req, version):
                return
            log.info("request %s (%s): declined by %s%s", rid, ",".join(req.labels), ", ".join(declines),
                     f" ({'; '.join(why)})" if why else "")
            req, version = self.requests[rid]
        elif not able and set(req.declined_by) >= self.live_providers and self.live_providers \
                and req.state == model.REQUESTED:
            self._maybe_fail(req)
            if req.state == model.REQUEST_FAILED:
                self._write_request(rid, req, version)
        if req.state != model.REQUESTED:
            return
        backlog = Counter()
        for plan in self.plans.values():
            backlog[plan.provider] += len(plan.queued)
        # claim only what can start now (healthy, with room): a request left unclaimed stays open to others; a
        # provider's ready nodes of some of its labels are taken with the claim, the others launched (Nodepool)
        picks = {m.name: self._own_ready(m, req.labels) for m in able}
        launch = {m.name: _without(req.labels, [label for label, *_ in picks[m.name]]) for m in able}
        fits = [m for m in able if m.can_launch() and m.free() - backlog[m.name] >= len(launch[m.name])
                and all(m.free(x) > 0 and m.image_for(x) is not None for x in set(launch[m.name]))]
        # a provider a better-priority request waits on in this pass launches nothing for this one (as Nodepool
        # pauses a pool whose request waits for room): the room that frees goes to requests in priority order
        candidates = [m for m in fits if m.name not in self.paused]
        if not candidates:
            if able and not fits:
                self.paused.update(m.name for m in able if m.can_launch()
                                   and all(m.image_for(x) is not None for x in set(launch[m.name])))
                self._make_room(req, able, {node.id for m in able for _, _, node, _ in picks[m.name]})
            return  # (its changes reach us through the requests' tree watch)
        if not self.index.fresh(req.labels, INDEX_FRESH_S, self._batch_started):
            self.paused.update(m.name for m in candidates)
            # Never launch on a cached "nothing ready": another launcher may have made a node ready since we last
            # read the index. One read before launching is cheap next to a launch, and one younger than
            # INDEX_FRESH_S is as good. It is answered on the main loop, which decides on the request again then.
            for label in req.labels:
                self.index.refresh(label)
            return
        top = min(m.config.priority for m in candidates)
        manager = max((m for m in candidates if m.config.priority == top),
                      key=lambda m: (m.free() - backlog[m.name], m.capacity()))
        req.set_state(model.PENDING)
        req.provider, req.launcher = manager.name, self.ident
        # the claim, the ready nodes it takes and the records of the nodes launched for it go in one transaction,
        # when there is room for all
        taken, labels = picks[manager.name], launch[manager.name]
        launches = [self._node_for(manager, label, rid) for label in labels]
        room = Counter(labels)
        if any(launch is None for launch in launches) or any(manager.free(x) < n for x, n in room.items()):
            launches = []
        req.id = rid
        pending = self.store.claim_request(req, version, [launch[0] for launch in launches],
                                           [(entry, node, nversion) for _, entry, node, nversion in taken])
        plan = self.plans[rid] = Plan(rid, manager.name, list(req.labels), queued=[] if launches else labels)
        for launch in launches:
            plan.nodes[launch[0].id] = launch[0].label
            manager.nodes[launch[0].id] = (launch[0], 0)  # counted at once; booted once written
        for label, entry, node, _ in taken:
            plan.nodes[node.id] = label
            self.index.remove(label, entry)  # taken now, or by someone else (the next read resyncs us)

        def done(claimed) -> None:
            if claimed is None:
                self.plans.pop(rid, None)
                for launch in launches:
                    manager.nodes.pop(launch[0].id, None)
                if taken:
                    self.index.mark_dirty(label for label, *_ in taken)
                self._refused(rid, [node for _, _, node, _ in taken])
                return
            for node, nversion in claimed.nodes:
                manager.nodes[node.id] = (node, nversion)
                if self.plans.get(rid) is plan:
                    plan.up[node.id] = node  # up already: fulfilled with the others once they are
            if rid in self.requests:  # (withdrawn meanwhile: its nodes, written already, boot as spares)
                self.requests[rid] = (req, claimed.version)
            else:
                for node, nversion in claimed.nodes:  # and the ready nodes it took are ready again
                    self.nodes.make_ready(manager, node, nversion)
            log.debug("request %s (%s): launching on %s", rid, ",".join(req.labels), manager.name)
            for launch in launches:
                self._boot(manager, *launch)
        self._after_request(rid, pending, done)

    def _avoided(self, rid: str, req: NodeRequest) -> frozenset[str]:
        """Providers `req` asks to avoid (an attempt failed there) while another live one can serve it; else none."""
        others = [p for p, labels in self.live_provider_labels.items() if p not in req.avoid_providers
                  and p not in req.declined_by and p not in self.foreign_unable and labels.issuperset(req.labels)
                  and not any(self.cannot_launch_label(p, label) for label in req.labels)
                  and not (p in self.managers and self.managers[p].active and self.managers[p].cannot_launch_now())]
        if not others and rid not in self._fallback_logged:
            self._fallback_logged.add(rid)
            log.info("request %s (%s): no other provider can serve it; falling back to %s, which it asked to "
                     "avoid", rid, ",".join(req.labels), ", ".join(req.avoid_providers))
        return frozenset(req.avoid_providers if others else ())

    def _maybe_fail(self, req: NodeRequest) -> None:
        """Fail a request every live provider declined, unless a provider of ours that could serve it is not live
        yet (starting, or waiting for its lock): Nodepool's launcher registers all its pools at once, so a request
        never fails there for a pool that is still starting."""
        if not self.live_providers or not set(req.declined_by) >= self.live_providers:
            return
        starting = [m.name for m in self.managers.values() if not m.active and m.name not in self.live_providers
                    and m.name not in req.declined_by and m.can_ever_serve(req.labels)]
        if starting:
            log.debug("request %s: waiting for %s, still starting", req.id, ", ".join(starting))
        else:
            req.set_state(model.REQUEST_FAILED)
            req.reason = (f"no provider can serve labels {', '.join(req.labels)}: declined by "
                          f"{', '.join(req.declined_by)}")
            log.warning("request %s failed: %s", req.id, req.reason)

    def _write_request(self, rid: str, req: NodeRequest, version: int) -> bool:
        req.id = rid
        new_version = self.store.write_request(req, version)
        if new_version is None:
            self._fetch_request(rid)
            return False
        self.requests[rid] = (req, new_version)
        return True

    def _fulfil_from_ready(self, rid: str, provider: str, take: list[tuple[str, str]],
                           then: Callable[[], None] | None = None) -> bool:
        """Send the hand-out of ready nodes to a request (one transaction, not waited for; `then` runs if it
        succeeded); False if the nodes are no longer ready as far as we know."""
        req, version = self.requests[rid]
        manager = self.managers.get(provider)
        picks = []
        for _label, entry in take:
            _, node_id = parse_entry(entry)
            if manager is not None and manager.active and node_id in manager.nodes:
                node, nversion = self._indexed(manager, node_id)
            else:
                try:
                    found = self.store.read_node(node_id)
                except UnreadableRecord:
                    found = None
                if found is None:
                    return False
                node, nversion = found
            if node.state != model.READY:
                return False
            picks.append((entry, node, nversion))
        replacements = self._replacements([label for label, _ in take])
        pending = self.store.hand_out_async(req, version, picks, provider, self.ident,
                                           create=[node for _, node, _, _ in replacements])
        for label, entry in take:
            self.index.remove(label, entry)  # taken now, or by someone else (the next read resyncs us)
        for launch in replacements:
            launch[0].nodes[launch[1].id] = (launch[1], 0)  # counted at once; booted once written

        def done(result) -> None:
            if not result.ok:
                for launch in replacements:
                    launch[0].nodes.pop(launch[1].id, None)
                self.index.mark_dirty(label for label, _ in take)
                if manager is not None and manager.active:
                    for _, node, _ in picks:  # our record of them may be what was stale
                        if node.id in manager.nodes:
                            self.nodes.refresh(manager, node.id)
                if result.request_changed and rid in self.requests:
                    self._fetch_request(rid)
                self.wake()  # serve it again, from the index and the records as they are now
                return
            for node, nversion in result.nodes:
                if manager is not None and node.id in manager.nodes:
                    manager.nodes[node.id] = (node, nversion)
            if rid in self.requests:  # (its consumer may have taken it and removed it already)
                self.requests[rid] = (result.request, result.request_version)
            self.handed_out += 1
            for launch in replacements:
                self._boot(*launch)
            if then is not None:
                then()
        self._after_request(rid, pending, done)
        return True

    def _try_ready_for_plan(self, rid: str) -> None:
        """A request waiting on launches takes a ready node if one appears meanwhile (never wait needlessly)."""
        plan = self.plans[rid]
        if not plan.queued or plan.nodes:
            return
        for provider, take in self._ready_by_provider(plan.labels, plan.provider):
            if self._fulfil_from_ready(rid, provider, take, then=lambda: self.plans.pop(rid, None)):
                return

    def _own_ready(self, manager, labels: list[str]) -> list[tuple[str, str, Node, int]]:
        """Ready nodes of `manager` for some of `labels` (label, ready entry, node, node version), oldest first,
        at most as many of a label as asked."""
        out, need = [], Counter(labels)
        for label in need:
            for entry in self.ready_entries(label):
                if need[label] <= 0:
                    break
                provider, node_id = parse_entry(entry)
                if provider != manager.name or node_id not in manager.nodes or node_id in manager.deleting:
                    continue
                node, nversion = self._indexed(manager, node_id)
                if node.state == model.READY:
                    need[label] -= 1
                    out.append((label, entry, node, nversion))
        return out

    def _indexed(self, manager, node_id: str) -> tuple[Node, int]:
        """Our record of a node of ours the ready index names, read afresh if it says otherwise: another launcher
        may have made it ready (a lost request's node it gave back)."""
        node, nversion = manager.nodes[node_id]
        if node.state != model.READY and node_id not in self._reread:
            self._reread.add(node_id)  # once a pass: a stale entry (a lost race) is not read for every request
            if self.nodes.refresh(manager, node_id) is not None:
                node, nversion = manager.nodes[node_id]
        return node, nversion

    def _reset_orphan(self, rid: str) -> None:
        """Offer a request its launcher lost again, and give the nodes already allocated to it back to the ready
        index in the same transaction (as Nodepool's cleanup deallocates a lost request's nodes): they are anyone's
        again, this request's too once it is served."""
        req, version = self.requests[rid]
        allocated = self._allocated_to(rid, req.provider)
        req.set_state(model.REQUESTED)
        req.launcher = req.provider = ""
        req.id = rid

        def done(moved) -> None:
            if moved is None:
                self._refused(rid, [node for node, _ in allocated])
                return
            for node, nversion in moved.nodes:
                manager = self.managers.get(node.provider)
                if manager is not None and manager.active:
                    manager.nodes[node.id] = (node, nversion)
                if node.state == model.READY:  # (not one held instead: a hold was asked of it)
                    self.index.add(node.label, ready_entry(node))
            if rid in self.requests:
                self.requests[rid] = (req, moved.version)
            freed = ", ".join(f"{n.id} {n.state}" for n, _ in moved.nodes)
            log.info("request %s: its launcher is gone; offering it again%s", rid,
                     f" (its nodes {freed} again)" if freed else "")
        self._after_request(rid, self.store.reset_request_async(req, version, allocated), done)

    def _refused(self, rid: str, nodes: list[Node]) -> None:
        """A write of request `rid` with `nodes` was refused: re-read our records of those nodes (they may be what
        was stale) and the request, and decide on it again as it is now."""
        for node in nodes:
            manager = self.managers.get(node.provider)
            if manager is not None and manager.active and node.id in manager.nodes:
                self.nodes.refresh(manager, node.id)
        if rid in self.requests:
            self._fetch_request(rid)
        self.wake()

    def _allocated_to(self, rid: str, provider: str) -> list[tuple[Node, int]]:
        """The nodes allocated to a request, with their versions: from our records of the providers we manage,
        read from ZooKeeper for another (its launcher's records went with it)."""
        managers = [m for m in self.managers.values() if m.active]
        if provider and provider in {m.name for m in managers}:
            known = [entry for m in managers for entry in m.nodes.values()]
        else:  # read once a pass, however many requests the lost launcher left (a failover resets them all)
            key = provider or None
            if key not in self._foreign_nodes:
                self._foreign_nodes[key] = list(self.store.load_nodes(key).values())
            known = self._foreign_nodes[key]
        return [(node, version) for node, version in known
                if node.state == model.ALLOCATED and node.request == rid]


def _without(labels: list[str], taken: list[str]) -> list[str]:
    """`labels` less one of each label in `taken`, in their order."""
    left = Counter(taken)
    out = []
    for label in labels:
        if left[label] > 0:
            left[label] -= 1
        else:
            out.append(label)
    return out
