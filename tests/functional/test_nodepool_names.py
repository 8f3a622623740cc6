"""A provider written with Nodepool's own names (cloud-images, cloud-image, flavor-name, launch-retries) serves
as gatekeeper's do. Real ZooKeeper, the OpenStack simulator over HTTP, nodes that are real SSH hosts."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, ready_ids
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher

NODEPOOL_STYLE = """\
    - name: prov-a
      driver: openstack
      cloud: alpha
      max-servers: 2
      boot-timeout: 15
      launch-retries: 2
      cloud-images:
        - name: debian-cloud
          image-name: debian-12
      pools:
        - name: main
          labels:
            - name: debian
              cloud-image: debian-cloud
              flavor-name: small
"""


def test_a_provider_in_nodepools_words_boots_its_cloud_image(zk, sim, start_launcher):
    launcher = start_launcher(pool_yaml({"debian": 1}, NODEPOOL_STYLE))
    assert launcher.managers["prov-a"].config.launch_attempts == 2
    wait_for(lambda: len(ready_ids(zk)) == 1, 60, "a ready node from the cloud image")
    client = NodeRequestClient(zk, "nodepool-names")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.FULFILLED
    [node] = client.lock_nodes(req)
    assert (node.image, node.image_build) == ("debian-cloud", "")  # booted as the cloud has it: nothing built
    [server] = [s for s in base.servers(sim, "alpha") if s.id == node.external_id]
    assert server.flavor.name == "small"  # flavor-name
    assert sim.cloud("alpha").images[server.image_id].name == "debian-12"  # the cloud image, by its name
    with client.ssh(node) as ssh:
        assert ssh.exec_command("echo up")[1].read().decode().strip() == "up"
    client.release(node)
