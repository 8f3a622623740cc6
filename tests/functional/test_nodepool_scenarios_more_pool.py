"""Nodepool's documented behaviour of images, providers and the order of service, scenario by scenario: an image
built before its label boots, `image-build` and the builds kept, a paused image, provider priority, a named
provider, a multi-node request no one provider can hold, a pool's cores and RAM over flavors of two sizes, an
operator's hold, and waiting requests of several labels served by priority. Real ZooKeeper, the OpenStack simulator
over HTTP, nodes that are real SSH hosts, and the `gatekeeper` CLI as a process."""

from __future__ import annotations

import pytest

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.images import list_builds
from tests.functional import test_launcher as base
from tests.functional import test_nodepool_scenarios_nodes as scenarios
from tests.functional.test_launcher import node_records, pool_yaml, ready_ids, servers, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, launchers stopped at the end, the CLI
ssh_key, sim, start_launcher, gk = base.ssh_key, base.sim, base.start_launcher, scenarios.gk

PREPARE = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"


def provider(name: str, cloud: str, labels: dict[str, str] | None = None, max_servers: int | None = 4,
             extra: str = "", pool_extra: str = "", images: str = "") -> str:
    """An OpenStack provider with one pool whose labels (label -> flavor; debian on small by default) boot image
    deb (debian-12 as it is, unless `images` says otherwise)."""
    labels = labels or {"debian": "small"}
    pool_labels = ", ".join(f"{{name: {label}, image: deb, flavor: {flavor}}}" for label, flavor in labels.items())
    limit = f"      max-servers: {max_servers}\n" if max_servers is not None else ""
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n{limit}      boot-timeout: 15\n"
            f"{extra}      pools:\n        - name: main\n{pool_extra}          labels: [{pool_labels}]\n"
            + (images or "      images:\n        - name: deb\n          base-image: debian-12\n"))


def considered(client: NodeRequestClient) -> None:
    """Return once the launcher has been through every request made before, twice: a request for a label no
    provider has fails in the pass that sees it."""
    for _ in range(2):
        req = client.wait(client.request(["no-such-label"]), 30)
        assert req.state == model.REQUEST_FAILED, req


def take(client: NodeRequestClient, labels: list[str], provider: str = "") -> list[model.Node]:
    req = client.wait(client.request(labels, provider=provider), 30)
    assert req.state == model.FULFILLED, req.reason
    return client.lock_nodes(req)


def waiting(client: NodeRequestClient, rid: str) -> bool:
    return client.get(rid).state in (model.REQUESTED, model.PENDING)


# -- 3: images ------------------------------------------------------------------------------------------------
def test_a_labels_image_is_built_before_any_node_of_it_boots_and_its_nodes_boot_that_build(
        zk, sim, start_launcher):
    """Nodepool: a label's diskimage is built and uploaded before a node of it is launched (a request waits for
    the image; test_node_assignment: the node's image is the upload)."""
    images = f"      images:\n        - name: deb\n          base-image: debian-12\n{PREPARE}"
    start_launcher(pool_yaml({"debian": 1}, provider("prov-a", "alpha", images=images)))
    client = NodeRequestClient(zk, "first build")
    rid = client.request(["debian"])  # made at once, before any image exists
    [build] = wait_for(lambda: [b for b in list_builds(zk.client, "deb", "prov-a") if b.state == "ready"], 60,
                       "the image built")
    req = client.wait(rid, 60)
    assert req.state == model.FULFILLED, req.reason
    wait_for(lambda: len(ready_ids(zk)) == 1, 30, "min-ready made up")
    nodes = [n for n in node_records(zk).values() if n.label == "debian"]
    assert len(nodes) == 2 and {n.image_build for n in nodes} == {build.id}
    booted = {s.id: s.image_id for s in servers(sim, "alpha")}
    assert {booted[n.external_id] for n in nodes} == {build.external_id}, "nodes boot the built image"
    with client.ssh(client.lock_nodes(req)[0]) as ssh:
        assert ssh.exec_command("cat \"$HOME/marker\"")[1].read().decode().strip() == "warmed"


