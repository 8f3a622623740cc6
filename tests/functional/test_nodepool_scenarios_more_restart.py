"""Nodepool's documented behaviour when a launcher or a consumer goes away, scenario by scenario: a launcher stopped
and started again on the same ZooKeeper, a request whose consumer's session ends before or after it is fulfilled,
and the nodes of a consumer whose session died. Real ZooKeeper and the OpenStack simulator over HTTP, nodes that are
real SSH hosts."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, provider_yaml, ready_ids, servers, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def considered(client: NodeRequestClient) -> None:
    """Return once the launcher has been through every request made before, twice: a request for a label no
    provider has fails in the pass that sees it."""
    for _ in range(2):
        req = client.wait(client.request(["no-such-label"]), 30)
        assert req.state == model.REQUEST_FAILED, req


def take(client: NodeRequestClient, labels: list[str]) -> list[model.Node]:
    req = client.wait(client.request(labels), 30)
    assert req.state == model.FULFILLED, req.reason
    return client.lock_nodes(req)


def server_ids(sim, cloud: str = "alpha") -> set[str]:
    return {s.id for s in servers(sim, cloud)}


def two_label_provider(name: str, cloud: str) -> str:
    return provider_yaml(name, cloud, max_servers=2).replace(
        "labels: [{name: debian, image: deb, flavor: small}]",
        "labels: [{name: debian, image: deb, flavor: small}, {name: fedora, image: deb, flavor: small}]")


def hang_fedora_boots(cloud, monkeypatch):
    """Make the cloud's boots of fedora nodes take a minute; returns its own create_server, to put back."""
    create = cloud.create_server

    def fedora_hangs(name, *args, **kw):
        with cloud.lock:  # the delay is this create's, not another's at the same time
            cloud.set_faults(boot_delay=60 if "-fedora-" in name else 0)
            try:
                return create(name, *args, **kw)
            finally:
                cloud.set_faults(boot_delay=0)
    monkeypatch.setattr(cloud, "create_server", fedora_hangs)
    return create


# -- 1: a launcher restarted ----------------------------------------------------------------------------------
def test_a_restarted_launcher_adopts_its_ready_and_in_use_nodes_and_serves_what_was_asked_meanwhile(
        zk, sim, start_launcher):
    """Nodepool (operation: the launcher's state is in ZooKeeper; test_lost_requests): a launcher started again
    finds the nodes already there, hands out the ready ones, leaves the in-use ones to their consumer and launches
    only what min-ready still lacks; a request made while it was down is served."""
    yaml_text = pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha"))
    first = start_launcher(yaml_text)
    client = NodeRequestClient(zk, "build 1")
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready nodes")
    [in_use] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready made up again")
    spares = ready_ids(zk)
    first.stop()
    assert len(sim.cloud("alpha").created_server_ids) == 3

    asked = client.request(["debian"])  # while no launcher runs
    start_launcher(yaml_text)
    req = client.wait(asked, 30)
    assert req.state == model.FULFILLED, req.reason
    assert req.nodes[0] in spares, "one of the ready nodes the first launcher left is handed out"
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready made up by the new launcher")
    considered(client)
    assert len(sim.cloud("alpha").created_server_ids) == 4, "one launch: for the node handed out, nothing more"
    assert not sim.cloud("alpha").deleted_server_ids
    assert node_records(zk)[in_use.id].state == model.IN_USE
    assert {n.external_id for n in node_records(zk).values()} == server_ids(sim)

    # the in-use node is the new launcher's now: released, it deletes it
    client.release(in_use)
    wait_for(lambda: in_use.id not in node_records(zk), 30, "the used node deleted")
    assert in_use.external_id not in server_ids(sim)
    [served] = client.lock_nodes(req)
    client.release(served)


def test_a_launcher_stopped_while_it_boots_a_node_leaks_nothing_and_the_next_one_serves_the_request(
        zk, sim, start_launcher):
    """Nodepool (PoolWorker.stop: nodes being launched are left BUILDING and unlocked, and cleaned up on a
    restart; CleanupWorker._cleanupLostRequests: a request left pending is reset and served): no server is
    leaked and the request is served once."""
    yaml_text = pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha"))
    cloud = sim.cloud("alpha")
    cloud.set_faults(boot_delay=2.0)
    first = start_launcher(yaml_text)
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "build 2")
    rid = client.request(["debian"])
    wait_for(lambda: cloud.created_server_ids, 10, "its server created")
    booting = list(cloud.created_server_ids)
    first.stop()
    cloud.set_faults(boot_delay=0)
    start_launcher(yaml_text)
    req = client.wait(rid, 60)
    assert req.state == model.FULFILLED, req.reason
    [node] = client.lock_nodes(req)

    def consistent() -> bool:
        return {n.external_id for n in node_records(zk).values()} == server_ids(sim)
    wait_for(consistent, 30, "every server a node's, every node's server there")
    assert len(node_records(zk)) == 1
    assert node.external_id not in booting, "a node left building is not taken over: it is deleted"
    assert set(booting) <= set(cloud.deleted_server_ids), "the abandoned boot's server deleted"
    client.release(node)


