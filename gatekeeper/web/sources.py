"""What the web reads from ZooKeeper: pipeline states, nodes, node requests, images, autoholds, queue depths.

The web owns nothing: every function here reads records other services write (and the admin functions in
gatekeeper.web.admin write only what those services already accept from operators).  Pipeline states are read
through `PipelineStateLoader`, a narrow seam in front of the scheduler's storage format.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from kazoo.exceptions import NoNodeError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.components import list_components
from gatekeeper.zk.record import decode

log = logging.getLogger("gatekeeper.web.sources")

HIDDEN_NODE_FIELDS = ("private_key", "host_keys")  # a key path and pinned keys: not for a public page


class PipelineStateLoader(Protocol):
    def __call__(self, zk: ZKClient, pipeline: str) -> Any:
        """The pipeline's state (gatekeeper.models.pipeline.PipelineState), or None when it has none yet."""


def _children(zk: ZKClient, path: str) -> list[str]:
    try:
        return sorted(zk.client.get_children(path))
    except NoNodeError:
        return []


def _read(zk: ZKClient, path: str) -> Any:
    try:
        raw, _ = zk.client.get(path)
    except NoNodeError:
        return None
    if not raw:
        return None
    try:
        return decode(raw)
    except ValueError:
        log.warning("%s: not a JSON record; skipped", path)
        return None


class StoreStateLoader:
    """Pipeline states through the scheduler's own PipelineStore (read-only), reusing unchanged items."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __call__(self, zk: ZKClient, pipeline: str) -> Any:
        from gatekeeper.models.store import PipelineStore

        if zk.client.exists(paths.pipeline_state(pipeline)) is None:
            return None  # no scheduler has saved this pipeline yet (and the web creates nothing)
        state = PipelineStore(zk.client, pipeline).load(self._cache.get(pipeline))
        self._cache[pipeline] = state
        return state


def pipeline_names(zk: ZKClient, layout: Any) -> list[tuple[str, str, str]]:
    """(name, manager, description) of every pipeline: the layout's, then any other with state in ZooKeeper."""
    out = []
    seen = set()
    for p in getattr(layout, "pipelines", {}).values() if layout is not None else ():
        out.append((p.name, p.manager, p.description))
        seen.add(p.name)
    for name in _children(zk, paths.PIPELINES):
        if name not in seen:
            out.append((name, "", ""))
    return out


def nodes(zk: ZKClient) -> list[dict[str, Any]]:
    """Every node record (as dicts, without key material, with whether a consumer holds its lock, as Nodepool's
    list shows), oldest first."""
    out = []
    for ident in _children(zk, paths.NODES):
        data = _read(zk, paths.node(ident))
        if not isinstance(data, dict):
            continue
        data.pop("_v", None)
        data.setdefault("id", ident)
        for key in HIDDEN_NODE_FIELDS:
            data.pop(key, None)
        data["locked"] = bool(_children(zk, paths.node_lock(ident)))
        out.append(data)
    return sorted(out, key=lambda n: n.get("created", 0))


def node_requests(zk: ZKClient) -> list[dict[str, Any]]:
    out = []
    for ident in _children(zk, paths.NODE_REQUESTS):
        data = _read(zk, paths.node_request(ident))
        if isinstance(data, dict):
            data.pop("_v", None)
            data["id"] = ident
            out.append(data)
    return out


def images(zk: ZKClient) -> list[dict[str, Any]]:
    """Every image build on every provider."""
    out = []
    for image in _children(zk, paths.IMAGES):
        for provider in _children(zk, f"{paths.IMAGES}/{image}"):
            for build in _children(zk, paths.image_build(image, provider)):
                data = _read(zk, paths.image_build(image, provider, build))
                if isinstance(data, dict):
                    data.pop("_v", None)
                    data.update(id=build, image=data.get("image") or image, provider=data.get("provider") or provider)
                    out.append(data)
    return out


def autoholds(zk: ZKClient) -> list[dict[str, Any]]:
    out = []
    for ident in _children(zk, paths.HOLDS):
        data = _read(zk, paths.hold(ident))
        if isinstance(data, dict):
            data.pop("_v", None)
            data["id"] = ident
            out.append(data)
    return out


def providers(zk: ZKClient) -> list[dict[str, Any]]:
    """Every node provider's health and operator state (gatekeeper.zk.provider_store.providers_status)."""
    from gatekeeper.zk.provider_store import providers_status

    try:
        return providers_status(zk)
    except Exception:
        log.exception("web: cannot read the providers' health")
        return []


def dead_letter_counts(zk: ZKClient) -> dict[str, int]:
    """Events set aside after failing: waiting for an operator (dead letters), waiting for a retry, and how many
    ever became dead letters."""
    from gatekeeper.zk.deadletter import DeadLetters

    letters = DeadLetters(zk)
    try:
        return {"dead": len(letters.list()), "retrying": len(letters.retries()), "total": letters.total()}
    except Exception:
        log.exception("web: cannot read the dead letters")
        return {"dead": 0, "retrying": 0, "total": 0}


def event_queue_depths(zk: ZKClient) -> dict[str, int]:
    """Pending events per queue: management, history, and each source connection's trigger events."""
    depths = {
        "management": len(_queue_children(zk, paths.management_queue())),
        "history": len(_queue_children(zk, paths.history_queue())),
    }
    for connection in _children(zk, paths.CONNECTION_EVENTS):
        depths[f"trigger:{connection}"] = len(_queue_children(zk, paths.event_queue(connection)))
    return depths


def _queue_children(zk: ZKClient, path: str) -> list[str]:
    return [c for c in _children(zk, path) if c.startswith("q-")]


def console_bases(zk: ZKClient) -> list[str]:
    """The live-console base URLs executors advertise in their registration (`extra["console"]`)."""
    out = []
    for comp in list_components(zk, "executor"):
        base = (comp.extra or {}).get("console") or (comp.extra or {}).get("console_url")
        if base:
            out.append(str(base).rstrip("/"))
    return out

