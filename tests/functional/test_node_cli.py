"""The node-pool operator commands as Nodepool's CLI has them: `nodes` (Nodepool's list, with server id and
lock, and --detail), `providers info` and `providers erase`. Run as operators run them (a process of their own)
against a real launcher, ZooKeeper and the OpenStack simulator."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.zk import paths
from gatekeeper.zk.nodes import NodeStore
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, pool_yaml, provider_yaml, ready_ids, wait_live
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


@pytest.fixture
def gk(zk_server, zk_chroot, tmp_path):
    cfg = tmp_path / "gk.yaml"
    cfg.write_text(yaml.safe_dump({"zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot}}))

    def run(*args: str, answer: str = "") -> tuple[int, str, str]:
        res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *args, "-c", str(cfg)], input=answer,
                             capture_output=True, text=True, timeout=60)
        assert "Traceback" not in res.stderr, res.stderr
        return res.returncode, res.stdout, res.stderr
    return run


def test_nodes_lists_server_id_and_lock_and_detail(zk, sim, start_launcher, gk):
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha")))
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready nodes")
    client = NodeRequestClient(zk, "cli-test")
    req = client.wait(client.request(["debian"]), 30)
    [taken] = client.lock_nodes(req)

    code, out, _ = gk("nodes", "--json")
    listed = {n["id"]: n for n in json.loads(out)}
    assert code == 0 and listed[taken.id]["locked"] is True and listed[taken.id]["state"] == model.IN_USE
    assert not any(n["locked"] for i, n in listed.items() if i != taken.id)  # the other (and its replacement)
    code, out, _ = gk("nodes")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "server id" in out.splitlines()[0] and "locked" in out.splitlines()[0]
    assert taken.external_id in lines[taken.id] and " in-use " in lines[taken.id]
    assert lines[taken.id].split()[7] == "yes"  # id provider label server address state age locked
    assert all(line.split()[7] == "no" for i, line in lines.items() if i != taken.id)
    code, out, _ = gk("nodes", "--detail")
    assert code == 0 and f"main / - / {taken.username} / " in out and f" / {req.id} / " in out
    client.release(taken)


def test_request_list_shows_priority_nodes_and_who_declined(zk, sim, start_launcher, gk):
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")))
    wait_for(lambda: len(ready_ids(zk)) == 1, 30, "a ready node")
    client = NodeRequestClient(zk, "request-list")
    served = client.wait(client.request(["debian"], priority=250), 30)
    refused = client.wait(client.request(["no-such-label"]), 30)
    assert served.state == model.FULFILLED and refused.state == model.REQUEST_FAILED
    code, out, _ = gk("request-list")  # Nodepool's name for `requests`
    header, *rows = out.splitlines()
    assert code == 0 and gk("requests")[1].splitlines()[0] == header
    assert ["priority", "nodes", "declined"] == [w for w in header.split() if w in ("priority", "nodes", "declined")]
    rows = {row.split()[0]: row.split() for row in rows}
    assert rows[served.id][1:3] == ["fulfilled", "250"] and rows[served.id][6] == served.nodes[0]
    assert rows[refused.id][1:3] == ["failed", "100"] and rows[refused.id][7] == "prov-a"
    for names in ("image-list", "dib-image-list"):  # Nodepool's names for `images`
        code, out, _ = gk(names)
        assert code == 0 and out.startswith("image ")


def test_providers_info_shows_and_erase_removes_a_gone_providers_data(zk, sim, start_launcher, gk):
    launcher = start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha")))
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready nodes")
    client = NodeRequestClient(zk, "still-building")
    [taken] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    idle = wait_for(lambda: next(iter(ready_ids(zk) - {taken.id}), None), 30, "an idle ready node")
    store = NodeStore(zk)
    # building: the launcher's cleanup would delete a ready build of an image its provider no longer has
    store.write_image_build(model.ImageBuild(id="0000000007", image="old-image", provider="prov-a",
                                             state=model.BUILDING, external_id="img-7"))

    code, out, _ = gk("providers", "info", "prov-a", "--json")
    info = json.loads(out)
    assert code == 0 and info["live"] is True
    assert info["image_builds"]["old-image"][0]["id"] == "0000000007"
    locks = {n["id"]: n["locked"] for n in info["nodes"]}
    assert (locks[taken.id], locks[idle]) == (True, False)
    code, out, _ = gk("providers", "info", "prov-a")
    assert "old-image" in out and "0000000007" in out and taken.external_id in out

    # a provider a launcher serves is never erased
    code, _, err = gk("providers", "erase", "prov-a", "--force")
    assert code == 1 and "served by a running launcher" in err
    assert idle in node_records(zk)

    launcher.stop()  # the provider leaves the layout: its launcher no longer serves it
    wait_live(zk, 0)
    code, out, _ = gk("providers", "erase", "prov-a", answer="n\n")
    assert code == 1 and "Erase provider prov-a's data" in out and "not erased" in out
    assert idle in node_records(zk)
    code, out, err = gk("providers", "erase", "prov-a", answer="y\n")
    assert code == 0, err
    assert "erased 1 image build and" in out and "1 in use left" in out
    records = node_records(zk)
    assert idle not in records and taken.id in records  # the node a build holds is left to its consumer
    assert not ready_ids(zk) and store.image_builds("old-image", "prov-a") == []
    assert not zk.client.exists(paths.provider_health("prov-a"))
    code, out, _ = gk("providers", "info", "prov-a", "--json")
    assert [n["id"] for n in json.loads(out)["nodes"]] == [taken.id]


def test_erase_refuses_a_provider_of_the_published_layout_and_leaves_nodes_given_to_consumers(
        zk, zk_factory, sim, start_launcher, gk):
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.config.store import publish_layout

    section = pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha"))
    publish_layout(zk, parse_layout({"nodepool.yaml": section}))
    launcher = start_launcher(section)
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready nodes")
    client = NodeRequestClient(zk, "fulfilled-not-locked")
    [allocated] = client.wait(client.request(["debian"]), 30).nodes
    crashed = NodeRequestClient(zk_factory(), "crashed-consumer")
    [in_use] = crashed.lock_nodes(crashed.wait(crashed.request(["debian"]), 30))
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready refilled")
    idle = ready_ids(zk)
    launcher.stop()  # down or restarting: the provider is still the layout's
    wait_live(zk, 0)
    crashed.zk.stop()  # its lock went with its session: the node is in use and unlocked

    code, _, err = gk("providers", "erase", "prov-a", "--force")
    assert (code, err.strip()) == (1, "gatekeeper providers erase: provider prov-a is in the published layout, so "
                                      "its launchers serve it (or will when they run again): remove it from the "
                                      "layout before erasing its data")
    assert idle | {allocated, in_use.id} <= set(node_records(zk)) and ready_ids(zk) == idle

    publish_layout(zk, parse_layout({"nodepool.yaml": pool_yaml({"debian": 0}, provider_yaml("prov-b", "beta"))}))
    code, out, err = gk("providers", "erase", "prov-a", "--force")
    assert code == 0, err
    assert out.strip() == ("provider prov-a: erased 0 image builds and 2 nodes; 2 in use left (erase again once "
                           "released)")
    records = node_records(zk)
    assert not idle & set(records) and not ready_ids(zk)
    assert (records[allocated].state, records[in_use.id].state) == (model.ALLOCATED, model.IN_USE)
    assert not NodeStore(zk).is_locked(in_use.id)


def test_erase_refuses_while_the_published_layout_cannot_be_read(zk, gk):
    from gatekeeper.zk.sharding import write_sharded

    # a layout this command cannot parse (say, one a newer scheduler published) may still have the provider
    files = {"nodepool.yaml": "nodepool: {providers: [{name: prov-a, driver: k8s}]}"}
    write_sharded(zk.client, paths.LAYOUT, json.dumps({"files": files}).encode())
    store = NodeStore(zk)
    store.ensure_paths(["debian"])
    orphan = model.Node(id="0000000042", provider="prov-a", label="debian", state=model.READY)
    assert store.create_node(orphan)
    code, _, err = gk("providers", "erase", "prov-a", "--force")
    assert (code, err.strip()) == (1, "gatekeeper providers erase: the published layout cannot be read "
                                      "(nodepool.yaml:1: nodepool.providers[0] (prov-a).driver: unknown driver "
                                      "(expected openstack or static)), so whether it still has provider prov-a "
                                      "is unknown: nothing is erased")
    assert orphan.id in node_records(zk)


def test_image_build_of_a_paused_image_is_refused_where_it_is_paused(zk, gk):
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.config.store import publish_layout

    paused = provider_yaml("prov-b", "beta", image_extra="          prepare: echo hi\n          pause: true\n")
    publish_layout(zk, parse_layout({"nodepool.yaml": pool_yaml(
        {"debian": 0}, provider_yaml("prov-a", "alpha", image_extra="          prepare: echo hi\n"), paused)}))
    store = NodeStore(zk)
    for provider in ("prov-a", "prov-b"):
        store.write_image_build(model.ImageBuild(id="0000000001", image="deb", provider=provider,
                                                 state=model.READY, external_id="img-1"))
    code, _, err = gk("image-build", "deb", "--provider", "prov-b")
    assert code == 1 and err.strip() == ("image deb is paused on prov-b: no build is made there (unpause it in the "
                                         "layout first)")
    assert store.image_build_requested("deb", "prov-b") == 0
    code, out, err = gk("image-build", "deb")
    assert code == 0, err
    assert out.strip() == "image deb: a new build was asked for on prov-a (paused on prov-b: not built there)"
    assert store.image_build_requested("deb", "prov-a") > 0
    code, out, err = gk("image-delete", "deb", "--provider", "prov-a", "--build-id", "0000000001")  # Nodepool's
    assert code == 0, err
    assert [b.state for b in store.image_builds("deb", "prov-a")] == [model.IMAGE_DELETING]


def test_delete_now_returns_once_the_node_and_its_server_are_gone(zk, sim, start_launcher, gk):
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")))
    node_id = wait_for(lambda: next(iter(ready_ids(zk)), None), 30, "a ready node")
    server = node_records(zk)[node_id].external_id
    sim.cloud("alpha").set_faults(delete_delay=3.0)  # a cloud slow to delete: the command waits it out
    code, out, err = gk("delete-node", node_id, "--now")
    assert (code, out.splitlines()[-1]) == (0, f"node {node_id}: deleted"), err
    assert node_id not in node_records(zk)  # at once: the command waited for it
    assert server not in {s.id for s in base.servers(sim, "alpha")}

    orphan = model.Node(id="0000000099", provider="prov-gone", label="debian", state=model.HOLD)
    assert NodeStore(zk).create_node(orphan)
    code, _, err = gk("delete-node", orphan.id, "--now", "--timeout", "5")
    assert code == 1 and err.strip() == ("node 0000000099: no launcher serves provider prov-gone now; the node is "
                                         "deleted when one does")