def test_nodes_of_a_fulfilled_request_not_yet_taken_stay_its_own_across_a_launcher_restart(zk, sim, start_launcher):
    """Nodepool: the nodes of a fulfilled request are allocated to it until its consumer locks them; a launcher
    started meanwhile neither hands them to another request nor frees them while the request is there."""
    yaml_text = pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha"))
    first = start_launcher(yaml_text, cleanup_interval=0.3)
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "build 5")
    req = client.wait(client.request(["debian", "debian"]), 30)
    assert req.state == model.FULFILLED, req.reason
    first.stop()
    start_launcher(yaml_text, cleanup_interval=0.3)
    wait_live(zk, 1)
    other = NodeRequestClient(zk, "another build")
    [theirs] = take(other, ["debian"])
    assert theirs.id not in req.nodes
    considered(client)
    assert all(node_records(zk)[n].state == model.ALLOCATED for n in req.nodes)
    taken = client.lock_nodes(req)
    assert [n.id for n in taken] == req.nodes
    for node in taken + [theirs]:
        client.release(node)


def test_a_node_up_for_a_request_whose_launcher_stopped_mid_launch_is_given_to_it_by_the_next_launcher(
        zk, sim, start_launcher, monkeypatch):
    """Nodepool (test_lost_requests; CleanupWorker._resetLostRequest): a request left pending by a launcher that
    went away is reset and served again, and a node already allocated to it is deallocated and reused for it
    (min-ready 0: nothing else would use it); the half-finished launch leaks nothing."""
    cloud = sim.cloud("alpha")
    create = hang_fedora_boots(cloud, monkeypatch)
    yaml_text = pool_yaml({"debian": 0, "fedora": 0}, two_label_provider("prov-a", "alpha"))
    first = start_launcher(yaml_text)
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "build 3")
    rid = client.request(["debian", "fedora"])
    debian = wait_for(lambda: next((n for n in node_records(zk).values() if n.label == "debian"
                                    and n.state == model.ALLOCATED), None), 30, "the debian node up, allocated")
    first.stop()
    monkeypatch.setattr(cloud, "create_server", create)
    start_launcher(yaml_text)
    req = client.wait(rid, 30)
    assert req.state == model.FULFILLED, req.reason
    assert debian.id in req.nodes, "the node already up for the request is the one it gets"
    assert len(cloud.created_server_ids) == 3  # debian, the abandoned fedora, the new fedora
    wait_for(lambda: {n.external_id for n in node_records(zk).values()} == server_ids(sim), 30,
             "the abandoned fedora boot deleted")
    for node in client.lock_nodes(req):
        client.release(node)


def test_a_node_up_for_a_request_whose_launcher_went_away_is_ready_again_once_another_launcher_offers_it(
        zk, sim, start_launcher, monkeypatch):
    """Nodepool (CleanupWorker._resetLostRequest, run by any launcher): the launcher that resets a request whose
    launcher went away deallocates the nodes already up for it in that provider, although it does not manage
    that provider; the request is served elsewhere, and the node is anyone's once its provider runs again."""
    cloud = sim.cloud("alpha")
    create = hang_fedora_boots(cloud, monkeypatch)
    labels = {"debian": 0, "fedora": 0}
    first = start_launcher(pool_yaml(labels, two_label_provider("prov-a", "alpha")))
    start_launcher(pool_yaml(labels, two_label_provider("prov-b", "beta")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "build 5")
    rid = client.request(["debian", "fedora"], provider="prov-a")
    debian = wait_for(lambda: next((n for n in node_records(zk).values() if n.label == "debian"
                                    and n.state == model.ALLOCATED), None), 30, "the debian node up, allocated")
    first.stop()
    monkeypatch.setattr(cloud, "create_server", create)
    req = client.wait(rid, 30)
    assert req.state == model.FULFILLED, req.reason
    assert req.provider == "prov-b"
    wait_for(lambda: debian.id in ready_ids(zk), 30, "the node up for it given back to the ready index")
    assert node_records(zk)[debian.id].request == ""
    nodes = client.lock_nodes(req)  # (taken only now: the request's removal frees a node left allocated to it)
    start_launcher(pool_yaml(labels, two_label_provider("prov-a", "alpha")))
    [again] = client.lock_nodes(client.wait(client.request(["debian"], provider="prov-a"), 30))
    assert again.id == debian.id, "the node left by the launcher that went away is handed out"
    for node in [*nodes, again]:
        client.release(node)


def test_a_node_released_while_no_launcher_runs_is_deleted_by_the_next_one(zk, sim, start_launcher):
    """Nodepool: a node its consumer is done with (used) is deleted by whichever launcher runs its provider
    (DeletedNodeWorker), also one started after the release."""
    yaml_text = pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha"))
    first = start_launcher(yaml_text)
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "build 4")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    first.stop()
    client.release(node)
    assert node.id in node_records(zk) and node.external_id in server_ids(sim)
    start_launcher(yaml_text)
    wait_for(lambda: node.id not in node_records(zk), 30, "the used node deleted")
    assert node.external_id not in server_ids(sim)


