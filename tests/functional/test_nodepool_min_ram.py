"""Nodepool's min-ram: a label boots the smallest of the cloud's flavors with at least that RAM, chosen from the
flavors openstacksdk lists over the wire. Real ZooKeeper and the OpenStack simulator over HTTP, with nodes that are
real SSH hosts."""

from __future__ import annotations

import dataclasses

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.images import list_builds
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, servers, use_and_release, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def provider(labels: str, image_extra: str = "") -> str:
    return ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      max-servers: 4\n"
            "      boot-timeout: 15\n      pools:\n        - name: main\n"
            f"          labels: [{labels}]\n"
            f"      images:\n        - name: deb\n          base-image: debian-12\n{image_extra}")


def test_a_label_with_min_ram_boots_the_smallest_flavor_with_that_much_ram(zk, sim, start_launcher):
    # the simulator's flavors: small 1024 MB, m1.small 2048, m1.medium and medium 4096, large and m1.large 8192
    start_launcher(pool_yaml({"roomy": 0, "big": 0}, provider(
        "{name: roomy, image: deb, min-ram: 3000, flavor-name: m1}, {name: big, image: deb, min-ram: 5000}")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "min-ram")
    use_and_release(client, client.request(["roomy", "big"]))
    assert sorted((s.metadata["gatekeeper-label"], s.flavor.name) for s in servers(sim, "alpha")) == [
        ("big", "large"), ("roomy", "m1.medium")]


def test_a_label_whose_min_ram_no_flavor_meets_fails_its_request_naming_label_and_provider(
        zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0, "huge": 0}, provider(
        "{name: debian, image: deb, flavor: small}, {name: huge, image: deb, min-ram: 100000, flavor-name: m1}")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "min-ram")
    req = client.wait(client.request(["huge"]), 30)
    assert req.state == model.REQUEST_FAILED and req.declined_by == ["prov-a"], req.reason
    assert req.reason == (
        'no provider can serve labels huge: declined by prov-a (provider prov-a: label "huge" (pool main): cloud '
        'alpha: no flavor whose name contains "m1" has at least 100000 MB of RAM (flavors: small (1024 MB), '
        "m1.small (2048 MB), m1.medium (4096 MB), medium (4096 MB), large (8192 MB), m1.large (8192 MB)))")
    assert not servers(sim, "alpha")  # nothing was tried
    use_and_release(client, client.request(["debian"]))  # the provider's other labels are served


def test_an_image_built_for_a_min_ram_label_boots_its_template_with_the_flavor_chosen(
        zk, sim, start_launcher, monkeypatch):
    cloud = sim.cloud("alpha")
    booted = []  # (server name, flavor name) of every create the cloud was asked for
    create = cloud.create_server

    def recording_create(name, image_id, flavor_id, *args, **kw):
        booted.append((name, cloud.flavors[str(flavor_id)].name))
        return create(name, image_id, flavor_id, *args, **kw)
    monkeypatch.setattr(cloud, "create_server", recording_create)
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    start_launcher(pool_yaml({"roomy": 0}, provider("{name: roomy, image: deb, min-ram: 3000}", prepare)))
    wait_for(lambda: any(b.state == "ready" for b in list_builds(zk.client, "deb", "prov-a")), what="a build")
    client = NodeRequestClient(zk, "min-ram")
    use_and_release(client, client.request(["roomy"]))
    assert [(name.split("-")[1], flavor) for name, flavor in booted] == [("template", "m1.medium"),
                                                                         ("roomy", "m1.medium")]


def test_a_label_no_flavor_fits_does_not_stop_an_image_shared_with_a_label_that_fits(zk, sim, start_launcher):
    """The template server boots with the flavor of a label that has one: the first label of the image, which
    has none, does not fail every build of it (and with it the other label's nodes)."""
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    start_launcher(pool_yaml({"huge": 0, "roomy": 0}, provider(
        "{name: huge, image: deb, min-ram: 100000}, {name: roomy, image: deb, min-ram: 3000}", prepare)))
    build = wait_for(lambda: next((b for b in list_builds(zk.client, "deb", "prov-a")
                                   if b.state in ("ready", "failed")), None), 120, "a settled build")
    assert build.state == "ready", build.reason
    client = NodeRequestClient(zk, "min-ram")
    use_and_release(client, client.request(["roomy"]))


def test_min_ready_of_a_label_one_providers_cloud_has_no_flavor_for_is_kept_by_the_other(zk, sim, start_launcher):
    """The provider first by name cannot launch the label (no flavor fits): it does not take the label's
    min-ready, which the other launcher's provider keeps (as it would if the first had no such label); once its
    cloud has such a flavor (seen at its next cleanup pass), it keeps the label's min-ready again."""
    def provider_with(name: str, cloud: str, min_ram: int) -> str:
        return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n      max-servers: 2\n"
                f"      boot-timeout: 15\n      pools:\n        - name: main\n"
                f"          labels: [{{name: roomy, image: deb, min-ram: {min_ram}}}]\n"
                f"      images:\n        - name: deb\n          base-image: debian-12\n")
    first = start_launcher(pool_yaml({"roomy": 1}, provider_with("prov-a", "alpha", 100000)), cleanup_interval=1.0)
    wait_live(zk, 1)
    start_launcher(pool_yaml({"roomy": 1}, provider_with("prov-b", "beta", 3000)))
    wait_live(zk, 2)
    wait_for(lambda: [s.flavor.name for s in servers(sim, "beta")] == ["m1.medium"], 60,
             "prov-b to launch the label's min-ready node")
    assert not servers(sim, "alpha")
    alpha = sim.cloud("alpha")
    with alpha.lock:  # the operator adds a flavor big enough
        alpha.flavors["xxl"] = dataclasses.replace(next(iter(alpha.flavors.values())), id="xxl", name="xxl",
                                                   ram=131072)
    # prov-a's next cleanup pass reads the flavors again
    wait_for(lambda: not first.managers["prov-a"].unlaunchable(["roomy"]), 30, "prov-a to find a flavor for the label")
    client = NodeRequestClient(zk, "min-ram")
    use_and_release(client, client.request(["roomy"]))  # takes prov-b's ready node: min-ready makes up one
    wait_for(lambda: [s.flavor.name for s in servers(sim, "alpha")] == ["xxl"], 60,
             "prov-a, first by name, to keep the label's min-ready again")


def test_a_flavor_made_again_with_a_new_id_is_looked_up_afresh_after_novas_400(zk, sim, start_launcher):
    """As Nodepool clears its flavor cache on a 400 from Nova: the flavor's old id fails one boot, the next boot
    of the request finds the new one."""
    start_launcher(pool_yaml({"plain": 0}, provider("{name: plain, image: deb, flavor: m1.medium}")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "flavors")
    use_and_release(client, client.request(["plain"]))
    cloud = sim.cloud("alpha")
    with cloud.lock:  # the operator deletes the flavor and makes it again: same name, new id
        old = next(f for f in cloud.flavors.values() if f.name == "m1.medium")
        del cloud.flavors[old.id]
        cloud.flavors["m1-medium-again"] = dataclasses.replace(old, id="m1-medium-again")
    req = client.wait(client.request(["plain"]), 60)
    assert req.state == model.FULFILLED, req.reason
    assert servers(sim, "alpha")[-1].flavor.id == "m1-medium-again"
    for node in client.lock_nodes(req):
        client.release(node)