def test_image_build_makes_a_new_build_a_failed_one_keeps_the_last_and_only_the_last_two_are_kept(
        zk, sim, start_launcher, gk):
    """Nodepool (`nodepool image-build`: a build now; builder CleanupWorker: the two most recent ready builds are
    kept, older ones deleted; a failed build leaves the ready one in use)."""
    cloud = sim.cloud("alpha")
    images = f"      images:\n        - name: deb\n          base-image: debian-12\n{PREPARE}"
    launcher = start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", images=images)),
                              image_check_interval=60, cleanup_interval=0.3)

    def ready_builds() -> list:
        return [b for b in list_builds(zk.client, "deb", "prov-a") if b.state == "ready"]

    [first] = wait_for(ready_builds, 60, "the first build")
    client = NodeRequestClient(zk, "image user")

    def built_anew(after: str) -> object:
        return next((b for b in list_builds(zk.client, "deb", "prov-a") if b.id > after
                     and b.state in ("ready", "failed")), None)

    cloud.set_faults(boot_errors=1)  # the template of the next build does not boot
    assert gk("image-build", "deb")[0] == 0
    failed = wait_for(lambda: built_anew(first.id), 60, "the asked-for build done")
    assert failed.state == "failed"
    [node] = take(client, ["debian"])
    assert node.image_build == first.id, "the last good build serves"
    client.release(node)

    made, last = [first], failed.id
    for _ in range(3):
        assert gk("image-build", "deb")[0] == 0
        made.append(wait_for(lambda after=last: built_anew(after), 60, "the asked-for build done"))
        assert made[-1].state == "ready"
        last = made[-1].id
    wait_for(lambda: launcher.managers["prov-a"].image_builds["deb"][0] == made[-1].id, 30, "the newest in use")
    wait_for(lambda: [b.id for b in ready_builds()] == [b.id for b in made[-2:]], 30, "older builds deleted")
    assert {b.external_id for b in made[-2:]} <= set(cloud.images)
    assert not {b.external_id for b in made[:-2]} & set(cloud.images)
    [node] = take(client, ["debian"])
    assert node.image_build == made[-1].id
    client.release(node)


def test_image_build_of_a_paused_image_builds_nothing_and_its_ready_build_keeps_serving(zk, sim, start_launcher, gk):
    """Nodepool (diskimages.pause: the builder does not build it; BuildWorker._checkImageForManualBuildRequest
    returns at once for a paused image)."""
    def two_images(deb_extra: str) -> str:
        images = (f"      images:\n        - name: deb\n          base-image: debian-12\n{deb_extra}{PREPARE}"
                  f"        - name: fed\n          base-image: debian-12\n{PREPARE}")
        return pool_yaml({"debian": 0, "fedora": 0}, provider(
            "prov-a", "alpha", images=images).replace("{name: debian, image: deb, flavor: small}",
                                                      "{name: debian, image: deb, flavor: small}, "
                                                      "{name: fedora, image: fed, flavor: small}"))

    def builds(image: str) -> list:
        return list_builds(zk.client, image, "prov-a")

    first = start_launcher(two_images(""))
    wait_for(lambda: all(any(b.state == "ready" for b in builds(i)) for i in ("deb", "fed")), 60, "both built")
    [deb] = builds("deb")
    first.stop()
    start_launcher(two_images("          pause: true\n"), image_check_interval=60)
    fed_before = [b.id for b in builds("fed")]
    for image in ("deb", "fed"):  # the builder checks deb before fed: fed built means deb was looked at
        assert gk("image-build", image)[0] == 0
    wait_for(lambda: len([b for b in builds("fed") if b.state == "ready"]) == len(fed_before) + 1, 60,
             "fed built anew")
    assert [b.id for b in builds("deb")] == [deb.id]
    client = NodeRequestClient(zk, "paused")
    [node] = take(client, ["debian"])
    assert node.image_build == deb.id
    client.release(node)


def test_a_new_build_leaves_the_ready_nodes_of_the_previous_one_ready_and_handed_out(zk, sim, start_launcher, gk):
    """Nodepool: a new image is used for the nodes launched after it; ready nodes of the previous image stay
    ready and are handed out (only max-ready-age ages them out)."""
    images = f"      images:\n        - name: deb\n          base-image: debian-12\n{PREPARE}"
    launcher = start_launcher(pool_yaml({"debian": 2}, provider("prov-a", "alpha", images=images)),
                              image_check_interval=60, cleanup_interval=0.3)
    wait_for(lambda: len(ready_ids(zk)) == 2, 60, "two ready nodes")
    old = ready_ids(zk)
    [first] = list_builds(zk.client, "deb", "prov-a")
    assert gk("image-build", "deb")[0] == 0
    second = wait_for(lambda: next((b for b in list_builds(zk.client, "deb", "prov-a") if b.id != first.id
                                    and b.state == "ready"), None), 60, "the new build")
    wait_for(lambda: launcher.managers["prov-a"].image_builds["deb"][0] == second.id, 30, "the new build in use")
    client = NodeRequestClient(zk, "image user")
    considered(client)
    assert ready_ids(zk) == old
    taken = take(client, ["debian", "debian"])
    assert {n.id for n in taken} == old and {n.image_build for n in taken} == {first.id}
    wait_for(lambda: len(ready_ids(zk)) == 2, 60, "min-ready made up")
    assert {node_records(zk)[n].image_build for n in ready_ids(zk)} == {second.id}
    for node in taken:
        client.release(node)


