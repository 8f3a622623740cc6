"""Operators' holds of nodes, through a real ZooKeeper: the hold asked for is the hold applied when the node's
consumer gives it back, and a hold there already is replaced only when the operator says so."""

from __future__ import annotations

import time

import pytest

from gatekeeper.zk import node_records as model
from gatekeeper.zk.node_changes import MAX_HOLD_HOURS, NodeChangeError, hold_node
from gatekeeper.zk.node_consumer import NodeConsumer
from gatekeeper.zk.node_records import Node, ready_entry
from gatekeeper.zk.nodes import NodeStore
from tests.functional.test_operator_cli_input import run_all, zk_config  # noqa: F401 (fixture)

HOUR = 3600.0


def node_in_use(zk, node_id: str) -> tuple[NodeConsumer, Node]:
    """A ready node handed to a consumer's request (as a launcher hands it out) and locked in use by it."""
    store = NodeStore(zk)
    store.ensure_paths(["debian"])
    ready = Node(id=node_id, provider="sim-a", label="debian", state=model.READY)
    assert store.create_node(ready)
    version = store.write_node(ready, 0, add_ready=True)
    consumer = NodeConsumer(zk, "executor-1")
    rid = consumer.request(["debian"])
    request, request_version = store.read_request(rid)
    assert store.hand_out(request, request_version, [(ready_entry(ready), ready, version)], "sim-a",
                          "launcher-1").ok
    [node] = consumer.lock_nodes(consumer.wait(rid, 30))
    assert store.read_node(node_id)[0].state == model.IN_USE
    return consumer, node


def within(value: float, expected: float, slack: float = 60.0) -> bool:
    return expected - slack <= value <= expected + slack


def test_an_in_use_node_held_for_two_hours_by_the_cli_is_held_two_hours_when_released(zk, zk_config):  # noqa: F811
    consumer, node = node_in_use(zk, "0000000101")
    [(code, out, err, _)] = run_all([("hold", node.id, "--reason", "debug the image", "--hours", "2")],
                                    env=zk_config)
    assert (code, out.strip()) == (0, f"node {node.id}: held (debug the image)"), err
    asked = NodeStore(zk).read_node(node.id)[0]
    assert (asked.state, asked.hold_requested, asked.hold_requested_hours) == (model.IN_USE, "debug the image", 2.0)
    consumer.release(node)  # the build passed: the consumer gives it back as used, with its own default hold
    held = NodeStore(zk).read_node(node.id)[0]
    assert (held.state, held.hold_reason) == (model.HOLD, "debug the image")
    assert within(held.hold_until, time.time() + 2 * HOUR), (held.hold_until - time.time()) / HOUR


def test_a_failed_build_and_an_operator_both_holding_a_node_keep_it_for_the_longer_hold(zk):
    consumer, node = node_in_use(zk, "0000000102")
    hold_node(zk, node.id, "watch it", hours=48)
    consumer.release(node, held=True, reason="build 7 failed", hold_hours=24, change="7,1", owner="alice")
    held = NodeStore(zk).read_node(node.id)[0]
    assert (held.state, held.hold_reason, held.hold_change) == (model.HOLD, "build 7 failed", "7,1")
    assert within(held.hold_until, time.time() + 48 * HOUR)


def test_a_recorded_hold_request_beyond_the_longest_hold_is_cut_to_it(zk):
    """A record written by hand (or by an older tool) may ask for any hours: the release bounds them."""
    consumer, node = node_in_use(zk, "0000000103")
    store = NodeStore(zk)
    record, version = store.read_node(node.id)
    record.hold_requested, record.hold_requested_hours = "forever", 10 * MAX_HOLD_HOURS
    assert store.write_node(record, version) is not None
    consumer.release(node)
    held = store.read_node(node.id)[0]
    assert held.state == model.HOLD and within(held.hold_until, time.time() + MAX_HOLD_HOURS * HOUR)


def test_a_hold_of_no_time_or_beyond_the_longest_hold_is_refused_and_changes_nothing(zk):
    _, node = node_in_use(zk, "0000000104")
    for hours in (0.0, -1.0, float("nan"), MAX_HOLD_HOURS + 1):
        with pytest.raises(NodeChangeError, match=f"node {node.id}: a hold lasts more than 0 and at most 720 hours"):
            hold_node(zk, node.id, "look", hours=hours)
    record = NodeStore(zk).read_node(node.id)[0]
    assert (record.state, record.hold_requested, record.hold_requested_hours) == (model.IN_USE, "", 0.0)


