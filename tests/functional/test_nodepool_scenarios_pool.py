"""Nodepool's documented behaviour of the ready pool, limits and launches, scenario by scenario: min-ready over
several providers, a pool's max-servers, requests no provider can serve, launch-retries, launch-timeout and
max-ready-age. Real ZooKeeper and the OpenStack simulator over HTTP, nodes that are real SSH hosts."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, ready_ids, servers, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def provider(name: str, cloud: str, labels: tuple[str, ...] = ("debian",), extra: str = "",
             pool_extra: str = "") -> str:
    """An OpenStack provider written as Nodepool's documentation writes one, with only the keys `extra` (provider)
    and `pool_extra` (its one pool) add: every other setting is Nodepool's default."""
    pool_labels = ", ".join(f"{{name: {label}, cloud-image: deb, flavor-name: small}}" for label in labels)
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n{extra}"
            "      cloud-images:\n        - {name: deb, image-name: debian-12}\n"
            f"      pools:\n        - name: main\n          max-servers: 4\n{pool_extra}"
            f"          labels: [{pool_labels}]\n")


def all_servers(sim) -> list:
    return servers(sim, "alpha") + servers(sim, "beta")


def considered(client: NodeRequestClient) -> None:
    """Return once the launcher has been through every request made before, twice: a request for a label no
    provider has fails in the pass that sees it."""
    for _ in range(2):
        req = client.wait(client.request(["no-such-label"]), 30)
        assert req.state == model.REQUEST_FAILED, req


# -- 1: min-ready ---------------------------------------------------------------------------------------------
def test_min_ready_is_kept_for_the_label_over_both_providers_and_min_ready_zero_keeps_no_idle_node(
        zk, sim, start_launcher):
    """Nodepool (labels.min-ready): the minimum number of ready nodes of a label, best effort; the default 0
    makes nodes of it only for requests."""
    start_launcher(pool_yaml({"debian": 2, "fedora": 0}, provider("prov-a", "alpha", ("debian", "fedora")),
                             provider("prov-b", "beta", ("debian", "fedora"))))
    wait_live(zk, 2)
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready debian nodes")
    client = NodeRequestClient(zk, "min-ready")
    considered(client)
    assert len(ready_ids(zk)) == 2 and len(all_servers(sim)) == 2, "two for the label, not two per provider"
    assert not ready_ids(zk, "fedora")

    # both are taken: min-ready is made up again while they are in use
    taken = [n for _ in range(2) for n in client.lock_nodes(client.wait(client.request(["debian"]), 30))]
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready made up again")
    assert not set(ready_ids(zk)) & {n.id for n in taken}
    # a fedora node is made for its request, and deleted once used: none stays idle
    [fedora] = client.lock_nodes(client.wait(client.request(["fedora"]), 30))
    for node in taken + [fedora]:
        client.release(node)
    wait_for(lambda: not {n.id for n in taken + [fedora]} & set(node_records(zk)), 30, "the used nodes deleted")
    considered(client)
    assert not ready_ids(zk, "fedora") and len(ready_ids(zk)) == 2 and len(all_servers(sim)) == 2


# -- 2: max-servers and quota ---------------------------------------------------------------------------------
def test_a_pools_max_servers_makes_a_request_wait_and_it_is_served_once_a_server_is_free(zk, sim, start_launcher):
    """Nodepool (pools.max-servers): the most servers a pool runs at once; a request beyond it waits (the
    handler pauses) rather than failing."""
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha").replace("max-servers: 4", "max-servers: 1")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "pool-limit")
    [busy] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    waiting = client.request(["debian"])
    considered(client)
    assert client.get(waiting).state in (model.REQUESTED, model.PENDING)
    assert len(servers(sim, "alpha")) == 1
    client.release(busy)
    req = client.wait(waiting, 30)
    assert req.state == model.FULFILLED, req.reason
    assert len(sim.cloud("alpha").created_server_ids) == 2


def test_min_ready_beyond_a_pools_max_servers_is_best_effort(zk, sim, start_launcher):
    """Nodepool (labels.min-ready): best effort within the available capacity, not a guaranteed allocation."""
    start_launcher(pool_yaml({"debian": 3}, provider("prov-a", "alpha").replace("max-servers: 4", "max-servers: 2")))
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready nodes")
    considered(NodeRequestClient(zk, "barrier"))
    assert len(ready_ids(zk)) == 2 and len(servers(sim, "alpha")) == 2


