"""A build retried after an infrastructure failure runs on another provider when one can serve its label.

The launcher (real ZooKeeper, the OpenStack simulator with two clouds, nodes that are sshd hosts) serves a node
request that asks to avoid a provider from another one, and falls back to the avoided provider only when no other
can serve it; end to end, a node that dies under its job on the first provider has its retry run on the second,
and the change gets its normal vote.
"""

from __future__ import annotations

import logging

import pytest

from gatekeeper.launcher import model
from gatekeeper.sim.openstack.sim import CloudSim
from gatekeeper.zk import paths
from gatekeeper.zk.node_consumer import NodeConsumer
from tests.functional import test_executor_e2e, test_launcher
from tests.functional.test_executor_e2e import E2E
from tests.functional.test_launcher import pool_yaml, provider_yaml, ready_ids
from tests.helpers import wait_for

ssh_key = test_launcher.ssh_key
sim = test_launcher.sim  # clouds alpha and beta
start_launcher = test_launcher.start_launcher


def take(client: NodeConsumer, rid: str) -> model.Node:
    req = client.wait(rid, timeout=60)
    assert req.state == model.FULFILLED, req.reason
    (node,) = client.lock_nodes(req)
    return node


def test_request_avoiding_a_provider_is_served_by_another_even_with_a_ready_node_there(zk, sim, start_launcher):
    # prov-a (first by name) keeps the label's min-ready node; prov-b has none
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha"), provider_yaml("prov-b", "beta")))
    wait_for(lambda: len(ready_ids(zk)) == 1, what="prov-a's ready node")
    client = NodeConsumer(zk, "test-retry")
    node = take(client, client.request(["debian"], avoid=["prov-a"]))
    assert node.provider == "prov-b"
    client.release(node)
    # without the wish, the ready node on prov-a is handed out
    plain = take(client, client.request(["debian"]))
    assert plain.provider == "prov-a"
    client.release(plain)


def test_request_avoiding_the_only_provider_falls_back_to_it_and_says_so(zk, sim, start_launcher, caplog):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")))
    client = NodeConsumer(zk, "test-retry")
    with caplog.at_level(logging.INFO, logger="gatekeeper.launcher"):
        rid = client.request(["debian"], avoid=["prov-a"])
        node = take(client, rid)
    assert node.provider == "prov-a"
    assert any(f"request {rid} (debian): no other provider can serve it; falling back to prov-a" in r.getMessage()
               for r in caplog.records)
    client.release(node)


# no ready nodes, and sim-alpha is preferred (priority 1): every node is launched there unless a request avoids it
TWO_PROVIDERS = test_executor_e2e.LAYOUT.split("nodepool:\n")[0] + """\
nodepool:
  labels:
    - {name: ubuntu-jammy, min-ready: 0}
  providers:
""" + "".join(f"""\
    - name: sim-{cloud}
      driver: openstack
      cloud: {cloud}
      priority: {priority}
      max-servers: 2
      boot-timeout: 20
      pools:
        - name: main
          labels: [{{name: ubuntu-jammy, image: jammy, flavor: small}}]
      images:
        - name: jammy
          base-image: debian-12
""" for cloud, priority in (("alpha", 1), ("beta", 2)))


@pytest.fixture
def e2e(tmp_path, zk_factory, monkeypatch):
    # the end-to-end rig of test_executor_e2e, on two clouds
    monkeypatch.setattr(test_executor_e2e, "CloudSim", lambda _clouds, **kw: CloudSim(["alpha", "beta"], **kw))
    rig = E2E(tmp_path, zk_factory, layout=TWO_PROVIDERS)
    try:
        wait_for(lambda: len(rig.gate.zk.client.get_children(paths.LAUNCHERS)) == 2, what="both providers live")
        yield rig
    finally:
        rig.stop()


def test_node_lost_on_one_provider_is_retried_on_the_other_and_the_change_gets_its_vote(e2e):
    gate = e2e.gate
    killer, killed = e2e.kill_first_node_at_stack()
    change = gate.change("openstack/nova", "Survive a provider's node loss", files={"nova/x.py": "X = 1\n"})
    gate.settle(180)
    killer.join(5)
    assert killed, "no build got far enough to kill its node"
    first, retry = e2e.results(change)
    assert (first.result, first.failure_class, first.node["name"]) == ("NODE_FAILURE", "infrastructure", killed[0])
    assert first.node["provider"] == "sim-alpha"  # the preferred provider
    assert (retry.result, retry.attempt, retry.node["provider"]) == ("SUCCESS", 2, "sim-beta")
    assert gate.ci_votes(change) == {"Verified": 1}
