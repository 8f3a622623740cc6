"""What becomes of a node request while it waits: it fails, saying why, once the provider it waited for goes away
and every provider still live has declined it, or at once when its image cannot be built; a request whose launch
failed takes a node that becomes ready meanwhile instead of waiting for room to launch another; the room a waiting
launch needs is kept for it and it holds up no request behind it; a request waits on no provider whose pool for its
label is full, and unclaimed while its image is being built. Over real wires: ZooKeeper, the OpenStack simulator
over HTTP, nodes that are SSH hosts."""

from __future__ import annotations

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.images import list_builds
from gatekeeper.zk import paths
from gatekeeper.zk.nodes import NodeStore
from tests.functional import test_launcher
from tests.functional.test_launcher import pool_yaml, provider_yaml, wait_live
from tests.helpers import wait_for

# the fixtures of the launcher tests: the simulator's two clouds, the key nodes are reached with, and launchers
sim, ssh_key, start_launcher = test_launcher.sim, test_launcher.ssh_key, test_launcher.start_launcher


def test_a_request_waiting_for_room_fails_with_a_reason_when_its_only_provider_goes_away(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", label="debian")))
    wait_live(zk, 1)
    fedora_launcher = start_launcher(pool_yaml({"fedora": 0}, provider_yaml("prov-b", "beta", max_servers=1,
                                                                           label="fedora")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "stranded")
    busy = client.wait(client.request(["fedora"]), 30)
    assert busy.state == model.FULFILLED and busy.provider == "prov-b", busy.reason  # prov-b's one server in use
    rid = client.request(["fedora"])
    wait_for(lambda: client.get(rid).declined_by == ["prov-a"], 10, "prov-a declining the fedora request")
    assert client.get(rid).state == model.REQUESTED, "prov-b could serve it once it has room: it waits"
    fedora_launcher.stop()  # prov-b is no longer live: the one live provider has declined the request
    req = client.wait(rid, 10)
    assert req.state == model.REQUEST_FAILED
    assert req.reason == "no provider can serve labels fedora: declined by prov-a"


def test_a_request_whose_launch_failed_takes_a_node_that_becomes_ready_while_it_waits_for_room(
        zk, sim, start_launcher):
    alpha = sim.cloud("alpha")
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=2)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "spare")
    alpha.set_faults(boot_delay=3.0)
    withdrawn = client.request(["debian"])
    wait_for(lambda: len(alpha.created_server_ids) == 1, 10, "the first request's server booting (slowly)")
    # the next boot fails at once, and the failed server's delete holds the provider's second slot for a while
    alpha.set_faults(boot_delay=0.0, boot_errors=1, delete_delay=6.0)
    waiting = client.request(["debian"])
    wait_for(lambda: any(s.status == "ERROR" for s in alpha.list_servers()), 10, "the second request's boot failing")
    client.cancel(withdrawn)  # the first server is not needed by its request any more: it becomes a spare
    req = client.wait(waiting, 30)
    assert req.state == model.FULFILLED, req.reason
    assert req.provider == "prov-a"
    [(spare, _)] = [NodeStore(zk).read_node(node_id) for node_id in req.nodes]
    assert spare.external_id == alpha.created_server_ids[0], "the spare that became ready, not a new launch"
    # the failed server's room, once it is deleted, goes to the next request: nothing more is launched for this one
    failed = alpha.created_server_ids[1]
    wait_for(lambda: failed in alpha.deleted_server_ids and zk.client.get_children(paths.NODES) == [spare.id], 15,
             "the failed server and its node record deleted")
    alpha.set_faults(delete_delay=0.0)
    following = client.wait(client.request(["debian"]), 10)
    assert following.state == model.FULFILLED, following.reason
    assert client.get(waiting).nodes == [spare.id]
    assert len(alpha.created_server_ids) == 3


def test_a_request_whose_only_provider_has_no_image_and_failed_to_build_one_fails_with_a_reason(
        zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(boot_errors=-1)  # the image's template server never boots: its build fails
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", image_extra=prepare)))
    wait_for(lambda: [b for b in list_builds(zk.client, "deb", "prov-a") if b.state == "failed"], 30,
             "the first image build failing")
    client = NodeRequestClient(zk, "no-image")
    req = client.wait(client.request(["debian"]), 10)
    assert req.state == model.REQUEST_FAILED, "not left waiting for an image the provider cannot build"
    assert req.reason == "no provider can serve labels debian: declined by prov-a"


def two_pools(max_servers: int, debian_pool_max: int) -> str:
    """prov-a on alpha: debian in a pool of its own with its own max-servers, fedora in another."""
    return ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n"
            f"      max-servers: {max_servers}\n      pools:\n"
            f"        - {{name: small, max-servers: {debian_pool_max}, "
            "labels: [{name: debian, image: deb, flavor: small}]}\n"
            "        - {name: other, labels: [{name: fedora, image: deb, flavor: small}]}\n"
            "      images: [{name: deb, base-image: debian-12}]\n")