def test_a_held_node_counts_against_max_servers_and_a_request_waits_for_room(zk, sim, start_launcher):
    """Nodepool: every node of a pool, held ones included, is a server that counts against its max-servers."""
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha").replace("max-servers: 4", "max-servers: 1")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "held")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    client.release(node, held=True, reason="looking into it", hold_hours=1)
    waiting = client.request(["debian"])
    considered(client)
    assert client.get(waiting).state in (model.REQUESTED, model.PENDING)
    assert len(servers(sim, "alpha")) == 1 and node_records(zk)[node.id].state == model.HOLD


def test_a_cloud_quota_error_on_create_makes_the_request_wait_not_fail(zk, sim, start_launcher):
    """Nodepool: a launch the cloud refuses for quota is not a launch failure; the request waits until the quota
    allows it (the handler pauses)."""
    cloud = sim.cloud("alpha")
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha")))
    wait_live(zk, 1)
    cloud.limits.max_instances = 1
    client = NodeRequestClient(zk, "quota")
    [busy] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    waiting = client.request(["debian"])
    considered(client)
    assert client.get(waiting).state in (model.REQUESTED, model.PENDING), client.get(waiting).reason
    client.release(busy)
    req = client.wait(waiting, 30)
    assert req.state == model.FULFILLED, req.reason


def test_a_request_larger_than_its_pools_max_servers_is_declined_and_fails(zk, sim, start_launcher):
    """Nodepool: a launcher declines a request its pool could never hold at once (pool quota: max-servers,
    max-cores, max-ram); declined by every launcher, it fails."""
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha").replace("max-servers: 4", "max-servers: 2")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "too-big")
    rid = client.request(["debian"] * 3)
    considered(client)
    req = client.get(rid)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], (req.state, req.reason)
    assert not servers(sim, "alpha") and not node_records(zk), "nothing launched for it"


# -- 3: what no provider has; several labels ------------------------------------------------------------------
def test_a_request_for_a_label_no_provider_has_fails_declined_by_all_with_a_reason(zk, sim, start_launcher):
    """Nodepool: a launcher declines a request for a label none of its pools has; declined by every launcher,
    the request fails."""
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha"), provider("prov-b", "beta")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "nosuch")
    req = client.wait(client.request(["nosuch"]), 30)
    assert req.state == model.REQUEST_FAILED
    assert req.declined_by == ["prov-a", "prov-b"] and "nosuch" in req.reason, req.reason
    assert not all_servers(sim)


def test_a_request_for_two_labels_is_served_by_the_one_provider_that_has_both(zk, sim, start_launcher):
    """Nodepool: all the nodes of a request come from one provider (one pool), which must have every label."""
    start_launcher(pool_yaml({"debian": 1, "fedora": 0}, provider("prov-a", "alpha"),
                             provider("prov-b", "beta", ("debian", "fedora"))))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "pair")
    nodes = client.lock_nodes(client.wait(client.request(["debian", "fedora"]), 30))
    assert [(n.label, n.provider) for n in nodes] == [("debian", "prov-b"), ("fedora", "prov-b")]
    for node in nodes:
        client.release(node)


# -- 4, 5: launch-retries, launch-timeout ---------------------------------------------------------------------
def test_a_boot_that_always_fails_fails_the_request_after_three_attempts_and_leaves_nothing_behind(
        zk, sim, start_launcher):
    """Nodepool (launch-retries, default 3): the launches tried before the request is failed; a failed launch's
    node record is removed and its server deleted."""
    cloud = sim.cloud("alpha")
    cloud.set_faults(boot_errors=-1)
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "doomed")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason
    assert len(cloud.created_server_ids) == 3
    wait_for(lambda: not servers(sim, "alpha"), 30, "the failed servers deleted")
    wait_for(lambda: not node_records(zk), 30, "the failed nodes' records removed")


def fail_boots_of(cloud, label: str, monkeypatch, times: int = -1) -> None:
    """Every boot of a server of `label` fails (the first `times` of them, when not -1); others boot."""
    create = cloud.create_server
    left = [times]

    def create_server(name, *args, **kw):
        with cloud.lock:  # the fault is taken by this create, not by another's at the same time
            failing = f"-{label}-" in name and left[0] != 0
            if failing:
                left[0] -= 1
                cloud.set_faults(boot_errors=1)
            return create(name, *args, **kw)
    monkeypatch.setattr(cloud, "create_server", create_server)


