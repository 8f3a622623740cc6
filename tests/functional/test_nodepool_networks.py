"""A pool's networks, as Nodepool's: its servers are created attached to the networks named (by name or id,
looked up in Neutron); a network the cloud does not have fails the launch, naming it. Real ZooKeeper and the
OpenStack simulator over HTTP."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, servers, wait_live

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def provider(networks: str) -> str:
    return ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      max-servers: 2\n"
            "      launch-attempts: 1\n      pools:\n        - name: main\n"
            f"          networks: {networks}\n"
            "          labels: [{name: debian, image: deb, flavor: small}]\n"
            "      images:\n        - name: deb\n          base-image: debian-12\n")


def test_a_pools_servers_are_created_on_its_networks_by_name_or_id(zk, sim, start_launcher):
    cloud = sim.cloud("alpha")
    ci, storage = cloud.add_network("ci-net"), cloud.add_network("storage")
    start_launcher(pool_yaml({"debian": 0}, provider(f"[ci-net, {storage}]")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "networks")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.FULFILLED, req.reason
    [server] = servers(sim, "alpha")
    assert server.networks == [ci, storage]
    [node] = client.lock_nodes(req)
    with client.ssh(node) as ssh:  # its address is the one on its first network
        _, out, _ = ssh.exec_command("echo up")
        assert out.read().decode().strip() == "up"


def test_a_pool_without_networks_asks_nova_for_the_projects_network_not_for_none(zk, sim, start_launcher):
    """From microversion 2.37 a create must say `networks`: "auto" is the project's network (what openstacksdk and
    so Nodepool send for a pool without networks); "none" would be a server with no network at all, unreachable."""
    start_launcher(pool_yaml({"debian": 0}, provider("[ci-net]").replace("          networks: [ci-net]\n", "")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "no networks")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.FULFILLED, req.reason
    [server] = servers(sim, "alpha")
    assert server.networks_asked == "auto"


def test_a_network_the_cloud_does_not_have_fails_the_launch_naming_it(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider("[no-such-net]")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "networks")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.REQUEST_FAILED
    assert "no network 'no-such-net'" in req.reason, req.reason
    assert sim.cloud("alpha").created_server_ids == []


def test_a_network_made_again_under_its_name_is_looked_up_afresh_after_nova_refuses_the_old_id(zk, sim,
                                                                                               start_launcher):
    cloud = sim.cloud("alpha")
    old = cloud.add_network("ci-net")
    start_launcher(pool_yaml({"debian": 0}, provider("[ci-net]").replace("launch-attempts: 1", "launch-attempts: 2")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "networks")
    assert client.wait(client.request(["debian"]), 60).state == model.FULFILLED  # (the launcher knows old's id)
    with cloud.lock:  # an operator deletes the network and makes it again: same name, new id
        del cloud.networks[old]
        cloud.networks["5e1f0000-0000-4000-8000-0000000000aa"] = "ci-net"
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.FULFILLED, req.reason  # the second attempt, on the new id
    assert servers(sim, "alpha")[-1].networks == ["5e1f0000-0000-4000-8000-0000000000aa"]
