"""Developers' access to held nodes: who asked for which node, with which public key, until when.

A node held after a failed build can be reached by the owner of the change it ran for (or by an operator) with
their own SSH key, for at most the hold's remaining time. A grant is a record at `/nodepool/access/<id>`; the
launcher, which owns the nodes, installs the key on the node, and removes it when the grant expires, is revoked, or
the node is released or deleted. Every step is written to the audit log (`gatekeeper.audit`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
import time
import uuid
from dataclasses import dataclass, field

from kazoo.exceptions import NoNodeError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import Record, decode

audit = logging.getLogger("gatekeeper.audit")

REQUESTED, INSTALLED, REMOVED, FAILED = "requested", "installed", "removed", "failed"
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
USERNAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class AccessRefused(Exception):
    """A request for access that is not allowed or not valid; the message says why, for the person asking."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AccessGrant(Record):
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    node: str = ""
    user: str = ""  # whose key it is
    public_key: str = ""  # one OpenSSH public key line, comment dropped
    requested_by: str = ""  # who asked (the user, or an operator)
    created: float = field(default_factory=time.time)
    expires: float = 0.0
    state: str = REQUESTED
    message: str = ""  # why it failed or was removed

    @property
    def marker(self) -> str:
        """The comment the key carries in authorized_keys, so that exactly this grant's line can be removed."""
        return f"gatekeeper-access-{self.id}"


def parse_public_key(text: str) -> str:
    """One OpenSSH public key line (type and base64 body, comment dropped); raises AccessRefused (400)."""
    if "PRIVATE KEY" in text:
        raise AccessRefused("that is a private key, not an OpenSSH public key: give the .pub file (and keep the "
                            "private key to yourself)", 400)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1:
        raise AccessRefused("expected exactly one OpenSSH public key line (like ~/.ssh/id_ed25519.pub)", 400)
    parts = lines[0].split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise AccessRefused(f"not an OpenSSH public key: it must start with one of {', '.join(KEY_TYPES[:3])}, "
                            "...; was a private key given?", 400)
    try:
        blob = base64.b64decode(parts[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        inner = blob[4:4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise AccessRefused("the public key's base64 body is damaged", 400) from None
    if inner != parts[0]:
        raise AccessRefused(f"the public key says {parts[0]} but its body holds a {inner!r} key", 400)
    return f"{parts[0]} {parts[1]}"


def _read_node(zk: ZKClient, node_id: str) -> dict:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", node_id):
        raise AccessRefused(f"{node_id!r} is not a node id", 400)
    try:
        raw, _ = zk.client.get(paths.node(node_id))
        data = decode(raw)
    except NoNodeError:
        raise AccessRefused(f"node {node_id} does not exist", 404) from None
    except ValueError:
        raise AccessRefused(f"node {node_id}'s record cannot be read", 409) from None
    if not isinstance(data, dict):
        raise AccessRefused(f"node {node_id}'s record cannot be read", 409)
    return data


def node_owner(zk: ZKClient, node_id: str) -> str:
    """The owner of the change a held node was kept for; raises AccessRefused when it is not known."""
    owner = _read_node(zk, node_id).get("hold_owner", "")
    if not owner:
        raise AccessRefused(f"node {node_id} was not held for a change with a known owner: name the user (--user)",
                            400)
    return owner


def request_access(zk: ZKClient, node_id: str, user: str, public_key: str, requested_by: str, *,
                   operator: bool = False, hours: float | None = None, enabled: bool = True) -> AccessGrant:
    """Ask for `user`'s key on held node `node_id`; raises AccessRefused saying why it is not allowed.

    Allowed for the owner of the change whose failed build the node is held for, or for an operator (who may name
    any user); never beyond the hold's expiry.
    """
    if not enabled:
        raise AccessRefused("access to held nodes is disabled in this deployment's config")
    if not USERNAME.match(user or ""):
        raise AccessRefused(f"{user!r} is not a user name", 400)
    key = parse_public_key(public_key)
    if hours is not None and not hours > 0:
        raise AccessRefused(f"hours must be a positive number, not {hours!r}", 400)
    node = _read_node(zk, node_id)
    if node.get("state") != "hold":
        raise AccessRefused(f"node {node_id} is not held (it is {node.get('state', 'unknown')}): only nodes held "
                            "after a failed build can be reached", 409)
    owner = node.get("hold_owner", "")
    if not operator and (not owner or owner != requested_by or user != requested_by):
        who = f"{owner}'s" if owner else "another"
        raise AccessRefused(f"node {node_id} is held for {who} change {node.get('hold_change') or ''}".rstrip()
                            + f"; {requested_by} may not reach it (only the change owner or an operator)")
    now = time.time()
    until = float(node.get("hold_until") or 0)
    if until <= now:
        raise AccessRefused(f"node {node_id}'s hold has expired", 409)
    expires = min(until, now + hours * 3600) if hours else until
    grant = AccessGrant(node=node_id, user=user, public_key=key, requested_by=requested_by, expires=expires)
    zk.client.create(paths.access_grant(grant.id), grant.to_bytes(), makepath=True)
    audit.info("access %s requested by %s for %s on node %s (change %s) until %s", grant.id, requested_by, user,
               node_id, node.get("hold_change", ""), time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires)))
    return grant


def list_grants(zk: ZKClient) -> list[tuple[AccessGrant, int]]:
    """Every grant with its znode version; unreadable records are skipped (and logged)."""
    try:
        children = zk.client.get_children(paths.ACCESS)
    except NoNodeError:
        return []
    out = []
    for ident in sorted(children):
        try:
            raw, stat = zk.client.get(paths.access_grant(ident))
            out.append((AccessGrant.from_bytes(raw), stat.version))
        except NoNodeError:
            continue
        except (ValueError, TypeError):
            logging.getLogger("gatekeeper.zk.access").warning("access grant %s cannot be read; skipped", ident)
    return out


def revoke(zk: ZKClient, grant_id: str, by: str) -> AccessGrant:
    """End a grant early: the launcher removes the key. Raises AccessRefused (404) for an unknown id."""
    for grant, version in list_grants(zk):
        if grant.id == grant_id:
            grant.expires = min(grant.expires, time.time())
            grant.message = f"revoked by {by}"
            zk.client.set(paths.access_grant(grant.id), grant.to_bytes(), version=version)
            audit.info("access %s revoked by %s (node %s, user %s)", grant.id, by, grant.node, grant.user)
            return grant
    raise AccessRefused(f"no access grant {grant_id!r}", 404)


def save(zk: ZKClient, grant: AccessGrant, version: int) -> None:
    zk.client.set(paths.access_grant(grant.id), grant.to_bytes(), version=version)


def delete(zk: ZKClient, grant_id: str) -> None:
    try:
        zk.client.delete(paths.access_grant(grant_id))
    except NoNodeError:
        pass
