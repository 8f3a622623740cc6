"""A launch's two clocks, as Nodepool documents them: launch-timeout from the create call until the server is
ACTIVE, boot-timeout from ACTIVE until it answers SSH. Real ZooKeeper and the OpenStack simulator over HTTP."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, servers, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def provider(timeouts: str) -> str:
    return ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      max-servers: 2\n"
            f"      launch-attempts: 1\n{timeouts}      pools:\n        - name: main\n"
            "          labels: [{name: debian, image: deb, flavor: small}]\n"
            "      images:\n        - name: deb\n          base-image: debian-12\n")


def test_a_cloud_slower_to_reach_active_than_boot_timeout_still_launches(zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(boot_delay=3.0)  # ACTIVE after 3 s; SSH answers at once after that
    start_launcher(pool_yaml({"debian": 0}, provider("      boot-timeout: 2\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "slow-cloud")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.FULFILLED, req.reason
    assert len(sim.cloud("alpha").created_server_ids) == 1  # the first server, not a retry


def test_a_server_not_active_within_launch_timeout_is_deleted_and_the_launch_fails(zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(boot_delay=3.0)
    start_launcher(pool_yaml({"debian": 0}, provider("      boot-timeout: 60\n      launch-timeout: 1\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "slow-cloud")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.REQUEST_FAILED and "not ACTIVE within 1s" in req.reason, req.reason
    wait_for(lambda: not servers(sim, "alpha"), 20, "the server that never became ACTIVE deleted")
