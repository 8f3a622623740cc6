"""A build on a nodeset (Zuul's multi-node jobs): the nodes' names, one SSH key pair per build so that the primary
reaches every node, the inventory, the job's environment, and the other nodes' logs.

The first node of the nodeset is the primary: the workspace is copied there and the job's steps run there. Before
the steps, on the primary: `~/.ssh/id_gatekeeper` (the build's private key, mode 600), every node's pinned host
keys in `~/.ssh/known_hosts` (so `StrictHostKeyChecking=yes` holds), a `Host <node name>` entry per node in
`~/.ssh/config`, and the inventory `~/gatekeeper/inventory.yaml`; on every node, the build's public key in
`~/.ssh/authorized_keys` (the equivalent of Zuul's multi-node-known-hosts and multi-node-ssh roles).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gatekeeper.executor import logs
from gatekeeper.executor.masking import Masker
from gatekeeper.executor.remote import RemoteHost, known_hosts_text
from gatekeeper.executor.transfer import TransferError
from gatekeeper.zk.node_records import Node

log = logging.getLogger("gatekeeper.executor.multinode")

INVENTORY = "gatekeeper/inventory.yaml"  # under the primary's login home
SSH_KEY = ".ssh/id_gatekeeper"  # likewise


@dataclass
class BuildNode:
    """One node of a build's nodeset: its name in the nodeset, its record, and our connection to it."""

    name: str
    node: Node
    remote: RemoteHost | None = None


@dataclass
class NodesetPlan:
    """What a build request asks for: node names and labels in order (the first the primary), and groups."""

    names: list[str]
    labels: list[str]
    groups: dict[str, list[str]] = field(default_factory=dict)


def plan_of(nodeset: dict[str, Any]) -> NodesetPlan | None:
    """The request's nodeset as a plan; None for a one-node request on a label (no nodeset). ValueError, naming
    what is wrong, for a nodeset whose nodes lack a name or label or share a name."""
    nodes = nodeset.get("nodes") or []
    if not nodes:
        return None
    if not all(isinstance(n, dict) and n.get("name") and n.get("label") for n in nodes):
        raise ValueError(f"the build request's nodeset {nodeset.get('name', '')!r} has a node without a name or "
                         "label")
    names = [str(n["name"]) for n in nodes]
    if len(set(names)) != len(names):
        raise ValueError(f"the build request's nodeset {nodeset.get('name', '')!r} names a node twice: "
                         f"{', '.join(names)}")
    groups = {str(g.get("name")): [str(x) for x in g.get("nodes") or []]
              for g in nodeset.get("groups") or [] if isinstance(g, dict)}
    return NodesetPlan(names, [str(n["label"]) for n in nodes], groups)


def new_key_pair(comment: str) -> tuple[bytes, str]:
    """A fresh ed25519 key pair: (the private key in OpenSSH format, the public key's authorized_keys line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}"


def inventory(nodes: list[BuildNode], groups: dict[str, list[str]]) -> dict[str, Any]:
    """The inventory written on the primary: each node's label, provider and address, and the groups."""
    return {
        "primary": nodes[0].name,
        "nodes": {m.name: {"label": m.node.label, "provider": m.node.provider, "address": m.node.address,
                           "port": m.node.port, "username": m.node.username, "id": m.node.id}
                  for m in nodes},
        "groups": {name: list(members) for name, members in groups.items()},
    }


def ssh_config(nodes: list[BuildNode]) -> str:
    """`Host <name>` entries so that `ssh compute1` on the primary reaches that node with the build's key."""
    return "".join(f"Host {m.name}\n  HostName {m.node.address}\n  Port {m.node.port}\n  User {m.node.username}\n"
                   f"  IdentityFile ~/{SSH_KEY}\n  StrictHostKeyChecking yes\n" for m in nodes)


def environment(nodes: list[BuildNode], home: str) -> dict[str, str]:
    """The job's variables naming the nodes (see the README's job environment)."""
    primary, others = nodes[0], nodes[1:]
    return {
        "GK_INVENTORY": f"{home}/{INVENTORY}",
        "GK_SSH_KEY": f"{home}/{SSH_KEY}",
        "GK_NODES": " ".join(m.name for m in nodes),
        "GK_PRIMARY": primary.name,
        "GK_PRIMARY_ADDRESS": primary.node.address,
        "GK_SUBNODES": " ".join(m.name for m in others),
        "GK_SUBNODE_ADDRESSES": " ".join(m.node.address for m in others),
    }


def _write(remote: RemoteHost, path: str, data: bytes, append: bool = False, mode: str = "600") -> None:
    """Write (or append to) a file under the login's home, its directory and the file readable only by it."""
    parent = os.path.dirname(path) or "."
    cmd = (f"umask 077 && mkdir -p {shlex.quote(parent)} && cat {'>>' if append else '>'} {shlex.quote(path)} "
           f"&& chmod {mode} {shlex.quote(path)}")
    status, out = remote.execute(cmd, stdin=data, timeout=60)
    if status != 0:
        raise TransferError(f"{remote.where}: writing ~/{path} failed: {out.decode(errors='replace').strip()}")


def prepare(nodes: list[BuildNode], groups: dict[str, list[str]], build_id: str) -> None:
    """Let the primary reach every node over SSH with a key of this build's own, and write the inventory there.
    NodeLost or TransferError when a node cannot be used."""
    private, public = new_key_pair(f"gatekeeper-build-{build_id}")
    for member in nodes:
        _write(member.remote, ".ssh/authorized_keys", f"{public}\n".encode(), append=True)
    primary = nodes[0].remote
    _write(primary, SSH_KEY, private)
    _write(primary, ".ssh/known_hosts", "".join(known_hosts_text(m.node) for m in nodes).encode(), append=True)
    _write(primary, ".ssh/config", ssh_config(nodes).encode(), append=True)
    _write(primary, INVENTORY, yaml.safe_dump(inventory(nodes, groups), sort_keys=False).encode(), mode="644")


def lost_peers(nodes: list[BuildNode]) -> list[str]:
    """The nodes other than the primary that no longer answer (deleted, unreachable)."""
    return [m.name for m in nodes[1:] if m.remote is None or not m.remote.alive()]


def collect_peer_logs(member: BuildNode, patterns: list[str], log_dir: str, masker: Masker) -> list[str]:
    """A non-primary node's syslog and the job's `collect` files, stored flat as `<node name>-<file>`."""
    staging = os.path.join(log_dir, f".node-{member.name}")
    os.makedirs(staging, exist_ok=True)
    try:
        got = logs.collect_files(member.remote, patterns, staging, masker)
        names = got.files + [logs.collect_syslog(member.remote, staging, masker)]
        stored = []
        for name in names:
            target = f"{member.name}-{name}"
            os.replace(os.path.join(staging, name), os.path.join(log_dir, target))
            stored.append(target)
        return stored
    finally:
        shutil.rmtree(staging, ignore_errors=True)

