"""Leaked-resource cleanup as Nodepool documents it: a provider deletes only the servers and images that name it
in their metadata, so two providers may share one cloud project. Real ZooKeeper and the OpenStack simulator over
HTTP, with image builds run over SSH."""

from __future__ import annotations

from gatekeeper.launcher import cleanup as cleanup_module
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.images import list_builds
from gatekeeper.launcher.model import META_BUILD, META_OWNER, ImageBuild
from gatekeeper.launcher.provider_manager import META_PROVIDER
from gatekeeper.sim.openstack.cloud import Image
from gatekeeper.zk.nodes import NodeStore
from tests.functional import test_launcher as base
from tests.functional.test_launcher import OWNER, pool_yaml
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def same_cloud_provider(name: str, label: str) -> str:
    return (f"    - name: {name}\n      driver: openstack\n      cloud: alpha\n"
            f"      boot-timeout: 15\n      pools:\n        - name: main\n"
            f"          labels: [{{name: {label}, image: deb, flavor: small}}]\n"
            "      images:\n        - name: deb\n          base-image: debian-12\n"
            "          prepare: |\n            echo warmed > \"$HOME/marker\"\n")


def test_two_providers_on_one_cloud_project_keep_each_others_images_and_servers(zk, sim, start_launcher,
                                                                                monkeypatch):
    passes = []
    original = cleanup_module.cleanup_provider

    def counted(launcher, manager) -> None:
        original(launcher, manager)
        passes.append(manager.name)
    monkeypatch.setattr(cleanup_module, "cleanup_provider", counted)
    sim.cloud("alpha").limits.max_instances = 4
    launcher = start_launcher(pool_yaml({"debian": 0, "fedora": 0}, same_cloud_provider("prov-a", "debian"),
                             same_cloud_provider("prov-b", "fedora")), cleanup_interval=0.3)
    ready = {}
    for provider in ("prov-a", "prov-b"):
        ready[provider] = wait_for(lambda p=provider: next(
            (b for b in list_builds(zk.client, "deb", p) if b.state == "ready"), None), 60, f"{provider}'s image")
    client = NodeRequestClient(zk, "shared")
    nodes = client.lock_nodes(client.wait(client.request(["fedora"]), 30))
    seen = len(passes)
    wait_for(lambda: passes.count("prov-a") >= seen // 2 + 3, 30, "three cleanups of prov-a after both built")
    images = sim.cloud("alpha").images
    assert ready["prov-a"].external_id in images and ready["prov-b"].external_id in images
    assert [b.state for b in list_builds(zk.client, "deb", "prov-b")] == ["ready"]
    [server] = [s for s in sim.cloud("alpha").list_servers() if s.id == nodes[0].external_id]
    assert server.status == "ACTIVE"  # prov-b's node, in use: not a leak to prov-a
    # and prov-a counts it against the cloud's limit as another's server, not as one of its own
    assert launcher.managers["prov-a"].capacity() == 3
    client.release(nodes[0])


def test_an_image_whose_build_started_during_a_cleanup_pass_is_not_taken_for_a_leak(zk, sim, start_launcher,
                                                                                    monkeypatch):
    cloud = sim.cloud("alpha")
    launcher = start_launcher(pool_yaml({"debian": 0}, same_cloud_provider("prov-a", "debian")))
    wait_for(lambda: any(b.state == "ready" for b in list_builds(zk.client, "deb", "prov-a")), 60, "deb built")
    manager = launcher.managers["prov-a"]
    listing = manager.adapter.list_images
    started = []

    def build_starts_meanwhile():
        # a build begins after the pass read the builds and before it lists the cloud's images: its record is
        # written, then its snapshot appears
        if not started:
            build = ImageBuild(id="9999999999999-late00", image="deb", provider="prov-a")
            NodeStore(zk).write_image_build(build)
            with cloud.lock:
                image = Image("late-snapshot", "gk-deb-late", properties={
                    META_OWNER: OWNER, META_BUILD: build.id, META_PROVIDER: "prov-a"})
                cloud.images[image.id] = image
            started.append(build)
        return listing()
    monkeypatch.setattr(manager.adapter, "list_images", build_starts_meanwhile)
    cleanup_module.cleanup_provider(launcher, manager)
    assert started and "late-snapshot" in cloud.images
