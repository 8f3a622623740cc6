"""Where the launcher sends a node request when nothing ready fits it: to the provider the request names while that
one can serve it (else to any other), to the best-priority provider with room, and a request its vanished launcher
left pending is offered again. Over real wires: ZooKeeper, the OpenStack simulator over HTTP, nodes that are SSH
hosts."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.zk.node_consumer import NodeConsumer
from tests.functional import test_launcher_requests
from tests.functional.test_launcher import wait_live
from tests.functional.test_launcher_requests import provider, ready, take, wait_ready
from tests.helpers import wait_for

ssh_key = test_launcher_requests.ssh_key
sim = test_launcher_requests.sim  # clouds alpha and beta
start_launcher = test_launcher_requests.start_launcher


def ready_on_a_and_b_live(zk, start_launcher) -> tuple[str, str]:
    """prov-a (one launcher) has the label's min-ready node; prov-b (another launcher) is live with room and none
    ready. A request that is not sent to prov-b gets prov-a's node."""
    start_launcher({"debian": 1}, provider("prov-a", "alpha", ["debian"], 2))
    [ready_node] = wait_ready(zk, "debian", 1)
    assert ready_node[0] == "prov-a"
    start_launcher({"debian": 1}, provider("prov-b", "beta", ["debian"], 2))
    wait_live(zk, 2)
    return ready_node


def test_a_request_naming_a_provider_that_can_launch_is_launched_there_not_given_another_ones_ready_node(
        zk, start_launcher):
    ready_node = ready_on_a_and_b_live(zk, start_launcher)
    client = NodeRequestClient(zk, "named")
    [node] = take(client, ["debian"], provider="prov-b")
    assert node.provider == "prov-b", "the named provider launches although another provider had a node ready"
    assert ready_node in ready(zk, "debian"), "the other provider's ready node stays ready"


def test_a_request_avoiding_a_provider_is_launched_on_another_although_a_node_is_ready_on_the_avoided_one(
        zk, start_launcher):
    ready_node = ready_on_a_and_b_live(zk, start_launcher)
    client = NodeConsumer(zk, "avoiding")
    req = client.wait(client.request(["debian"], avoid=["prov-a"]), 30)
    assert req.state == model.FULFILLED, req.reason
    [node] = client.lock_nodes(req)
    assert node.provider == "prov-b"
    assert ready_node in ready(zk, "debian")


def test_a_request_no_provider_can_serve_fails_with_a_reason_naming_its_labels_and_who_declined(
        zk, start_launcher):
    start_launcher({"debian": 0, "fedora": 0}, provider("prov-a", "alpha", ["debian"], 2),
                   provider("prov-b", "beta", ["fedora"], 2))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "impossible")
    req = client.wait(client.request(["fedora", "debian"]), 30)
    assert req.state == model.REQUEST_FAILED
    assert req.reason == "no provider can serve labels fedora, debian: declined by prov-a, prov-b"


def test_a_request_naming_a_provider_that_cannot_serve_it_is_served_by_one_that_can(zk, start_launcher):
    start_launcher({"debian": 0, "fedora": 0}, provider("prov-a", "alpha", ["debian"], 2),
                   provider("prov-b", "beta", ["fedora"], 2))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "named-elsewhere")
    # prov-a has no fedora label, and no provider is called prov-gone: a named provider is a preference
    [fedora] = take(client, ["fedora"], provider="prov-a")
    assert fedora.provider == "prov-b"
    [debian] = take(client, ["debian"], provider="prov-gone")
    assert debian.provider == "prov-a"


def test_a_launch_goes_to_the_best_priority_provider_with_room_then_to_the_next(zk, start_launcher):
    start_launcher({"debian": 0}, provider("prov-a", "alpha", ["debian"], 3, "      priority: 2\n"),
                   provider("prov-b", "beta", ["debian"], 1, "      priority: 1\n"))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "priority")
    [first] = take(client, ["debian"])
    assert first.provider == "prov-b", "priority 1 comes before priority 2"
    [second] = take(client, ["debian"])  # prov-b's one server is in use: no room there
    assert second.provider == "prov-a"


def test_a_request_left_pending_by_a_vanished_launcher_is_offered_again_and_served(zk, start_launcher):
    client = NodeRequestClient(zk, "orphan")
    rid = client.request(["debian"])
    req, version = client.store.read_request(rid)
    req.set_state(model.PENDING)
    req.provider, req.launcher = "prov-a", "launcher-that-died"
    assert client.store.write_request(req, version) is not None
    start_launcher({"debian": 0}, provider("prov-a", "alpha", ["debian"], 1))
    served = client.wait(rid, 30)
    assert served.state == model.FULFILLED, served.reason
    assert served.launcher != "launcher-that-died"
    [node] = client.lock_nodes(served)
    assert node.provider == "prov-a"


def test_a_request_left_pending_by_a_vanished_launcher_is_offered_to_every_launcher_while_none_has_room(
        zk, start_launcher):
    start_launcher({"debian": 0}, provider("prov-a", "alpha", ["debian"], 1))
    client = NodeRequestClient(zk, "orphan")
    [busy] = take(client, ["debian"])  # prov-a's one server is in use: nothing can be launched for the orphan
    rid = client.request(["debian"])
    req, version = client.store.read_request(rid)
    req.set_state(model.PENDING)
    req.provider, req.launcher = "prov-a", "launcher-that-died"
    assert client.store.write_request(req, version) is not None
    wait_for(lambda: (r := client.get(rid)).state == model.REQUESTED and r.launcher == "" and r.provider == "", 10,
             "the orphaned request open again in ZooKeeper, for any launcher")
    client.release(busy)
    served = client.wait(rid, 30)
    assert served.state == model.FULFILLED, served.reason
