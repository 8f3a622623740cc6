"""Images as Nodepool documents them: a paused image is not built, and its ready build keeps serving. Real
ZooKeeper, the OpenStack simulator over HTTP, and prepare scripts run over SSH on template servers."""

from __future__ import annotations

from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.images import list_builds
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, servers
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def two_images(deb: str, fed: str) -> str:
    """prov-a with images deb (label debian) and fed (label fedora), each with a prepare script; `deb` and
    `fed` are extra lines for each image."""
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    return ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      max-servers: 4\n"
            "      boot-timeout: 15\n      pools:\n        - name: main\n"
            "          labels: [{name: debian, image: deb, flavor: small}, {name: fedora, image: fed, flavor: small}]\n"
            f"      images:\n        - name: deb\n          base-image: debian-12\n{deb}{prepare}"
            f"        - name: fed\n          base-image: debian-12\n{fed}{prepare}")


def builds(zk, image: str) -> list:
    return list_builds(zk.client, image, "prov-a")


def test_a_paused_image_is_not_built(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_images("          pause: true\n", "")),
                   image_check_interval=0.3)
    # the builder checks deb before fed: once fed is built, deb would have been too
    wait_for(lambda: any(b.state == "ready" for b in builds(zk, "fed")), 60, "fed built")
    assert builds(zk, "deb") == []
    assert not [s for s in servers(sim, "alpha") if s.name.startswith("gk-template-deb")]


def test_a_paused_images_ready_build_keeps_serving_past_its_rebuild_age(zk, sim, start_launcher):
    launcher = start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_images("", "")))
    first = wait_for(lambda: next((b for b in builds(zk, "deb") if b.state == "ready"), None), 60, "deb built")
    wait_for(lambda: any(b.state == "ready" for b in builds(zk, "fed")), 60, "fed built")
    launcher.stop()
    # restarted with deb paused: both images are due for a rebuild every 2 s, only fed is rebuilt
    due = "          rebuild-hours: 0.0005\n"
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_images("          pause: true\n" + due, due)),
                   image_check_interval=0.3)
    wait_for(lambda: len([b for b in builds(zk, "fed") if b.state == "ready"]) >= 3, 60, "fed rebuilt twice")
    assert [b.id for b in builds(zk, "deb")] == [first.id]
    client = NodeRequestClient(zk, "paused")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    assert node.image_build == first.id
    client.release(node)


def test_a_build_whose_prepare_script_outlasts_build_timeout_fails_and_its_template_is_deleted(
        zk, sim, start_launcher):
    # it keeps printing (a quiet-time limit would never fire) and never ends on its own
    hung = ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      max-servers: 2\n"
            "      pools:\n        - name: main\n          labels: [{name: debian, image: deb, flavor: small}]\n"
            "      images:\n        - name: deb\n          base-image: debian-12\n          build-timeout: 2\n"
            "          prepare: |\n            while true; do echo still going; sleep 0.2; done\n")
    start_launcher(pool_yaml({"debian": 0}, hung))
    failed = wait_for(lambda: next((b for b in builds(zk, "deb") if b.state == "failed"), None), 60,
                      "the build failed")
    assert "did not finish within 2s" in failed.reason and "still going" in failed.reason, failed.reason
    wait_for(lambda: not servers(sim, "alpha"), 30, "the template server deleted")


def test_an_image_removed_from_the_configuration_is_deleted_from_the_cloud(zk, sim, start_launcher):
    launcher = start_launcher(pool_yaml({"debian": 0, "fedora": 0}, two_images("", "")))
    deb = wait_for(lambda: next((b for b in builds(zk, "deb") if b.state == "ready"), None), 60, "deb built")
    fed = wait_for(lambda: next((b for b in builds(zk, "fed") if b.state == "ready"), None), 60, "fed built")
    launcher.stop()
    # restarted without fed (and its label): fed's upload goes, deb's stays
    only_deb = two_images("", "").split("        - name: fed\n")[0].replace(
        ", {name: fedora, image: fed, flavor: small}", "")
    start_launcher(pool_yaml({"debian": 0}, only_deb), cleanup_interval=0.3)
    wait_for(lambda: not builds(zk, "fed"), 30, "fed's build record removed")
    assert fed.external_id not in sim.cloud("alpha").images
    assert deb.external_id in sim.cloud("alpha").images and [b.id for b in builds(zk, "deb")] == [deb.id]
