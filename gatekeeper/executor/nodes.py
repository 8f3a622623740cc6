"""Where a build's node comes from, and where it goes back: the launcher, or a fixed list of hosts.

`LauncherNodes` is the production source: a ZooKeeper node request (through the node store's consumer side,
gatekeeper.zk.nodes) with the pipeline's precedence and the item's queue position as priority; the node
is locked for the build and released used (the launcher deletes it) or held. `FixedNodes` hands out given hosts
in turn (a developer's own VM, the benchmark).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gatekeeper.zk import node_records as model
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_consumer import NodeConsumer
from gatekeeper.zk.node_records import Node
from gatekeeper.zk.nodes import NodeStoreError
from gatekeeper.zk.provider_outliers import OutlierWatch

log = logging.getLogger("gatekeeper.executor.nodes")


class NoNode(Exception):
    """No node could be had for the build (the request failed or timed out): an infrastructure failure."""


class NodeWaitAborted(Exception):
    """The build was cancelled while it waited for its node."""


class NodeSource(Protocol):
    def acquire(self, label: str, priority: list[int], requestor: str, abort: threading.Event,
                timeout: float, avoid: Sequence[str] = ()) -> Node:
        """A node for `label`, from a provider not in `avoid` (where an earlier attempt of the build failed for
        infrastructure reasons) while another provider can serve it."""

    def acquire_set(self, labels: list[str], priority: list[int], requestor: str, abort: threading.Event,
                    timeout: float, avoid: Sequence[str] = ()) -> list[Node]:
        """One node per label, in that order, all from one provider (a nodeset): all of them or none."""

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        """Give the node back: used, or held (for `change`, "N,P", owned by `owner`)."""

    def held_count(self) -> int: ...

    def autohold(self, project: str, job: str, change: str, node: Node) -> tuple[str, float] | None: ...

    def provider_outlier(self, provider: str) -> dict[str, Any] | None:
        """The provider's entry when it is flagged now as a job-failure outlier (gatekeeper.zk.provider_outliers)."""


class LauncherNodes:
    """Nodes from the launcher through ZooKeeper node requests."""

    def __init__(self, zk: ZKClient, requestor: str) -> None:
        self.zk = zk
        self.client = NodeConsumer(zk, requestor)
        self.outliers = OutlierWatch(zk)

    def acquire(self, label: str, priority: list[int], requestor: str, abort: threading.Event,
                timeout: float = 600.0, avoid: Sequence[str] = ()) -> Node:
        return self.acquire_set([label], priority, requestor, abort, timeout, avoid)[0]

    def acquire_set(self, labels: list[str], priority: list[int], requestor: str, abort: threading.Event,
                    timeout: float = 600.0, avoid: Sequence[str] = ()) -> list[Node]:
        """One node request for every label: the launcher fulfils it from one provider, in the labels' order."""
        precedence, position = (list(priority) + [1, 0])[:2]
        what = f"label {labels[0]!r}" if len(labels) == 1 else f"labels {', '.join(labels)}"
        req_id = self.client.request(list(labels), requestor=requestor,
                                     priority=self.client.priority(int(precedence), int(position)), avoid=avoid)
        if avoid:
            log.info("node request %s for %s avoids provider %s", req_id, what, ", ".join(avoid))
        done = threading.Event()
        box: list[model.NodeRequest | None] = []

        def on_done(req: model.NodeRequest | None) -> None:
            box.append(req)
            done.set()

        self.client.watch(req_id, on_done)
        waited = 0.0
        while not done.wait(0.1):
            waited += 0.1
            if abort.is_set():
                self.client.cancel(req_id)
                raise NodeWaitAborted(f"node request {req_id} withdrawn: the build was cancelled")
            if waited >= timeout:
                self.client.cancel(req_id)
                raise NoNode(f"node request {req_id} for {what} not fulfilled within {timeout:.0f}s")
        req = box[0]
        if req is None:
            raise NoNode(f"node request {req_id} for {what} disappeared")
        if req.state != model.FULFILLED:
            self.client.cancel(req_id)
            raise NoNode(f"node request {req_id} for {what} failed: {req.reason or req.state}")
        try:
            nodes = self.client.lock_nodes(req)
        except NodeStoreError as exc:
            raise NoNode(f"could not lock the nodes of request {req_id}: {exc}") from None
        if len(nodes) != len(labels):  # never expected: a fulfilled request has one node per label
            for node in nodes:
                self.client.release(node)
            raise NoNode(f"node request {req_id} for {what} was fulfilled with {len(nodes)} nodes")
        return nodes

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        self.client.release(node, held=held, reason=reason, hold_hours=hold_hours, change=change, owner=owner)

    def autohold(self, project: str, job: str, change: str, node: Node) -> tuple[str, float] | None:
        """(reason, hours) of an operator's autohold request matching this failed build, taking one of its units."""
        hold = self.client.store.claim_autohold(project, job, change, node.id)
        if hold is None:
            return None
        return hold.reason or f"autohold {hold.id}", hold.hold_hours

    def held_count(self) -> int:
        return self.client.store.count_held()

    def provider_outlier(self, provider: str) -> dict[str, Any] | None:
        return self.outliers.get(provider)


