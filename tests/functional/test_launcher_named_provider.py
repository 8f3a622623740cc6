"""A node request that names a provider, when that provider cannot take it now: its ready nodes still come first
once its launcher is gone, a launch goes elsewhere while it backs off, while the request waits for it the other
launchers go on serving other requests, and waiting for a launch there it takes no other provider's node. Over real
wires: ZooKeeper, the OpenStack simulator over HTTP, nodes that are SSH hosts."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.zk.nodes import NodeStore
from tests.functional import test_launcher
from tests.functional.test_launcher import pool_yaml, provider_yaml, wait_live
from tests.functional.test_launcher_requests import ready
from tests.helpers import wait_for

# the fixtures of the launcher tests: the simulator's two clouds, the key nodes are reached with, and launchers
sim, ssh_key, start_launcher = test_launcher.sim, test_launcher.ssh_key, test_launcher.start_launcher


def test_a_request_naming_a_provider_whose_launcher_is_gone_gets_its_ready_node_before_an_older_one(
        zk, sim, start_launcher):
    labels = {"debian": 1}
    a_launcher = start_launcher(pool_yaml(labels, provider_yaml("prov-a", "alpha")))
    [older] = wait_for(lambda: (found := ready(zk, "debian")) and found, 30, "prov-a's min-ready node")
    assert older[0] == "prov-a"
    b_launcher = start_launcher(pool_yaml(labels, provider_yaml("prov-b", "beta")))
    wait_live(zk, 2)
    # a node on prov-b whose request is withdrawn while it boots: a spare, ready after prov-a's
    sim.cloud("beta").set_faults(boot_delay=1.0)
    client = NodeRequestClient(zk, "named")
    withdrawn = client.request(["debian"], provider="prov-b")
    wait_for(lambda: sim.cloud("beta").created_server_ids, 10, "a server booting on prov-b")
    client.cancel(withdrawn)
    younger = wait_for(lambda: next((r for r in ready(zk, "debian") if r[0] == "prov-b"), None), 30,
                       "prov-b's spare node ready")
    assert ready(zk, "debian") == [older, younger]
    # prov-a's launcher reads the ready index of other launchers' nodes once a second: until then it knows of
    # prov-a's node only
    wait_for(lambda: any(entry.endswith(younger[1]) for entry in a_launcher.index.entries.get("debian", [])), 10,
             "prov-a's launcher knowing of prov-b's ready node")
    b_launcher.stop()  # prov-b is no longer live; its ready node is still there
    wait_live(zk, 1)
    req = client.wait(client.request(["debian"], provider="prov-b"), 10)
    assert req.state == model.FULFILLED, req.reason
    assert req.nodes == [younger[1]], "the named provider's ready node, although another provider's is older"
    assert ready(zk, "debian") == [older]


def test_a_request_naming_a_provider_that_backs_off_is_launched_on_another_at_once(zk, sim, start_launcher):
    sim.cloud("beta").set_faults(boot_errors=-1, boot_error_message="No valid host was found.")
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha"), provider_yaml("prov-b", "beta")),
                   backoff=(60.0, 120.0))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "named")
    # prov-b fails the first request's three boots: it declines it (prov-a serves it) and backs off for a minute
    first = client.wait(client.request(["debian"], provider="prov-b"), 30)
    assert first.state == model.FULFILLED and first.provider == "prov-a", first.reason
    wait_for(lambda: NodeStore(zk).provider_health("prov-b").get("state") == "backing-off", 10, "prov-b backing off")
    boots = len(sim.cloud("beta").created_server_ids)
    req = client.wait(client.request(["debian"], provider="prov-b"), 10)
    assert req.state == model.FULFILLED and req.provider == "prov-a", req.reason
    assert len(sim.cloud("beta").created_server_ids) == boots


def test_a_request_waiting_for_the_provider_it_names_does_not_hold_up_another_launchers_requests(
        zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")))
    wait_live(zk, 1)
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-b", "beta", max_servers=1)))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "named")
    busy = client.wait(client.request(["debian"], provider="prov-b"), 30)
    assert busy.state == model.FULFILLED and busy.provider == "prov-b", busy.reason
    [busy_node] = client.lock_nodes(busy)  # prov-b's one server is in use
    named = client.request(["debian"], provider="prov-b")
    other = client.wait(client.request(["debian"]), 10)
    assert other.state == model.FULFILLED and other.provider == "prov-a", other.reason
    assert client.get(named).state == model.REQUESTED, "left to prov-b, which is live and can launch"
    client.release(busy_node)
    req = client.wait(named, 30)
    assert req.state == model.FULFILLED and req.provider == "prov-b", req.reason


def test_a_request_waiting_for_a_launch_on_the_provider_it_names_takes_no_node_another_provider_makes_ready(
        zk, sim, start_launcher):
    alpha, beta = sim.cloud("alpha"), sim.cloud("beta")
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=1),
                             provider_yaml("prov-b", "beta")))
    wait_live(zk, 2)
    # the request's first boot on prov-a fails, and the failed server's delete holds prov-a's one slot a while
    alpha.set_faults(boot_errors=1, delete_delay=5.0)
    client = NodeRequestClient(zk, "named")
    waiting = client.request(["debian"], provider="prov-a")
    wait_for(lambda: any(s.status == "ERROR" for s in alpha.list_servers()), 10, "the boot on prov-a failing")
    # meanwhile a node becomes ready on prov-b: a spare, its request withdrawn while it booted
    beta.set_faults(boot_delay=1.0)
    withdrawn = client.request(["debian"], provider="prov-b")
    wait_for(lambda: beta.created_server_ids, 10, "a server booting on prov-b")
    client.cancel(withdrawn)
    [spare] = wait_for(lambda: ready(zk, "debian"), 10, "prov-b's spare node ready")
    assert spare[0] == "prov-b"
    req = client.wait(waiting, 20)
    alpha.set_faults(delete_delay=0.0)
    assert req.state == model.FULFILLED and req.provider == "prov-a", req.reason
    assert NodeStore(zk).read_node(req.nodes[0])[0].external_id == alpha.created_server_ids[1], "launched on prov-a"
    assert ready(zk, "debian") == [spare]
