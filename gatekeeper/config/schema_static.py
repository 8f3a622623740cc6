"""voluptuous schemas for a static provider's hosts: the provider's `hosts`, and Nodepool's `pools[].nodes`.

Both take the same per-host keys; a Nodepool node's name is its address. gatekeeper.config.layout turns either into
StaticHosts.
"""

from __future__ import annotations

from typing import Any

import voluptuous as v

from gatekeeper.config.schema_parts import INT, NAME, NUMBER
from gatekeeper.zk.node_host_keys import UnusableHostKey, read_host_key


def HOST_KEY(value: Any) -> str:  # noqa: N802 - reads like a type in schemas
    """A static host's key to pin, "TYPE BASE64" as ssh-keyscan prints it, read as every login will read it: a key
    that cannot be read would refuse every login to the host's nodes, so the layout refuses it."""
    if not isinstance(value, str):
        raise v.Invalid("expected str")
    try:
        read_host_key(value)
    except UnusableHostKey as exc:
        raise v.Invalid(f"the key {exc}") from None
    return value


# Nodepool's switch, which gatekeeper has one way only (a static node's or an OpenStack pool's): keys are always
# checked, so its default (true) is taken as written and false refused with the reason
HOST_KEY_CHECKING = v.All(bool, v.In([True], msg="cannot be false: every node's host key is pinned and checked"))

_STATIC_KEYS = {
    "port": v.All(INT, v.Range(min=1, max=65535)),
    "connection-port": v.All(INT, v.Range(min=1, max=65535)),  # Nodepool's name for port
    "username": str,
    # a list, or one label as a string (as Nodepool's static nodes take it)
    v.Required("labels"): v.Any(NAME, v.All([NAME], v.Length(min=1)), msg="expected a label or a list of them"),
    "host-key": HOST_KEY,
    "max-parallel-jobs": v.All(INT, v.Range(min=1, msg="must be at least 1")),
    "timeout": v.All(NUMBER, v.Range(min=1)),  # seconds its host-key scan may take
    # Nodepool's switches that gatekeeper has one way only: keys are always checked, over SSH
    "host-key-checking": HOST_KEY_CHECKING,
    "connection-type": v.In(["ssh"], msg="expected ssh (the only connection gatekeeper makes)"),
}
STATIC_HOST = v.Schema({v.Required("name"): NAME, v.Required("address"): str, **_STATIC_KEYS})
# Nodepool's static nodes, listed in a static provider's pools: the name is the host's address
STATIC_NODE = v.Schema({v.Required("name"): NAME, **_STATIC_KEYS})
