"""A launcher whose own providers are still starting does not fail a request that only they can serve: while
one of them is not live yet (waiting for its provider lock, or for its cloud), a request declined by every live
provider waits for it, as Nodepool's launcher, which registers all its pools at once, never fails a request in
that window. Over real wires: ZooKeeper, the OpenStack simulator over HTTP, nodes that are SSH hosts."""

from __future__ import annotations

from kazoo.recipe.lock import Lock

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.zk import paths
from gatekeeper.zk.nodes import NodeStore
from tests.functional import test_launcher_requests
from tests.functional.test_launcher import wait_live
from tests.functional.test_launcher_requests import provider
from tests.helpers import wait_for

ssh_key = test_launcher_requests.ssh_key
sim = test_launcher_requests.sim  # clouds alpha and beta
start_launcher = test_launcher_requests.start_launcher


def test_a_request_only_a_starting_provider_serves_waits_for_it_instead_of_failing(zk, zk_factory, start_launcher):
    # prov-b's lock is held elsewhere (as by a launcher that is starting): ours manages prov-a and waits for prov-b
    other = zk_factory()
    held = Lock(other.client, paths.lock("nodepool-provider", "prov-b"), "a launcher starting elsewhere")
    assert held.acquire(timeout=10)
    start_launcher({"debian": 0, "fedora": 0}, provider("prov-a", "alpha", ["debian"], 2),
                   provider("prov-b", "beta", ["fedora"], 2))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "starting")
    rid = client.request(["fedora"])
    store = NodeStore(zk)
    # the launcher has looked at it: prov-a, which has no fedora, declined it
    wait_for(lambda: (found := store.read_request(rid)) and found[0].declined_by == ["prov-a"], 30,
             "prov-a to decline the request")
    req, _ = store.read_request(rid)
    assert req.state == model.REQUESTED, req.reason
    held.release()  # prov-b starts: it serves the request
    req = client.wait(rid, 30)
    assert req.state == model.FULFILLED, req.reason
    [node] = client.lock_nodes(req)
    assert node.provider == "prov-b"


def test_an_allocated_node_whose_request_is_unreadable_goes_back_to_ready_and_the_provider_goes_live(
        zk, start_launcher):
    """A provider's start looks at each of its allocated nodes' requests: a garbage request record must not stop
    the provider from going live (nor leave its other nodes unlooked at)."""
    store = NodeStore(zk)
    store.ensure_paths(["debian"])
    stranded = model.Node(id="stranded0001", provider="prov-a", label="debian", state=model.ALLOCATED,
                          request="000100-0000000077", address="127.0.0.1", external_id="gone-server")
    assert store.create_node(stranded)
    zk.client.create(paths.node_request("000100-0000000077"), b"\xff not a request", makepath=True)
    start_launcher({"debian": 0}, provider("prov-a", "alpha", ["debian"], 2))
    wait_live(zk, 1)
    wait_for(lambda: (found := store.read_node("stranded0001")) and found[0].state == model.READY, 30,
             "the allocated node of the unreadable request back to ready")