def test_an_autohold_claimed_twice_for_one_node_keeps_that_node_and_takes_one_unit(zk):
    """A claim retried after its first write went through (a reply lost with the connection) finds its node among
    the held ones: the same hold again, not "no autohold left" for the node that took its last unit."""
    store = NodeStore(zk)
    store.add_autohold(model.Autohold(project="org/a", job="unit", change=r"\d+,1", count=1, reason="look inside"))
    first = store.claim_autohold("org/a", "unit", "7,1", "node-1")
    again = store.claim_autohold("org/a", "unit", "7,1", "node-1")
    assert first is not None and again is not None and again.id == first.id and again.reason == "look inside"
    [(hold, _)] = store.autoholds()
    assert hold.held_nodes == ["node-1"]
    assert store.claim_autohold("org/a", "unit", "8,1", "node-2") is None  # its one unit is taken


def ready_node(zk, node_id: str) -> Node:
    """A ready node in the ready index, as a launcher leaves one."""
    store = NodeStore(zk)
    store.ensure_paths(["debian"])
    node = Node(id=node_id, provider="sim-a", label="debian", state=model.READY)
    assert store.create_node(node)
    store.write_node(node, 0, add_ready=True)
    return node


def test_a_held_node_is_not_held_again_unless_the_hold_is_replaced_on_purpose(zk):
    """A second hold would replace the first one's reason and expiry: an operator could shorten a hold another set,
    or make a held node expire at once. It is refused, naming the hold there; `replace` puts it in its place."""
    node = ready_node(zk, "0000000105")
    hold_node(zk, node.id, "alice debugs the image", hours=48)
    first = NodeStore(zk).read_node(node.id)[0]
    with pytest.raises(NodeChangeError, match=rf"^node {node.id} is held already until \d{{4}}-\d\d-\d\d \d\d:\d\d UTC "
                                              r"\(alice debugs the image\); to put this reason and expiry in its "
                                              r"place, hold it with --replace") as refused:
        hold_node(zk, node.id, "bob is done", hours=0.01)
    assert refused.value.status == 409
    kept = NodeStore(zk).read_node(node.id)[0]
    assert (kept.state, kept.hold_reason, kept.hold_until) == (model.HOLD, first.hold_reason, first.hold_until)
    hold_node(zk, node.id, "bob is done", hours=0.01, replace=True)
    replaced = NodeStore(zk).read_node(node.id)[0]
    assert replaced.hold_reason == "bob is done" and within(replaced.hold_until, time.time() + 36)


def test_an_in_use_node_with_a_hold_asked_is_not_asked_again_unless_replaced(zk):
    _, node = node_in_use(zk, "0000000106")
    hold_node(zk, node.id, "watch it", hours=48)
    with pytest.raises(NodeChangeError, match=rf"^node {node.id} has a hold asked already, for when its build ends "
                                              r"\(watch it\)"):
        hold_node(zk, node.id, "shorter", hours=1)
    hold_node(zk, node.id, "longer", hours=72, replace=True)
    record = NodeStore(zk).read_node(node.id)[0]
    assert (record.hold_requested, record.hold_requested_hours) == ("longer", 72.0)


def test_the_cli_refuses_a_second_hold_and_replaces_one_with_replace(zk, zk_config):  # noqa: F811
    node = ready_node(zk, "0000000107")
    hold = ("hold", node.id, "--reason", "look")
    assert run_all([hold], env=zk_config)[0][0] == 0
    [(code, out, err, _)] = run_all([hold], env=zk_config)
    assert (code, out) == (1, "") and f"node {node.id} is held already until " in err and "Traceback" not in err
    [(code, out, err, _)] = run_all([(*hold[:3], "look again", "--hours", "2", "--replace")], env=zk_config)
    assert (code, out.strip()) == (0, f"node {node.id}: held (look again)"), err
    assert NodeStore(zk).read_node(node.id)[0].hold_reason == "look again"
