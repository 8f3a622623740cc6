"""A node's pinned SSH host keys, as every consumer of nodes trusts them: paramiko HostKeys for a client that
refuses any other key (the executor, the launcher's own logins), and known_hosts text for OpenSSH (rsync)."""

from __future__ import annotations

import base64
import binascii

import paramiko

from gatekeeper.zk.node_records import Node


class UnusableHostKey(ValueError):
    """A pinned host key that is not "TYPE BASE64" of a key type SSH knows: nothing can be verified against it."""


def host_name(address: str, port: int) -> str:
    """The known_hosts name of address:port."""
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_text(node: Node) -> str:
    """A known_hosts file pinning the node's host keys, for OpenSSH."""
    name = host_name(node.address, node.port)
    return "".join(f"{name} {' '.join(k.split()[:2])}\n" for k in node.host_keys)


def read_host_key(line: str) -> tuple[str, paramiko.PKey]:
    """A pinned host key as written ("TYPE BASE64", maybe a comment after): its type and key. Raises UnusableHostKey
    saying why it cannot be read (the layout refuses such a key; a node record holding one refuses logins)."""
    parts = line.split()
    if len(parts) < 2:
        raise UnusableHostKey(f'{line.strip()[:40]!r} is not "TYPE BASE64" (such as a line of ssh-keyscan\'s '
                              "output without the host)")
    kind, b64 = parts[:2]
    try:
        return kind, paramiko.PKey.from_type_string(kind, base64.b64decode(b64, validate=True))
    except paramiko.UnknownKeyType:
        raise UnusableHostKey(f"is of unknown type {kind!r}") from None
    except (binascii.Error, paramiko.SSHException, ValueError):
        raise UnusableHostKey(f"is not a valid key of type {kind}") from None


def pinned_host_keys(node: Node) -> paramiko.HostKeys:
    """The node's pinned host keys as paramiko HostKeys, for a client with RejectPolicy (paramiko has no public
    setter: callers assign it to `SSHClient._host_keys`). Raises UnusableHostKey for a key that cannot be read."""
    keys = paramiko.HostKeys()
    name = host_name(node.address, node.port)
    for line in node.host_keys:
        try:
            kind, key = read_host_key(line)
        except UnusableHostKey as exc:
            raise UnusableHostKey(f"node {node.id or node.address}: pinned host key {exc}") from None
        keys.add(name, kind, key)
    return keys
