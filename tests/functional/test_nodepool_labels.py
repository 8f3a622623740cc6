"""Labels as Nodepool documents them: min-ready -1 disables a label. Real ZooKeeper and the OpenStack
simulator over HTTP."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.sim.openstack.hosts import HostSpec
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, provider_yaml, ready_ids, servers, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def test_a_label_with_min_ready_minus_one_is_disabled_nothing_of_it_is_launched(zk, sim, start_launcher):
    both = provider_yaml("prov-a", "alpha").replace(
        "labels: [{name: debian, image: deb, flavor: small}]",
        "labels: [{name: debian, image: deb, flavor: small}, {name: fedora, image: deb, flavor: small}]")
    start_launcher(pool_yaml({"debian": -1, "fedora": 1}, both))
    wait_live(zk, 1)
    wait_for(lambda: len(ready_ids(zk, "fedora")) == 1, 30, "fedora's min-ready")
    client = NodeRequestClient(zk, "disabled")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason
    assert not ready_ids(zk, "debian") and len(servers(sim, "alpha")) == 1  # fedora's node alone


def test_a_static_host_of_a_disabled_label_is_not_offered(zk, sim, start_launcher, ssh_key):
    backend = sim.backend
    pub = open(ssh_key + ".pub").read()
    addresses = [backend.boot(HostSpec(f"rack-{i}", f"rack-{i}", pub)) for i in range(2)]
    try:
        start_launcher(
            "nodepool:\n  labels:\n    - {name: metal}\n    - {name: retired, min-ready: -1}\n  providers:\n"
            "    - name: rack\n      driver: static\n      hosts:\n"
            f"        - {{name: rack-0, address: '{addresses[0]}', port: {backend.port}, labels: [metal]}}\n"
            f"        - {{name: rack-1, address: '{addresses[1]}', port: {backend.port}, labels: [retired]}}\n")
        wait_for(lambda: len(ready_ids(zk, "metal")) == 1, 30, "the enabled host ready")
        client = NodeRequestClient(zk, "disabled")
        req = client.wait(client.request(["retired"]), 30)
        assert req.state == model.REQUEST_FAILED and req.declined_by == ["rack"], req.reason
        assert not ready_ids(zk, "retired")
    finally:
        for i in range(2):
            backend.destroy(f"rack-{i}")


def test_a_label_offered_by_two_pools_uses_the_room_of_both(zk, sim, start_launcher):
    two_pools = ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      boot-timeout: 15\n"
                 "      pools:\n"
                 "        - name: az1\n          max-servers: 1\n"
                 "          labels: [{name: debian, image: deb, flavor: small}]\n"
                 "        - name: az2\n          max-servers: 1\n"
                 "          labels: [{name: debian, image: deb, flavor: medium}]\n"
                 "      images:\n        - name: deb\n          base-image: debian-12\n")
    start_launcher(pool_yaml({"debian": 2}, two_pools))
    wait_for(lambda: len(ready_ids(zk, "debian")) == 2, 30, "a ready node from each pool")
    nodes = node_records(zk).values()
    assert sorted(n.pool for n in nodes) == ["az1", "az2"]
    assert sorted(s.flavor.name for s in servers(sim, "alpha")) == ["medium", "small"]  # each pool's flavor


def test_a_better_priority_pool_fills_first_then_the_others_take_the_rest(zk, sim, start_launcher):
    prioritised = ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      boot-timeout: 15\n"
                   "      pools:\n"
                   "        - name: az1\n          max-servers: 2\n          priority: 2\n"
                   "          labels: [{name: debian, image: deb, flavor: small}]\n"
                   "        - name: az2\n          max-servers: 2\n          priority: 1\n"
                   "          labels: [{name: debian, image: deb, flavor: small}]\n"
                   "      images:\n        - name: deb\n          base-image: debian-12\n")
    start_launcher(pool_yaml({"debian": 3}, prioritised))
    wait_for(lambda: len(ready_ids(zk, "debian")) == 3, 30, "three ready nodes")
    assert sorted(n.pool for n in node_records(zk).values()) == ["az1", "az2", "az2"]  # az2 full before az1


def test_only_a_label_the_provider_no_longer_offers_loses_its_ready_nodes_when_it_starts(zk, sim, start_launcher):
    both = provider_yaml("prov-a", "alpha").replace(
        "labels: [{name: debian, image: deb, flavor: small}]",
        "labels: [{name: debian, image: deb, flavor: small}, {name: fedora, image: deb, flavor: small}]")
    first = start_launcher(pool_yaml({"debian": 1, "fedora": 1}, both))
    wait_for(lambda: len(ready_ids(zk, "debian")) == len(ready_ids(zk, "fedora")) == 1, 30, "one of each ready")
    [fedora], [debian] = ready_ids(zk, "fedora"), ready_ids(zk, "debian")
    server = node_records(zk)[fedora].external_id
    first.stop()
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")))  # fedora left the layout
    wait_for(lambda: fedora not in node_records(zk), 30, "the fedora node deleted")
    assert not ready_ids(zk, "fedora") and server not in {s.id for s in servers(sim, "alpha")}
    assert debian in ready_ids(zk, "debian")  # the label still offered keeps its node


def test_a_pools_node_attributes_are_stored_with_its_nodes_for_their_consumer(zk, sim, start_launcher):
    attributed = provider_yaml("prov-a", "alpha").replace(
        "        - name: main\n", "        - name: main\n          node-attributes: {zone: az1, gpu: false}\n")
    start_launcher(pool_yaml({"debian": 0}, attributed))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "attributes")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    assert node.attributes == {"zone": "az1", "gpu": False}
    client.release(node)
