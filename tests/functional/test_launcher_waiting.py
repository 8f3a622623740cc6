"""What becomes of a node request while it waits: it fails, saying why, once the provider it waited for goes away
and every provider still live has declined it, or at once when its image cannot be built; and a request whose launch
failed takes a node that becomes ready meanwhile instead of waiting for room to launch another. Over real wires:
ZooKeeper, the OpenStack simulator over HTTP, nodes that are SSH hosts."""

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
