"""Fixed hosts honour a build's wish to avoid a provider while another free host fits."""

from __future__ import annotations

import threading

from gatekeeper.executor.nodes import FixedNodes
from gatekeeper.zk.node_records import Node


def test_host_of_an_avoided_provider_is_handed_out_only_when_no_other_fits():
    source = FixedNodes([Node(id="a1", provider="cloud-a", label="x"), Node(id="b1", provider="cloud-b", label="x")])
    never = threading.Event()
    first = source.acquire("x", [1, 0], "t", never, 1.0, avoid=["cloud-a"])
    assert first.provider == "cloud-b"
    second = source.acquire("x", [1, 0], "t", never, 1.0, avoid=["cloud-a"])
    assert second.provider == "cloud-a"  # the only one left
