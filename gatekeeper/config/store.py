"""The active layout in ZooKeeper: published once validated, read by every service.

What is stored is the layout's source files, so every service parses the same text into the same Layout.
A layout is published only after it parsed cleanly; a bad one never replaces the running one.
"""

from __future__ import annotations

import json

from gatekeeper.config.layout import Layout, parse_layout
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.sharding import read_sharded, write_sharded


def publish_layout(zk: ZKClient, layout: Layout) -> None:
    write_sharded(zk.client, paths.LAYOUT, json.dumps({"files": layout.files}).encode())


def read_layout(zk: ZKClient, connections: set[str] | None = None) -> Layout | None:
    """The published layout, or None if none was published yet."""
    raw = read_sharded(zk.client, paths.LAYOUT)
    if raw is None:
        return None
    return parse_layout(json.loads(raw)["files"], connections)