def test_launch_retries_are_counted_for_each_node_of_a_request(zk, sim, start_launcher, monkeypatch):
    """Nodepool (launch-retries): the times a server's launch is tried before the node fails; each node of a
    request has its own."""
    cloud = sim.cloud("alpha")
    fail_boots_of(cloud, "debian", monkeypatch, times=2)
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", extra="      launch-retries: 2\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "pair")
    req = client.wait(client.request(["debian", "debian"]), 60)
    assert req.state == model.FULFILLED, req.reason
    assert len(cloud.created_server_ids) == 4  # each node failed once and booted at its second try
    for node in client.lock_nodes(req):
        client.release(node)


def test_a_node_whose_launch_retries_are_used_up_fails_the_request_though_its_other_node_boots(
        zk, sim, start_launcher, monkeypatch):
    """Nodepool (launch-retries): a node that failed them all fails its request, whatever the other nodes do."""
    cloud = sim.cloud("alpha")
    fail_boots_of(cloud, "debian", monkeypatch, times=3)  # one of the two nodes fails twice
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", extra="      launch-retries: 2\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "pair")
    req = client.wait(client.request(["debian", "debian"]), 60)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason


def test_a_request_failed_by_one_label_leaves_its_other_launched_node_ready_for_the_next_request(
        zk, sim, start_launcher, monkeypatch):
    """Nodepool: when a request fails, the nodes launched for it that are up lose their allocation and are ready
    for other requests (unlockNodeSet(clear_allocation=True)); the failed ones are deleted."""
    cloud = sim.cloud("alpha")
    fail_boots_of(cloud, "fedora", monkeypatch)
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, provider("prov-a", "alpha", ("debian", "fedora"),
                                                                  extra="      launch-retries: 2\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "half")
    req = client.wait(client.request(["debian", "fedora"]), 60)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason
    spare = wait_for(lambda: next(iter(ready_ids(zk)), None), 30, "the debian node ready")
    wait_for(lambda: len(servers(sim, "alpha")) == 1, 30, "the failed fedora servers deleted")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    assert node.id == spare and len(cloud.created_server_ids) == 3  # no new launch for it
    client.release(node)


def test_a_server_never_active_is_deleted_after_launch_timeout_and_the_launch_retried(zk, sim, start_launcher,
                                                                                      monkeypatch):
    """Nodepool (launch-timeout): from the create call until ACTIVE; when it passes, the launch is aborted, the
    server deleted, and the launch tried again (launch-retries)."""
    cloud = sim.cloud("alpha")
    create = cloud.create_server

    def first_one_hangs(*args, **kw):
        server = create(*args, **kw)
        cloud.set_faults(boot_delay=0)  # only the first server stays in BUILD (for a minute)
        return server

    cloud.set_faults(boot_delay=60)
    monkeypatch.setattr(cloud, "create_server", first_one_hangs)
    # 2 s, and 5 attempts: a loaded machine can take over a second to start a server's host (its network
    # namespace and sshd), so the retries too may time out; only the first is made to hang
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha",
                                                     extra="      launch-timeout: 2\n      launch-retries: 5\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "stuck")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.FULFILLED, req.reason
    first, *retries = cloud.created_server_ids
    [node] = client.lock_nodes(req)
    assert retries and node.external_id == retries[-1]
    wait_for(lambda: first in cloud.deleted_server_ids, 30, "the server never ACTIVE deleted")
    client.release(node)


# -- 7: max-ready-age -----------------------------------------------------------------------------------------
def test_a_ready_node_older_than_max_ready_age_is_deleted_and_not_replaced_without_min_ready(
        zk, sim, start_launcher):
    """Nodepool (labels.max-ready-age): a node ready for longer is deleted, whatever made it ready; min-ready 0
    asks for no replacement."""
    cloud = sim.cloud("alpha")
    labels = "nodepool:\n  labels:\n    - {name: debian, min-ready: 0, max-ready-age: 2}\n  providers:\n"
    start_launcher(labels + provider("prov-a", "alpha"))
    wait_live(zk, 1)
    cloud.set_faults(boot_delay=1.0)
    client = NodeRequestClient(zk, "gone-away")
    withdrawn = client.request(["debian"])
    wait_for(lambda: cloud.created_server_ids, 10, "its server created")
    client.cancel(withdrawn)  # the node launched for it becomes a spare ready node
    spare = wait_for(lambda: next(iter(ready_ids(zk)), None), 30, "the spare ready")
    wait_for(lambda: spare not in node_records(zk), 30, "the spare deleted at its max-ready-age")
    wait_for(lambda: not servers(sim, "alpha"), 30, "its server deleted")
    considered(client)
    assert not ready_ids(zk) and len(cloud.created_server_ids) == 1
