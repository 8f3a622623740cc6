"""Cleanup works from ZooKeeper's records and the cloud's server list, and unreadable records stop nothing:
real ZooKeeper and the OpenStack simulator over HTTP."""

from __future__ import annotations

import threading

import pytest

from gatekeeper.launcher import model
from gatekeeper.launcher.cleanup import cleanup_provider
from gatekeeper.launcher.client import NodeRequestClient, NodeRequestError
from gatekeeper.zk import paths
from gatekeeper.zk.nodes import UNREADABLE, NodeStore
from tests.functional import test_launcher as base
from tests.functional.test_launcher import (
    node_records,
    pool_yaml,
    provider_yaml,
    ready_ids,
    servers,
    wait_live,
)
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def test_node_whose_cloud_delete_keeps_failing_is_retried_until_gone(zk, sim, start_launcher):
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")),
                              delete_verify_timeout=0.4, cleanup_interval=0.5)
    client = NodeRequestClient(zk, "stubborn")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    alpha = sim.cloud("alpha")
    alpha.set_faults(delete_ignored=-1)
    client.release(node)
    # the launcher's own delete gives up; the record says so and the server is still there
    wait_for(lambda: node_records(zk).get(node.id) is not None
             and node_records(zk)[node.id].state == model.DELETING, what="node marked deleting")
    wait_for(lambda: not launcher.managers["prov-a"].deleting, 20, "the launcher's delete given up")
    assert node.external_id in {s.id for s in servers(sim, "alpha")}
    alpha.set_faults(delete_ignored=0)
    wait_for(lambda: node.id not in node_records(zk), 30, "cleanup retried the delete")
    assert not servers(sim, "alpha")


def test_server_whose_record_is_gone_is_deleted_and_record_whose_server_is_gone_removed(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.5)
    wait_for(lambda: len(ready_ids(zk)) == 2, what="two ready nodes")
    first, second = sorted(ready_ids(zk))
    records = node_records(zk)
    # one record is deleted behind the launcher's back (its cache still has it); one server vanishes in the cloud
    zk.client.delete(paths.node(first), recursive=True)
    for entry in zk.client.get_children(paths.ready_node("debian")):
        if entry.endswith(first):
            zk.client.delete(paths.ready_node("debian", entry))
    sim.cloud("alpha").delete_server(records[second].external_id)
    wait_for(lambda: records[first].external_id not in {s.id for s in servers(sim, "alpha")}, 30,
             "the server without a record deleted")
    wait_for(lambda: second not in node_records(zk), 30, "the record without a server removed")
    assert second not in ready_ids(zk)
    # min-ready is restored with fresh nodes whose servers exist
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready restored")
    live = {s.id for s in servers(sim, "alpha")}
    assert {node_records(zk)[n].external_id for n in ready_ids(zk)} <= live


def test_unreadable_records_stop_no_thread_and_are_set_aside(zk, sim, start_launcher):
    zk.client.ensure_path(paths.NODES)
    zk.client.create(paths.node("emptyrecord"), b"")
    zk.client.create(paths.node("notjson"), b"\x00{garbage")
    zk.client.create(f"{paths.NODE_REQUESTS}/000100-9999999999", b"[1, 2]", makepath=True)
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.5)
    wait_live(zk, 1)
    wait_for(lambda: len(ready_ids(zk)) == 1, what="a ready node despite the garbage")
    client = NodeRequestClient(zk, "after-garbage")
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.FULFILLED
    # garbage written while it runs is set aside too, and cleanup goes on working
    zk.client.create(paths.node("latergarbage"), b"{\"state\": ")
    wait_for(lambda: not {"emptyrecord", "notjson", "latergarbage"} & set(zk.client.get_children(paths.NODES))
             and "000100-9999999999" not in zk.client.get_children(paths.NODE_REQUESTS),
             30, "unreadable records set aside")
    aside = zk.client.get_children(UNREADABLE)
    assert sorted(name.rsplit("-", 1)[0] for name in aside) == [
        "node-emptyrecord", "node-latergarbage", "node-notjson", "request-000100-9999999999"]
    [node] = client.lock_nodes(req)
    client.release(node)
    wait_for(lambda: node.id not in node_records(zk), 30, "the used node deleted")
    assert node.external_id not in {s.id for s in servers(sim, "alpha")}