class FixedNodes:
    """A fixed list of hosts, handed out one build at a time; held hosts are not handed out again."""

    def __init__(self, nodes: list[Node], outliers: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        self._free = list(nodes)
        self._outliers = outliers  # the flag of a host's provider (OutlierWatch.get), when its hosts name providers
        self._cond = threading.Condition()
        self.held: dict[str, str] = {}  # node id -> reason
        self.released: list[tuple[str, bool, str]] = []  # (node id, held, reason), in order

    def acquire(self, label: str, priority: list[int], requestor: str, abort: threading.Event,
                timeout: float = 600.0, avoid: Sequence[str] = ()) -> Node:
        return self.acquire_set([label], priority, requestor, abort, timeout, avoid)[0]

    def acquire_set(self, labels: list[str], priority: list[int], requestor: str, abort: threading.Event,
                    timeout: float = 600.0, avoid: Sequence[str] = ()) -> list[Node]:
        """One free host per label, taken together once all are free (the hosts' providers are not checked); a
        host of a provider to avoid only when no other fits."""
        waited = 0.0
        with self._cond:
            while True:
                free, taken = list(self._free), []
                for label in labels:
                    fits = sorted((n for n in free if not label or not n.label or n.label == label),
                                  key=lambda n: n.provider in avoid)
                    if not fits:
                        break
                    taken.append(fits[0])
                    free.remove(fits[0])
                if len(taken) == len(labels):
                    for node in taken:
                        self._free.remove(node)
                        node.set_state(model.IN_USE)
                    return taken
                if abort.is_set():
                    raise NodeWaitAborted("the build was cancelled while waiting for a node" if len(labels) == 1
                                          else "the build was cancelled while waiting for its nodes")
                if waited >= timeout:
                    raise NoNode(f"no host with label {labels[0]!r} free within {timeout:.0f}s" if len(labels) == 1
                                 else f"no hosts for labels {', '.join(labels)} free within {timeout:.0f}s")
                self._cond.wait(0.1)
                waited += 0.1

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        with self._cond:
            self.released.append((node.id, held, reason))
            if held:
                node.set_state(model.HOLD)
                node.hold_reason = reason
                self.held[node.id] = reason
            else:
                node.set_state(model.READY)
                self._free.append(node)
            self._cond.notify_all()

    def held_count(self) -> int:
        with self._cond:
            return len(self.held)

    def autohold(self, project: str, job: str, change: str, node: Node) -> tuple[str, float] | None:
        return None

    def provider_outlier(self, provider: str) -> dict[str, Any] | None:
        return self._outliers(provider) if self._outliers is not None else None