# -- 4: provider priority -------------------------------------------------------------------------------------
def test_the_better_priority_provider_serves_while_it_has_room_and_again_once_room_frees(zk, sim, start_launcher):
    """Nodepool (providers.priority: launchers yield requests to pools of a better priority that are not paused;
    better-priority pools reach their quota first, then the others are used)."""
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", max_servers=2, extra="      priority: 1\n"),
                             provider("prov-b", "beta", extra="      priority: 2\n")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "priority")
    taken = [take(client, ["debian"])[0] for _ in range(3)]
    assert [n.provider for n in taken] == ["prov-a", "prov-a", "prov-b"]
    client.release(taken[0])
    wait_for(lambda: taken[0].id not in node_records(zk), 30, "a prov-a node deleted")
    [again] = take(client, ["debian"])
    assert again.provider == "prov-a", "room on the better provider again: it serves"
    for node in taken[1:] + [again]:
        client.release(node)


def test_min_ready_nodes_are_made_up_on_the_better_priority_provider_while_it_has_room(zk, sim, start_launcher):
    """Nodepool (providers.priority): min-ready's requests are requests like others, yielded to the better-priority
    pool while it is not paused, so the nodes that make min-ready up fill it first."""
    start_launcher(pool_yaml({"debian": 2}, provider("prov-a", "alpha", max_servers=3, extra="      priority: 2\n"),
                             provider("prov-b", "beta", max_servers=3, extra="      priority: 1\n")))
    wait_live(zk, 2)
    wait_for(lambda: len(ready_ids(zk)) == 2, 60, "two ready nodes")
    client = NodeRequestClient(zk, "priority")
    taken = take(client, ["debian", "debian"])
    wait_for(lambda: len(ready_ids(zk)) == 2, 60, "min-ready made up")
    considered(client)
    room_on_b = 3 - sum(n.provider == "prov-b" for n in taken)
    made_up = sorted(node_records(zk)[n].provider for n in ready_ids(zk))
    assert made_up.count("prov-b") == min(2, room_on_b), (made_up, [n.provider for n in taken])
    for node in taken:
        client.release(node)


@pytest.mark.xfail(strict=True, reason="a node ready on a worse-priority provider is handed out while a "
                   "better-priority provider has room; Nodepool's launcher yields the request to the better pool "
                   "(not paused), which launches, and a pool hands out only its own ready nodes "
                   "(NodeRequestHandler: 'Only interested in nodes from this provider and pool')")
def test_a_ready_node_of_a_worse_priority_provider_waits_while_the_better_one_has_room(zk, sim, start_launcher):
    """Nodepool (providers.priority: 'launchers will yield requests to other provider pools with a higher
    priority as long as they are not paused')."""
    start_launcher(pool_yaml({"debian": 1}, provider("prov-b", "beta", extra="      priority: 2\n")))
    [spare] = wait_for(lambda: ready_ids(zk), 30, "prov-b's min-ready node")
    start_launcher(pool_yaml({"debian": 1}, provider("prov-a", "alpha", extra="      priority: 1\n")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "priority")
    [node] = take(client, ["debian"])
    assert node.provider == "prov-a" and spare in ready_ids(zk)
    client.release(node)


# -- 5: multi-node requests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", ["max-servers", "cloud quota"])
def test_a_nodeset_no_single_provider_can_hold_is_declined_by_each_and_fails(zk, sim, start_launcher, limit):
    """Nodepool: all the nodes of a request come from one provider pool; a pool that could never hold them
    declines it (hasProviderQuota: the provider's max-servers and its cloud's limits); declined by all, it
    fails, although the providers together would have room."""
    if limit == "max-servers":
        providers = [provider("prov-a", "alpha", max_servers=2), provider("prov-b", "beta", max_servers=2)]
    else:
        for cloud in ("alpha", "beta"):
            sim.cloud(cloud).limits.max_instances = 2
        providers = [provider("prov-a", "alpha", max_servers=None), provider("prov-b", "beta", max_servers=None)]
    start_launcher(pool_yaml({"debian": 0}, *providers))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "three nodes")
    req = client.wait(client.request(["debian"] * 3), 30)
    assert req.state == model.REQUEST_FAILED and sorted(req.declined_by) == ["prov-a", "prov-b"], req.reason
    assert not servers(sim, "alpha") and not servers(sim, "beta")
    [a, b] = take(client, ["debian", "debian"])  # two fit in one provider: both from it
    assert a.provider == b.provider
    for node in (a, b):
        client.release(node)