def test_operator_commands_skip_unreadable_records_without_a_traceback(zk, zk_server, zk_chroot, tmp_path):
    import json
    import subprocess
    import sys

    import yaml

    from gatekeeper.zk.nodes import NodeStore

    good = model.Node(id="goodnode0001", provider="prov-a", label="debian", state=model.READY)
    store = NodeStore(zk)
    store.ensure_paths()
    assert store.create_node(good)
    zk.client.create(paths.node("garbage"), b"\xff not json")
    cfg = tmp_path / "gk.yaml"
    cfg.write_text(yaml.safe_dump({"zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot}}))
    for args in (["nodes", "--json"], ["nodes"], ["providers", "--json"]):
        res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *args, "-c", str(cfg)], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        if args == ["nodes", "--json"]:
            assert [n["id"] for n in json.loads(res.stdout)] == ["goodnode0001"]
            assert "/nodepool/nodes/garbage holds an unreadable record" in res.stderr


def test_taken_node_is_locked_to_its_consumer_and_deleted_when_that_consumer_is_gone(zk, zk_factory, sim,
                                                                                     start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.5)
    consumer_zk = zk_factory()
    first = NodeRequestClient(consumer_zk, "first")
    req = first.wait(first.request(["debian"]), 30)
    [node] = first.lock_nodes(req)
    assert NodeStore(zk).is_locked(node.id) and node_records(zk)[node.id].state == model.IN_USE
    # the lock was made with the take: another consumer cannot take the same node
    with pytest.raises(NodeRequestError, match="locked by someone else"):
        NodeRequestClient(zk, "second").lock_nodes(req)
    # the lock is the consumer's session's: when that session ends, cleanup deletes the abandoned node
    consumer_zk.stop()
    wait_for(lambda: not NodeStore(zk).is_locked(node.id), 30, "the lock gone with its session")
    wait_for(lambda: node.id not in node_records(zk), 30, "the abandoned node deleted")
    assert node.external_id not in {s.id for s in servers(sim, "alpha")}


def test_a_node_released_as_held_while_cleanup_scans_it_in_use_keeps_its_hold(zk, zk_factory, sim, start_launcher):
    """Cleanup read the node in use; its consumer then released it as held (state and lock in one transaction)
    before cleanup looked at the lock. The delete cleanup posted must see the fresh record and leave the hold."""
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")))  # no periodic pass
    client = NodeRequestClient(zk_factory(), "holder")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    real_is_locked = launcher.store.is_locked
    released = []

    def is_locked(node_id: str) -> bool:
        if node_id == node.id and not released:  # the release lands just after the scan read "in use"
            client.release(node, held=True, reason="the build failed", hold_hours=1)
            released.append(node_id)
        return real_is_locked(node_id)

    launcher.store.is_locked = is_locked
    cleanup_provider(launcher, launcher.managers["prov-a"])
    assert released, "the scan never looked at the in-use node's lock"
    done = threading.Event()
    launcher.post(done.set)  # the loop runs what cleanup posted before this
    assert done.wait(10)
    record = node_records(zk).get(node.id)
    assert record is not None and record.state == model.HOLD and record.hold_reason == "the build failed"
    assert node.external_id in {s.id for s in servers(sim, "alpha")}


def test_the_template_server_of_a_build_started_while_cleanup_reads_is_not_taken_for_leaked(
        zk, sim, start_launcher):
    """A build started after cleanup read the builds, its template server created before cleanup listed the
    servers: the template is the build's, not a leak (cleanup reads the builds again after the listing, as the
    build's record is written before its server is created)."""
    from gatekeeper.launcher.model import META_BUILD, ImageBuild
    from gatekeeper.launcher.provider_manager import META_PROVIDER

    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")))  # no periodic pass
    manager = launcher.managers["prov-a"]
    wait_for(lambda: manager.active, 30, "prov-a active")
    real_poll, real_builds, started, read = manager.adapter.poll, launcher.store.image_builds, [], []

    def image_builds(*args):
        read.append(args)
        return real_builds(*args)

    def poll():
        if read and not started:  # the builder starts a build between cleanup's read of the builds and its listing
            build = ImageBuild(id="0000000000001-abcdef", image="deb", provider="prov-a")
            launcher.store.write_image_build(build)
            started.append(manager.adapter.create("gk-template-deb-abcdef", "debian-12", "small",
                                                  {META_BUILD: build.id, META_PROVIDER: "prov-a"}))
        return real_poll()

    manager.adapter.poll, launcher.store.image_builds = poll, image_builds
    cleanup_provider(launcher, manager)
    done = threading.Event()
    launcher.post(done.set)  # (the loop runs what cleanup posted before this)
    assert done.wait(10) and started
    assert started[0] in {s.id for s in servers(sim, "alpha")}, "the template server was deleted as leaked"