def considered(client: NodeRequestClient) -> None:
    """Return once the launcher has decided on every request made before, and its writes for them are in: a
    request larger than any provider fails in a pass of its own, and the second one after the pass that saw the
    first."""
    for _ in range(2):
        req = client.wait(client.request(["debian"] * 4), 10)
        assert req.state == model.REQUEST_FAILED, req


def test_room_kept_for_a_request_whose_launch_waits_is_not_given_to_a_later_request(zk, sim, start_launcher):
    alpha = sim.cloud("alpha")
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_pools(max_servers=3, debian_pool_max=2)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "room")
    busy = client.wait(client.request(["debian"]), 30)
    [busy_node] = client.lock_nodes(busy)
    # two debian nodes: the pool has room for one now, so one is launched and the other waits for room, which the
    # provider keeps for it (its third and last server)
    pair = client.request(["debian", "debian"])
    wait_for(lambda: len(alpha.created_server_ids) == 2, 10, "one of the pair's nodes launched")
    later = client.request(["fedora"])
    considered(client)
    assert len(alpha.created_server_ids) == 2, "the debian pool holds two servers: the pair's second one waits"
    claimed = client.get(pair)
    assert (claimed.state, claimed.provider) == (model.PENDING, "prov-a"), "the pair is seen being launched there"
    assert client.get(later).state == model.REQUESTED, "the later request took the room kept for the pair"
    client.release(busy_node)
    pair_req = client.wait(pair, 30)
    assert pair_req.state == model.FULFILLED, pair_req.reason
    later_req = client.wait(later, 30)
    assert later_req.state == model.FULFILLED, later_req.reason


def test_a_request_is_launched_where_its_labels_pool_has_room_not_where_only_the_provider_has(
        zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_pools(max_servers=3, debian_pool_max=1),
                             provider_yaml("prov-b", "beta", max_servers=1)))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "pools")
    busy = client.wait(client.request(["debian"]), 30)
    assert busy.provider == "prov-a", "the provider with the most room"
    # prov-a still has room for two servers, but none in its debian pool: prov-b, with room for one, launches it
    req = client.wait(client.request(["debian"]), 10)
    assert req.state == model.FULFILLED and req.provider == "prov-b", req.reason


def test_a_request_made_before_its_image_is_built_waits_unclaimed_and_is_served_once_it_is(zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(boot_delay=2.0)  # the image's template server boots slowly: the build takes a while
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=3, image_extra=prepare)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "early")
    rid = client.request(["debian"])
    considered(client)
    assert not [b for b in list_builds(zk.client, "deb", "prov-a") if b.state == "ready"], "built too soon to tell"
    _, stat = zk.client.get(paths.node_request(rid))
    assert stat.version == 0, "claimed and given back while there is no image to boot (written again every pass)"
    sim.cloud("alpha").set_faults(boot_delay=0.0)
    req = client.wait(rid, 30)
    assert req.state == model.FULFILLED, req.reason
    [node] = client.lock_nodes(req)
    assert node.image_build


def test_a_request_waiting_for_room_does_not_hold_up_the_requests_behind_it(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, provider_yaml("prov-a", "alpha", max_servers=1),
                             provider_yaml("prov-b", "beta", label="fedora")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "queue")
    busy = client.wait(client.request(["debian"]), 30)
    [busy_node] = client.lock_nodes(busy)  # prov-a's one server is in use
    waiting = client.request(["debian"])
    behind = client.wait(client.request(["fedora"]), 10)
    assert behind.state == model.FULFILLED and behind.provider == "prov-b", behind.reason
    assert client.get(waiting).state == model.REQUESTED
    client.release(busy_node)
    req = client.wait(waiting, 30)
    assert req.state == model.FULFILLED and req.provider == "prov-a", req.reason


def test_a_later_request_goes_to_the_provider_with_the_most_room_not_kept_for_waiting_launches(
        zk, sim, start_launcher):
    alpha = sim.cloud("alpha")
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_pools(max_servers=4, debian_pool_max=2),
                             provider_yaml("prov-b", "beta", max_servers=2, label="fedora")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "room")
    busy = client.wait(client.request(["debian"]), 30)
    [busy_node] = client.lock_nodes(busy)
    pair = client.request(["debian", "debian"])  # one launched, one waiting for room in prov-a's debian pool
    wait_for(lambda: len(alpha.created_server_ids) == 2, 10, "one of the pair's nodes launched")
    # prov-a has two free servers, one of them kept for the pair; prov-b has two
    later = client.wait(client.request(["fedora"]), 10)
    assert later.state == model.FULFILLED and later.provider == "prov-b", later.reason
    client.release(busy_node)
    assert client.wait(pair, 30).state == model.FULFILLED
