"""Provider priority across launchers, as Nodepool documents it: a launcher leaves a request to another
launcher's provider of a better priority while that one has room, so better-priority providers fill up before the
others are used. Real ZooKeeper, two launchers, and the OpenStack simulator over HTTP."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, provider_yaml, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def test_a_better_priority_provider_of_another_launcher_is_filled_first_then_the_next_is_used(
        zk, sim, start_launcher):
    preferred = provider_yaml("prov-b", "beta", max_servers=3, extra="      priority: 1\n")
    other = provider_yaml("prov-a", "alpha", max_servers=3, extra="      priority: 2\n")
    start_launcher(pool_yaml({"debian": 0}, preferred))  # this launcher takes prov-b's lock first
    wait_live(zk, 1)
    launcher = start_launcher(pool_yaml({"debian": 0}, other, preferred))  # the whole layout: prov-a is its own
    wait_live(zk, 2)
    assert launcher.managers["prov-a"].active and not launcher.managers["prov-b"].active
    client = NodeRequestClient(zk, "priority")
    taken = []
    for _ in range(3):  # one at a time: each could go to either launcher
        req = client.wait(client.request(["debian"]), 30)
        assert req.state == model.FULFILLED, req.reason
        taken += client.lock_nodes(req)
    assert [n.provider for n in taken] == ["prov-b"] * 3
    # prov-b is full now: the other launcher's prov-a takes the next request
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.FULFILLED and req.provider == "prov-a", req.reason
    for node in taken + client.lock_nodes(req):
        client.release(node)
    wait_for(lambda: not sim.cloud("beta").list_servers(), 30, "prov-b's servers deleted")
