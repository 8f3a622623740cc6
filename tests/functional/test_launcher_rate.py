"""A provider's rate, as Nodepool's: seconds between the calls that create (and delete) its servers, so that a
burst does not hit a cloud's API rate limits. Real ZooKeeper and the OpenStack simulator over HTTP."""

from __future__ import annotations

import time

from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, provider_yaml, ready_ids
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def test_a_providers_rate_spaces_its_server_creates_and_deletes(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 3}, provider_yaml("prov-a", "alpha", extra="      rate: 1.5\n")))
    cloud = sim.cloud("alpha")
    wait_for(lambda: cloud.created_server_ids, 30, "the first create")
    began = time.monotonic()
    wait_for(lambda: len(cloud.created_server_ids) >= 3, 30, "three creates")
    assert time.monotonic() - began >= 2.5  # the second and third came 1.5 s and 3 s after the first
    wait_for(lambda: len(ready_ids(zk)) == 3, 60, "three ready nodes")

    client = NodeRequestClient(zk, "rate")
    nodes = [n for _ in range(2) for n in client.lock_nodes(client.wait(client.request(["debian"]), 30))]
    deleted = len(cloud.deleted_server_ids)
    for node in nodes:
        client.release(node)
    wait_for(lambda: len(cloud.deleted_server_ids) > deleted, 30, "the first delete")
    began = time.monotonic()
    wait_for(lambda: len(cloud.deleted_server_ids) >= deleted + 2, 30, "both deletes")
    assert time.monotonic() - began >= 1.0  # (the replacements' creates share the same spacing)
