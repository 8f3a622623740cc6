"""Operators' node commands in two cases found by an operator's hunt: a hold asked of an allocated node whose request
is offered again (its launcher lost), and a second delete of a node waiting for its launcher."""

from __future__ import annotations

from gatekeeper.zk import node_records as model
from gatekeeper.zk import paths
from gatekeeper.zk.node_changes import hold_node
from gatekeeper.zk.node_consumer import NodeConsumer
from gatekeeper.zk.node_records import Node, ready_entry
from gatekeeper.zk.nodes import NodeStore
from tests.functional.test_operator_cli_input import run_all, zk_config  # noqa: F401 (fixture)


def ready_node(zk, node_id: str) -> tuple[Node, int]:
    store = NodeStore(zk)
    store.ensure_paths(["debian"])
    node = Node(id=node_id, provider="sim-a", label="debian", state=model.READY)
    assert store.create_node(node)
    return node, store.write_node(node, 0, add_ready=True)


def test_a_hold_asked_of_an_allocated_node_is_applied_when_its_request_is_offered_again(zk):
    """The hold was asked for when the node's build gives it back; its request lost its launcher, so the node is
    given back now: held for alice (not made ready with her hold pending, to be held for another build later)."""
    store = NodeStore(zk)
    ready, version = ready_node(zk, "0000000201")
    rid = NodeConsumer(zk, "executor-1").request(["debian", "debian"])
    req, req_version = store.read_request(rid)
    req.set_state(model.PENDING)
    req.launcher, req.provider = "launcher-1", "sim-a"
    assert store.claim_request(req, req_version, [], [(ready_entry(ready), ready, version)]).result() is not None
    hold_node(zk, ready.id, "alice: keep this one", hours=5)  # held so when its consumer gives it back
    node, version = store.read_node(ready.id)
    req, req_version = store.read_request(rid)
    req.set_state(model.REQUESTED)
    req.launcher = req.provider = ""
    assert store.reset_request_async(req, req_version, [(node, version)]).result() is not None  # its launcher went
    node, version = store.read_node(ready.id)
    assert (node.state, node.hold_reason, node.hold_requested, node.request) == (model.HOLD, "alice: keep this one",
                                                                                 "", "")
    assert 4.9 * 3600 < node.hold_until - node.state_time < 5.1 * 3600
    assert ready_entry(node) not in zk.client.get_children(paths.ready_node("debian"))


def test_a_second_delete_of_a_node_its_launcher_has_not_deleted_yet_is_not_called_a_race(zk, zk_config):  # noqa: F811
    node, _ = ready_node(zk, "0000000401")
    [(first, _, _, _)] = run_all([("delete-node", node.id)], env=zk_config)
    [(code, out, err, _)] = run_all([("delete-node", node.id)], env=zk_config)
    assert (first, code, err) == (0, 0, "")
    assert out.strip() == f"node {node.id}: will be deleted"
