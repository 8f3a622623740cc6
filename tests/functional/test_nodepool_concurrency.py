"""A provider's max-concurrency, as Nodepool's: the node requests it handles at once. Requests beyond it wait
(they are not declined) and are launched as the others finish. Real ZooKeeper and the OpenStack simulator."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, provider_yaml, ready_ids, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def fulfil_three_at_once(zk, sim, start_launcher, extra: str) -> list[model.NodeRequest]:
    # each boot takes two seconds: requests launched together are booting together
    sim.cloud("alpha").set_faults(boot_delay=2.0)
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=6, extra=extra)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "burst")
    rids = [client.request(["debian"]) for _ in range(3)]
    return [client.wait(rid, 60) for rid in rids]


def test_requests_beyond_max_concurrency_wait_and_are_launched_one_at_a_time(zk, sim, start_launcher):
    reqs = fulfil_three_at_once(zk, sim, start_launcher, "      max-concurrency: 1\n")
    assert [r.state for r in reqs] == [model.FULFILLED] * 3, [r.reason for r in reqs]
    assert all(not r.declined_by for r in reqs)  # waited for the provider, never declined by it
    assert sim.cloud("alpha").most_building == 1
    assert len(sim.cloud("alpha").created_server_ids) == 3


def test_max_concurrency_of_two_boots_two_together(zk, sim, start_launcher):
    reqs = fulfil_three_at_once(zk, sim, start_launcher, "      max-concurrency: 2\n")
    assert [r.state for r in reqs] == [model.FULFILLED] * 3, [r.reason for r in reqs]
    assert sim.cloud("alpha").most_building == 2


def test_nodepools_no_maximum_boots_every_request_together(zk, sim, start_launcher):
    reqs = fulfil_three_at_once(zk, sim, start_launcher, "      max-concurrency: -1\n")
    assert [r.state for r in reqs] == [model.FULFILLED] * 3, [r.reason for r in reqs]
    assert sim.cloud("alpha").most_building == 3


def test_min_ready_launches_count_against_max_concurrency(zk, sim, start_launcher):
    # Nodepool makes a request of each min-ready launch: they are handled one at a time here too
    sim.cloud("alpha").set_faults(boot_delay=2.0)
    start_launcher(pool_yaml({"debian": 3}, provider_yaml("prov-a", "alpha", max_servers=6,
                                                          extra="      max-concurrency: 1\n")))
    wait_for(lambda: len(ready_ids(zk)) == 3, 60, "three ready nodes")
    assert sim.cloud("alpha").most_building == 1
