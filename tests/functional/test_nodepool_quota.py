"""The cloud's quota as Nodepool weighs it: servers, cores and RAM, read from the cloud's limits and the flavors'
sizes. Real ZooKeeper and the OpenStack simulator over HTTP, with nodes that are real SSH hosts."""

from __future__ import annotations

import pytest

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.sim.openstack.cloud import QuotaExceeded
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, ready_ids, servers, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def provider(name: str, cloud: str, flavor: str, max_servers: int = 4) -> str:
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n      max-servers: {max_servers}\n"
            f"      boot-timeout: 15\n      pools:\n        - name: main\n"
            f"          labels: [{{name: debian, image: deb, flavor: {flavor}}}]\n"
            f"      images:\n        - name: deb\n          base-image: debian-12\n")


def launcher_busy(zk) -> bool:
    return any(n.state == model.BUILDING for n in node_records(zk).values())


def test_request_whose_flavor_needs_more_cores_than_the_cloud_allows_is_declined_not_retried_forever(
        zk, sim, start_launcher):
    sim.cloud("alpha").limits.max_cores = 3  # "large" has 4 cores: no server of it can ever start there
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", "large")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "cores")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason
    assert not servers(sim, "alpha")  # nothing was even tried: the quota said no in advance


def test_launches_stop_at_the_cores_the_cloud_has_left_and_wait_instead_of_being_refused(
        zk, sim, start_launcher, monkeypatch):
    cloud = sim.cloud("alpha")
    cloud.limits.max_cores = 3  # one "medium" server (2 cores) at a time, whatever max-servers says
    refused = []
    create = cloud.create_server

    def counting_create(*args, **kw):
        try:
            return create(*args, **kw)
        except QuotaExceeded as e:
            refused.append(str(e))
            raise
    monkeypatch.setattr(cloud, "create_server", counting_create)
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", "medium", max_servers=4)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "cores")
    rids = [client.request(["debian"]) for _ in range(2)]
    first = wait_for(lambda: next((r for r in map(client.get, rids) if r.state == model.FULFILLED), None),
                     what="one request fulfilled")
    [other] = [r for r in rids if r != first.id]
    assert client.get(other).state in (model.REQUESTED, model.PENDING)  # waiting for room, not failed
    for node in client.lock_nodes(first):
        client.release(node)
    assert client.wait(other, 30).state == model.FULFILLED
    assert refused == []  # the launcher knew the cores were taken: it never asked the cloud for more
    assert len(servers(sim, "alpha")) == 1


def test_without_max_servers_a_provider_launches_as_many_servers_as_the_cloud_allows(zk, sim, start_launcher):
    sim.cloud("alpha").limits.max_instances = 12
    unlimited = provider("prov-a", "alpha", "small").replace("      max-servers: 4\n", "")
    start_launcher(pool_yaml({"debian": 14}, unlimited))  # more than the cloud holds: best effort
    wait_for(lambda: len(ready_ids(zk)) == 12, 60, "12 ready nodes, the cloud's limit")
    assert len(servers(sim, "alpha")) == 12


@pytest.mark.parametrize("limit", ["max-cores: 2", "max-ram: 2048"])  # "small": 1 core, 1024 MB
def test_a_pools_max_cores_and_max_ram_cap_its_servers_by_their_flavors_size(zk, sim, start_launcher, limit):
    capped = provider("prov-a", "alpha", "small").replace("        - name: main\n",
                                                          f"        - name: main\n          {limit}\n")
    start_launcher(pool_yaml({"debian": 4}, capped))  # max-servers 4: the pool's limit is what binds
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "2 ready nodes")
    wait_for(lambda: not launcher_busy(zk), 10, "no launch in progress")
    assert len(servers(sim, "alpha")) == 2


def test_a_request_larger_than_a_pools_max_cores_is_declined(zk, sim, start_launcher):
    capped = provider("prov-a", "alpha", "large").replace("        - name: main\n",
                                                          "        - name: main\n          max-cores: 3\n")
    start_launcher(pool_yaml({"debian": 0}, capped))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "cores")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason
    assert not servers(sim, "alpha")
