"""The node pool's max-hold-age, as Nodepool's: a node held longer than it is deleted by cleanup even though its
hold says later; one held for less keeps its hold. Real ZooKeeper and the OpenStack simulator over HTTP."""

from __future__ import annotations

import threading
import time

from gatekeeper.launcher import model
from gatekeeper.launcher.cleanup import cleanup_provider
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, provider_yaml, servers
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher

MAX_HOLD_AGE = 3  # seconds


def test_a_node_held_longer_than_max_hold_age_is_deleted_before_its_hold_expires(zk, zk_factory, sim,
                                                                                 start_launcher):
    layout = pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")).replace(
        "nodepool:\n", f"nodepool:\n  max-hold-age: {MAX_HOLD_AGE}\n", 1)
    launcher = start_launcher(layout)  # (no periodic cleanup pass: the test runs one)
    client = NodeRequestClient(zk_factory(), "holder")
    old, young = (client.lock_nodes(client.wait(client.request(["debian"]), 30))[0] for _ in range(2))
    client.release(old, held=True, reason="build 1 failed", hold_hours=24)
    held_at = node_records(zk)[old.id].state_time
    wait_for(lambda: time.time() > held_at + MAX_HOLD_AGE, MAX_HOLD_AGE + 5, "the first hold past max-hold-age")
    client.release(young, held=True, reason="build 2 failed", hold_hours=24)

    cleanup_provider(launcher, launcher.managers["prov-a"])
    done = threading.Event()
    launcher.post(done.set)  # the loop runs what cleanup posted before this
    assert done.wait(10)
    records = node_records(zk)
    assert old.id not in records or records[old.id].state in (model.USED, model.DELETING)
    assert records[young.id].state == model.HOLD and records[young.id].hold_reason == "build 2 failed"
    wait_for(lambda: old.external_id not in {s.id for s in servers(sim, "alpha")}, 30, "the old hold's server gone")
    assert young.external_id in {s.id for s in servers(sim, "alpha")}


def test_replacing_a_hold_keeps_the_time_the_node_was_first_held(zk) -> None:
    """max-hold-age counts from when the node was held: an operator's `hold --replace` changes its reason and
    expiry, not when the hold began (or a re-hold would keep a node past the cap for ever)."""
    from gatekeeper.zk.node_changes import hold_node
    from gatekeeper.zk.nodes import NodeStore

    store = NodeStore(zk)
    store.ensure_paths(["debian"])
    node = model.Node(id="0123456789ab", provider="p", label="debian", state=model.HOLD, hold_reason="first",
                      hold_until=time.time() + 3600)
    node.state_time = time.time() - 7200  # held two hours ago
    assert store.create_node(node)
    hold_node(zk, node.id, "second look", hours=48, replace=True)
    held, _ = store.read_node(node.id)
    assert (held.state, held.hold_reason) == (model.HOLD, "second look")
    assert held.state_time == node.state_time
