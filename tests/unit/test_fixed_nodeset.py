"""A fixed list of hosts serves a nodeset: one host per label, in the labels' order, all at once or none."""

from __future__ import annotations

import threading

import pytest

from gatekeeper.executor.nodes import FixedNodes, NoNode
from gatekeeper.zk import node_records as model
from gatekeeper.zk.node_records import Node


def test_fixed_hosts_serve_a_nodeset_in_order_and_all_or_nothing() -> None:
    hosts = [Node(id="h1", label="small"), Node(id="h2", label="big"), Node(id="h3", label="small")]
    source = FixedNodes(hosts)
    got = source.acquire_set(["big", "small"], [1, 0], "test", threading.Event(), timeout=1)
    assert [n.id for n in got] == ["h2", "h1"] and all(n.state == model.IN_USE for n in got)
    # one small host is left: a request for two waits, takes nothing, and gives up
    with pytest.raises(NoNode, match="small, small"):
        source.acquire_set(["small", "small"], [1, 0], "test", threading.Event(), timeout=0.3)
    left = source.acquire("small", [1, 0], "test", threading.Event(), timeout=1)
    assert left.id == "h3"
    source.release(left)
    for node in got:
        source.release(node)
    assert len(source.acquire_set(["small", "small"], [1, 0], "test", threading.Event(), timeout=1)) == 2