# -- 2: a request whose consumer went away --------------------------------------------------------------------
def test_a_request_whose_consumers_session_ends_mid_launch_leaves_its_node_as_a_ready_spare(
        zk, zk_factory, sim, start_launcher):
    """Nodepool: a node request is ephemeral (its requestor's session holds it); when it goes away while nodes are
    launched for it, they are unlocked with their allocation cleared and stay ready for other requests
    (NodeRequestHandler: the request no longer exists; test_node_deallocation)."""
    cloud = sim.cloud("alpha")
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")))
    wait_live(zk, 1)
    cloud.set_faults(boot_delay=1.0)
    consumer_zk = zk_factory()
    gone = NodeRequestClient(consumer_zk, "a scheduler that died")
    rid = gone.request(["debian"])
    wait_for(lambda: cloud.created_server_ids, 10, "its server created")
    consumer_zk.stop()
    wait_for(lambda: NodeRequestClient(zk, "look").get(rid) is None, 30, "the request gone with its session")
    spare = wait_for(lambda: next(iter(ready_ids(zk)), None), 30, "the launched node ready")
    assert node_records(zk)[spare].request == "", "its allocation cleared"

    client = NodeRequestClient(zk, "the next build")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    assert node.id == spare and len(cloud.created_server_ids) == 1
    client.release(node)


def test_a_fulfilled_request_whose_consumer_died_before_taking_its_nodes_gives_them_back_ready(
        zk, zk_factory, sim, start_launcher):
    """Nodepool (test_node_deallocation, CleanupWorker): a node allocated to a request that no longer exists is
    deallocated and ready again, neither deleted nor left allocated."""
    cloud = sim.cloud("alpha")
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.3)
    wait_live(zk, 1)
    consumer_zk = zk_factory()
    gone = NodeRequestClient(consumer_zk, "a scheduler that died")
    req = gone.wait(gone.request(["debian", "debian"]), 30)
    assert req.state == model.FULFILLED, req.reason
    consumer_zk.stop()
    wait_for(lambda: set(req.nodes) <= ready_ids(zk), 30, "both nodes ready again")
    records = node_records(zk)
    assert all(records[n].state == model.READY and records[n].request == "" for n in req.nodes)
    client = NodeRequestClient(zk, "the next build")
    taken = client.lock_nodes(client.wait(client.request(["debian", "debian"]), 30))
    assert {n.id for n in taken} == set(req.nodes) and len(cloud.created_server_ids) == 2
    for node in taken:
        client.release(node)


# -- 7: the nodes of a consumer whose session died ------------------------------------------------------------
def test_nodes_in_use_by_a_consumer_whose_session_died_are_deleted_and_min_ready_made_up(
        zk, zk_factory, sim, start_launcher):
    """Nodepool (DeletedNodeWorker: an in-use node nobody holds locked is deleted; its consumer's lock was
    ephemeral): both nodes of a two-node set whose consumer died go, servers and records; min-ready is kept."""
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.3)
    wait_for(lambda: len(ready_ids(zk)) == 1, 30, "a ready node")
    consumer_zk = zk_factory()
    gone = NodeRequestClient(consumer_zk, "an executor that died")
    taken = gone.lock_nodes(gone.wait(gone.request(["debian", "debian"]), 30))
    wait_for(lambda: len(ready_ids(zk)) == 1, 30, "min-ready made up")
    consumer_zk.stop()
    wait_for(lambda: not {n.id for n in taken} & set(node_records(zk)), 30, "the abandoned nodes deleted")
    assert not {n.external_id for n in taken} & server_ids(sim)
    assert len(ready_ids(zk)) == 1
