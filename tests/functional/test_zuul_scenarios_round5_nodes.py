"""Zuul's documented behaviour, fifth round, where nodes are short or held: a high-precedence pipeline's build is
served first, and an operator's autohold keeps the nodes of failed builds only, as many times as its count. Over
real wires: a real launcher on the OpenStack simulator (its servers are sshd hosts), ZooKeeper, the executor's
build runner."""

from __future__ import annotations

import threading

from gatekeeper.config.model import PRECEDENCE_ORDER
from gatekeeper.executor.nodes import LauncherNodes
from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient, add_autohold, list_autoholds
from gatekeeper.launcher.model import Autohold
from gatekeeper.zk import paths
from gatekeeper.zk.builds import FAILURE, SUCCESS
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, provider_yaml, wait_live
from tests.functional.test_multinode import Rig
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def waiting_requests(zk) -> int:
    return len(zk.client.get_children(paths.NODE_REQUESTS))


def test_with_nodes_short_a_high_precedence_pipelines_build_gets_the_next_node_before_an_earlier_normal_one(
        zk, sim, start_launcher) -> None:
    """Zuul's pipeline doc (precedence: "when nodes are scarce, the node requests of a higher precedence pipeline
    are served first") and Nodepool's request handling in priority order. One server in the cloud, in use; a check
    build (normal, head of its queue) asks for a node, then a gate build (high, fourth in its queue) does; when the
    node in use comes back, the gate's build is served first."""
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=1)))
    wait_live(zk, 1)
    busy = NodeRequestClient(zk, "busy")
    first = busy.wait(busy.request(["debian"]), 60)
    assert first.state == model.FULFILLED, first.reason
    in_use = busy.lock_nodes(first)
    nodes = LauncherNodes(zk, "executor-test")
    got: list[tuple[str, object]] = []
    abort = threading.Event()

    def build(name: str, priority: list[int]) -> None:
        node = nodes.acquire("debian", priority, f"{name} build", abort, timeout=120)
        got.append((name, node))

    check = threading.Thread(target=build, args=("check", [PRECEDENCE_ORDER["normal"], 0]))
    check.start()
    wait_for(lambda: waiting_requests(zk) == 1, 30, "the check build's node request")
    gate = threading.Thread(target=build, args=("gate", [PRECEDENCE_ORDER["high"], 3]))
    gate.start()
    wait_for(lambda: waiting_requests(zk) == 2, 30, "the gate build's node request")
    try:
        for node in in_use:
            busy.release(node)
        wait_for(lambda: len(got) == 1, 60, "the next node handed out")
        assert got[0][0] == "gate"
        assert waiting_requests(zk) == 1  # the check build still waits: one server only
        nodes.release(got[0][1])
        wait_for(lambda: len(got) == 2, 60, "the check build's node")
        assert got[1][0] == "check"
        nodes.release(got[1][1])
    finally:
        abort.set()
        check.join(30)
        gate.join(30)


def test_an_autohold_keeps_the_nodes_of_failed_builds_only_and_holds_no_more_than_its_count(
        zk, sim, start_launcher, tmp_path) -> None:
    """zuul-client autohold (--project, --job, --reason, --count): a build that succeeds is not held and takes
    nothing of the count; each failed build's node is held with the request's reason until the count is used up;
    the failure after that is not held."""
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=3)))
    wait_live(zk, 1)
    add_autohold(zk, Autohold(project="org/a", job="multinode", count=2, hold_hours=2, reason="flaky: bug 1234"))
    rig = Rig(tmp_path, zk, max_held=0)  # only the autohold holds anything
    passed = rig.run(["true"], label="debian", number=1)
    assert passed.result == SUCCESS and "held_until" not in passed.node
    [hold] = list_autoholds(zk)
    assert hold.held_nodes == []
    failed = [rig.run(["exit 3"], label="debian", number=n) for n in (2, 3, 4)]
    assert [r.result for r in failed] == [FAILURE] * 3
    records = node_records(zk)
    assert [(records[r.node["name"]].state, records[r.node["name"]].hold_reason) for r in failed[:2]] == [
        (model.HOLD, "flaky: bug 1234")] * 2
    assert "held_until" not in failed[2].node
    [hold] = list_autoholds(zk)
    assert sorted(hold.held_nodes) == sorted(r.node["name"] for r in failed[:2])
