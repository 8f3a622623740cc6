"""The launcher service follows the published layout's node-pool section, as Nodepool re-reads its configuration:
a reload that changes min-ready or a provider takes effect without a restart, and one that leaves the node pool
alone changes nothing. Real ZooKeeper and the OpenStack simulator over HTTP."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.store import publish_layout
from gatekeeper.launcher.follow import LayoutFollower
from gatekeeper.launcher.launcher import Launcher
from tests.functional import test_launcher as base
from tests.functional.test_launcher import OWNER, node_records, pool_yaml, provider_yaml, ready_ids, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator
ssh_key, sim = base.ssh_key, base.sim


@pytest.fixture
def follow(zk_factory, sim, ssh_key):
    started = []

    def start(nodepool_yaml: str) -> LayoutFollower:
        def make(nodepool) -> Launcher:
            return Launcher(zk_factory(), nodepool, ssh_key=ssh_key, clouds_yaml=sim.clouds_yaml, owner=OWNER,
                            poll_interval=0.05, delete_verify_timeout=5.0)
        follower = LayoutFollower(zk_factory(), parse_layout({"nodepool.yaml": nodepool_yaml}).nodepool, make)
        started.append(follower)
        return follower.start()

    yield start
    for follower in started:
        follower.stop()


def test_a_published_node_pool_change_is_taken_without_a_restart(zk, sim, follow):
    first = pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha"))
    publish_layout(zk, parse_layout({"nodepool.yaml": first}))
    follower = follow(first)
    wait_live(zk, 1)
    assert not ready_ids(zk)

    # min-ready 2 and a second provider: as Nodepool, taken from the new configuration as it runs
    second = pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha", max_servers=1),
                       provider_yaml("prov-b", "beta", max_servers=1))
    publish_layout(zk, parse_layout({"nodepool.yaml": second}))
    wait_for(lambda: len(ready_ids(zk)) == 2, 60, "min-ready 2 over both providers")
    assert sorted(n.provider for n in node_records(zk).values()) == ["prov-a", "prov-b"]
    assert follower.replaced == 1

    # a layout whose node pool is the same (another file, say a pipeline's) leaves the launcher alone
    launcher, checked = follower.launcher, follower.checked
    publish_layout(zk, parse_layout({"nodepool.yaml": second, "zz.yaml": "# nothing of the node pool\n"}))
    wait_for(lambda: follower.checked > checked, 30, "the layout read")
    assert (follower.replaced, follower.launcher) == (1, launcher)
    publish_layout(zk, parse_layout({"nodepool.yaml": second.replace("max-servers: 1", "max-servers: 2", 1)}))
    wait_for(lambda: follower.replaced == 2, 30, "the next change taken")
    assert launcher is not follower.launcher
    assert len(ready_ids(zk)) == 2  # the nodes outlived the launcher that made them
