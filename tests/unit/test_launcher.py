"""Launcher pieces that need no ZooKeeper or cloud: records, names, quota arithmetic."""

from __future__ import annotations

import threading
import time

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.model import Node, NodeRequest, parse_entry, ready_entry
from gatekeeper.launcher.provider_manager import ProviderManager
from gatekeeper.launcher.providers.base import Limits, ProviderAdapter
from gatekeeper.launcher.providers.openstack import is_quota_message

LAYOUT = """
nodepool:
  labels: [{name: small}, {name: big}]
  providers:
    - name: east-1
      driver: openstack
      cloud: east
      max-servers: 10
      pools:
        - name: tiny
          max-servers: 2
          labels: [{name: small, image: deb, flavor: s}]
        - name: main
          labels: [{name: big, image: deb, flavor: l}]
      images: [{name: deb, base-image: debian-12}]
"""


class LimitsOnly(ProviderAdapter):
    """A cloud that only reports limits (what the quota arithmetic reads)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    def limits(self) -> Limits:
        return self._limits

    def poll(self):
        return {}


@pytest.fixture
def manager():
    provider = parse_layout({"l.yaml": LAYOUT}).nodepool.providers["east-1"]
    m = ProviderManager(provider, LimitsOnly(Limits(instances=8, instances_used=3)), owner="gk", post=print,
                        stop_event=threading.Event(), ssh_key="", key_name="")
    yield m
    m.stop()


def test_ready_entry_sorts_oldest_first_and_names_provider_and_node():
    old = Node(id="aaaa", provider="east-1", label="small", state_time=1000.0)
    new = Node(id="0000", provider="east-1", label="small", state_time=2000.0)
    assert sorted([ready_entry(new), ready_entry(old)])[0] == ready_entry(old)
    assert parse_entry(ready_entry(old)) == ("east-1", "aaaa")


def test_request_priority_orders_by_precedence_then_queue_position():
    p = NodeRequestClient.priority
    names = sorted(f"{x:06d}-0000000001" for x in (p(1, 0), p(0, 7), p(0, 2), p(2, 0)))
    assert names == [f"{p(0, 2):06d}-0000000001", f"{p(0, 7):06d}-0000000001", f"{p(1, 0):06d}-0000000001",
                     f"{p(2, 0):06d}-0000000001"]


def test_records_read_older_dicts_and_ignore_unknown_keys():
    node = Node.from_dict({"id": "n1", "state": "ready", "some_future_field": 1})
    assert node.id == "n1" and node.host_keys == [] and node.port == 22
    req = NodeRequest.from_bytes(NodeRequest(labels=["small"], requestor="x").to_bytes())
    assert req.labels == ["small"] and req.state == "requested"


def test_quota_counts_cloud_limits_pool_max_servers_and_every_node_state(manager):
    assert manager.capacity() == 10  # limits not read yet: max-servers
    manager.refresh_limits()
    assert manager.capacity() == 5  # the cloud allows 8, 3 are used by someone else
    assert manager.free("small") == 2  # the pool's own max-servers
    for i, state in enumerate(("building", "hold", "deleting")):
        manager.nodes[f"n{i}"] = (Node(id=f"n{i}", pool="main", label="big", state=state), 0)
    assert manager.free("big") == 2 and manager.free("small") == 2
    manager.nodes["n3"] = (Node(id="n3", pool="tiny", label="small", state="in-use"), 0)
    assert manager.free("small") == 1
    assert manager.can_ever_serve(["big"] * 5) and not manager.can_ever_serve(["big"] * 6)
    assert not manager.can_ever_serve(["fedora"])
    assert manager.can_ever_serve(["small"] * 2) and not manager.can_ever_serve(["small"] * 3)  # tiny's 2


TWO_POOLS = """
nodepool:
  labels: [{name: small}, {name: big}]
  providers:
    - name: east-1
      driver: openstack
      cloud: east
      pools:
        - name: tiny
          max-servers: 2
          labels: [{name: small, image: deb, flavor: s}]
        - name: main
          max-servers: 3
          labels: [{name: small, image: deb, flavor: s}, {name: big, image: deb, flavor: l}]
      images: [{name: deb, base-image: debian-12}]
"""


def test_a_request_beyond_the_max_servers_of_the_pools_offering_its_labels_can_never_be_served():
    provider = parse_layout({"l.yaml": TWO_POOLS}).nodepool.providers["east-1"]
    manager = ProviderManager(provider, LimitsOnly(Limits()), owner="gk", post=print, stop_event=threading.Event(),
                              ssh_key="", key_name="")
    try:
        # small is offered by tiny (2) and main (3), big by main alone
        assert manager.can_ever_serve(["small"] * 5) and not manager.can_ever_serve(["small"] * 6)
        assert manager.can_ever_serve(["big"] * 3) and not manager.can_ever_serve(["big"] * 4)
        assert manager.can_ever_serve(["big", "big", "small", "small"])
        assert not manager.can_ever_serve(["big", "small"] * 3)
    finally:
        manager.stop()


def test_quota_errors_are_recognised_from_the_cloud_message():
    assert is_quota_message("Quota exceeded for instances: Requested 1, but already used 10 of 10 instances")
    assert is_quota_message("Exceeds quota for cores")
    assert not is_quota_message("No valid host was found.")


def test_breaker_opens_after_consecutive_failures_doubles_its_backoff_to_a_cap_and_probes_once():
    from gatekeeper.launcher.health import BACKING_OFF, HEALTHY, PROBING, ProviderHealth

    health = ProviderHealth("p", threshold=3, backoff=2.0, backoff_cap=5.0)
    for _ in range(2):
        health.record(False, error="No valid host was found.")
    assert health.state == HEALTHY and health.allows_launch()
    health.record(False, error="No valid host was found.")
    assert health.state == BACKING_OFF and not health.allows_launch()
    lengths = []
    for _ in range(3):
        lengths.append(round(health.until - time.monotonic()))
        assert health.allows_launch(now=health.until)  # backoff over: one probe
        assert health.state == PROBING
        health.launch_started()
        assert not health.allows_launch(now=health.until)  # only one at a time
        health.record(False, error="still broken")
    assert lengths == [2, 4, 5]  # doubling, capped
    assert health.status()["backing_off_until"] > time.time()
    health.allows_launch(now=health.until)
    health.launch_started()
    health.record(True, 12.5)
    assert health.state == HEALTHY and health.allows_launch() and health.status()["boot_p50_s"] == 12.5
    assert health.status()["error_rate"] == round(6 / 7, 3)