# -- 6: a pool's cores and RAM --------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", ["max-cores: 3", "max-ram: 5120"])  # small: 1 core, 1024 MB; medium: 2, 4096
def test_a_pools_cores_and_ram_count_each_nodes_flavor_a_big_one_waits_and_the_pool_pauses_behind_it(
        zk, sim, start_launcher, limit):
    """Nodepool (pools.max-cores, pools.max-ram: the pool's nodes' flavors in all; a request beyond them waits for
    room rather than failing, and the pool pauses behind it, "Pausing request handling to satisfy request": a
    later request that would fit waits its turn, so a big request is never starved by small ones)."""
    start_launcher(pool_yaml({"big": 0, "little": 0}, provider(
        "prov-a", "alpha", {"big": "medium", "little": "small"}, pool_extra=f"          {limit}\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "flavors")
    [big] = take(client, ["big"])
    second_big = client.request(["big"])
    little = client.request(["little"])  # 2 + 1 cores, 4096 + 1024 MB: it would fit, but waits its turn
    considered(client)
    assert waiting(client, second_big) and waiting(client, little) and len(servers(sim, "alpha")) == 1
    client.release(big)
    served = [client.wait(rid, 30) for rid in (second_big, little)]
    assert [r.state for r in served] == [model.FULFILLED] * 2, [r.reason for r in served]
    for req in served:
        for node in client.lock_nodes(req):
            client.release(node)


# -- 8: a request naming a provider ---------------------------------------------------------------------------
def test_a_request_naming_a_full_provider_waits_for_it_rather_than_going_to_another(zk, sim, start_launcher):
    """Nodepool (PoolWorker._assignHandlers): a request naming another provider whose pool is online and has not
    declined it is left to that pool, which takes it and waits for room (paused) at its max-servers."""
    start_launcher(pool_yaml({"debian": 0}, provider("prov-a", "alpha", max_servers=1), provider("prov-b", "beta")))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "named")
    [busy] = take(client, ["debian"], provider="prov-a")
    assert busy.provider == "prov-a"
    rid = client.request(["debian"], provider="prov-a")
    considered(client)
    assert waiting(client, rid) and not servers(sim, "beta")
    client.release(busy)
    req = client.wait(rid, 30)
    assert req.state == model.FULFILLED and req.provider == "prov-a", req.reason
    for node in client.lock_nodes(req):
        client.release(node)


# -- 9: an operator's hold ------------------------------------------------------------------------------------
def test_a_ready_node_held_by_an_operator_is_not_handed_out_and_is_deleted_when_its_hold_ends(
        zk, sim, start_launcher, gk):
    """Nodepool (`nodepool hold`: a node in the hold state is kept out of use; min-ready makes up for it; a hold
    past its expiration is deleted by cleanup, test_hold_expiration_*)."""
    start_launcher(pool_yaml({"debian": 1}, provider("prov-a", "alpha")), cleanup_interval=0.3)
    [held] = wait_for(lambda: ready_ids(zk), 30, "a ready node")
    code, _, err = gk("hold", held, "--reason", "looking into the image", "--hours", "1")
    assert code == 0, err
    wait_for(lambda: ready_ids(zk) and held not in ready_ids(zk), 30, "min-ready made up without it")
    client = NodeRequestClient(zk, "hold")
    [node] = take(client, ["debian"])
    assert node.id != held and node_records(zk)[held].state == model.HOLD
    client.release(node)
    # its hold shortened to a second: it ends, and the node is deleted with its server
    server = node_records(zk)[held].external_id
    code, _, err = gk("hold", held, "--reason", "done", "--hours", "0.0003", "--replace")
    assert code == 0, err
    wait_for(lambda: held not in node_records(zk), 30, "the node deleted once its hold ended")
    assert server not in {s.id for s in servers(sim, "alpha")}


# -- 10: one slot, three labels waiting -----------------------------------------------------------------------
def test_requests_of_three_labels_waiting_for_one_slot_are_served_by_priority(zk, sim, start_launcher):
    """Nodepool: requests are handled in order of priority, then of age, whatever their labels; a slot that frees
    goes to the best-priority request waiting."""
    labels = {"debian": "small", "fedora": "small", "centos": "small"}
    start_launcher(pool_yaml({label: 0 for label in labels}, provider("prov-a", "alpha", labels, max_servers=1)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "one slot")
    [node] = take(client, ["debian"])
    asked = {300: client.request(["fedora"], priority=300), 100: client.request(["centos"], priority=100),
             200: client.request(["debian"], priority=200)}
    considered(client)
    order: list[int] = []

    def newly_served() -> list[int]:
        return [p for p, r in asked.items() if p not in order and client.get(r).state == model.FULFILLED]
    while len(order) < 3:
        client.release(node)
        served = wait_for(newly_served, 30, "the next one served")
        assert len(served) == 1, served  # one server at a time
        order += served
        [node] = client.lock_nodes(client.get(asked[served[0]]))
    client.release(node)
    assert order == [100, 200, 300]
