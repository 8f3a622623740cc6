"""Records of the node pool kept in ZooKeeper: nodes, node requests, image builds, autoholds, provider state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from gatekeeper.zk.record import Record

# node states
BUILDING = "building"
READY = "ready"
ALLOCATED = "allocated"  # ready, promised to a request, not yet locked by its consumer
IN_USE = "in-use"
USED = "used"
HOLD = "hold"
DELETING = "deleting"
FAILED = "failed"
NODE_STATES = (BUILDING, READY, ALLOCATED, IN_USE, USED, HOLD, DELETING, FAILED)

MAX_HOLD_HOURS = 24 * 30  # the longest an operator may hold a node or ask an autohold for: 30 days

# request states
REQUESTED = "requested"
PENDING = "pending"  # claimed by a launcher that is launching nodes for it
FULFILLED = "fulfilled"
REQUEST_FAILED = "failed"

# image build states beyond building/ready/failed
IMAGE_GONE = "gone"  # was ready, but the cloud lost the image: never boot it again
IMAGE_DELETING = "deleting"  # an operator deleted it: never boot it again; cleanup removes it once unused

# server metadata that marks a server or image as the launcher's
META_OWNER = "gatekeeper"
META_NODE = "gatekeeper-node"
META_BUILD = "gatekeeper-image-build"


def _plain(value: Any) -> Any:
    """A copy of a JSON-like value (lists and dicts copied, nothing else to copy)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _HotRecord(Record):
    """A record written on every hand-out: `to_dict` without dataclasses.asdict's generic deep copy (the fields
    hold only JSON values), the same dict at a fraction of the cost."""

    _names: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        cls = type(self)
        if "_names" not in cls.__dict__:
            cls._names = tuple(f.name for f in fields(cls))
        data = self.unknown_fields()
        for name in cls._names:
            data[name] = _plain(getattr(self, name))
        data["_v"] = self.VERSION
        return data


@dataclass
class Node(_HotRecord):
    """One machine handed to builds: where it is, how to log in, which host keys to trust, and its state."""

    VERSION = 1
    id: str = ""
    provider: str = ""
    cloud: str = ""
    pool: str = ""
    label: str = ""
    image: str = ""
    image_build: str = ""  # the image build (snapshot) it booted from; "" for a base image or static host
    external_id: str = ""  # the cloud's server id (static: host name)
    address: str = ""
    port: int = 22
    username: str = "root"
    private_key: str = ""  # path of the SSH private key to log in with (on the consumer's machine)
    host_keys: list[str] = field(default_factory=list)  # "ssh-ed25519 AAAA..." scanned at boot: pin these
    state: str = BUILDING
    state_time: float = field(default_factory=time.time)
    created: float = field(default_factory=time.time)
    launcher: str = ""  # launcher process that created it
    request: str = ""  # the request it was launched or allocated for
    hold_reason: str = ""
    hold_until: float = 0.0
    hold_requested: str = ""  # an operator asked to hold this in-use node when released (the reason)
    hold_requested_hours: float = 0.0  # ... for this long (0: as long as its consumer holds nodes)
    hold_change: str = ""  # "N,P" of the change whose failed build this node is held for
    hold_owner: str = ""  # that change's owner (username): who, besides operators, may ask for access
    comment: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)  # its pool's node-attributes, for its consumer
    python_path: str = "auto"  # for its consumer (Ansible's interpreter), as Nodepool's node python_path
    shell_type: str = ""  # likewise its shell ("": the default one), as Nodepool's shell_type

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_time = time.time()

    def free(self) -> bool:
        """Take an allocated node back from its request (withdrawn, or its launcher lost): held, when an operator
        asked for a hold of it meanwhile (applied now, as its consumer's release would have), else ready. True
        when ready (its entry belongs in the ready index)."""
        self.request = ""
        if not self.hold_requested:
            self.set_state(READY)
            return True
        self.set_state(HOLD)
        self.hold_reason = self.hold_requested
        self.hold_until = time.time() + min(self.hold_requested_hours or 24.0, MAX_HOLD_HOURS) * 3600
        self.hold_requested, self.hold_requested_hours = "", 0.0
        return False


@dataclass
class NodeRequest(_HotRecord):
    """A consumer's ask for nodes; ids sort by priority, then age."""

    VERSION = 1
    id: str = ""
    labels: list[str] = field(default_factory=list)
    requestor: str = ""
    priority: int = 100
    state: str = REQUESTED
    nodes: list[str] = field(default_factory=list)
    provider: str = ""
    launcher: str = ""
    declined_by: list[str] = field(default_factory=list)
    requested_provider: str = ""  # the consumer asks for this provider only
    avoid_providers: list[str] = field(default_factory=list)  # served elsewhere while another provider can
    handed: list[dict] = field(default_factory=list)  # {"node": record, "version": n} as handed out: no re-read
    reason: str = ""
    created: float = field(default_factory=time.time)
    state_time: float = field(default_factory=time.time)

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_time = time.time()


@dataclass
class ImageBuild(Record):
    """One snapshot of an image on one provider."""

    VERSION = 1
    id: str = ""
    image: str = ""
    provider: str = ""
    state: str = BUILDING  # building, ready, failed, gone, deleting
    external_id: str = ""  # the cloud's image id
    template_id: str = ""  # the template server while building
    created: float = field(default_factory=time.time)
    state_time: float = field(default_factory=time.time)
    reason: str = ""

    def set_state(self, state: str) -> None:
        self.state = state
        self.state_time = time.time()


@dataclass
class Autohold(Record):
    """Hold the nodes of the next `count` failed builds matching project, job and change (a regex)."""

    VERSION = 1
    id: str = ""
    project: str = ""
    job: str = ""
    change: str = ".*"
    count: int = 1
    hold_hours: float = 24.0
    reason: str = ""
    held_nodes: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)


@dataclass
class ProviderState(Record):
    """What operators decided about a provider: drained (launch nothing, use up or delete its ready nodes) or not."""

    VERSION = 1
    name: str = ""
    drained: bool = False
    drain_reason: str = ""
    drained_at: float = 0.0


def ready_entry(node: Node) -> str:
    """Ready-index entry name: sorts oldest first and names provider and node without a read."""
    return f"{int(node.state_time * 1000):013d}-{node.provider}-{node.id}"


def parse_entry(name: str) -> tuple[str, str]:
    """(provider, node id) from a ready-index entry name."""
    rest = name.split("-", 1)[1]
    provider, node_id = rest.rsplit("-", 1)
    return provider, node_id
