"""The launcher routes around a broken cloud, obeys operators' drains, never wedges, and keeps the pool's shape:
real ZooKeeper, the OpenStack simulator over HTTP, the `gatekeeper` CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.metrics.prometheus import render
from gatekeeper.metrics.providers import provider_metrics
from gatekeeper.zk import paths
from gatekeeper.zk.nodes import NodeStore, providers_status
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


@pytest.fixture
def gk(zk_server, zk_chroot, tmp_path):
    """Run `gatekeeper <args>` against the test's ZooKeeper chroot; returns (exit status, stdout, stderr)."""
    cfg = tmp_path / "gk.yaml"
    cfg.write_text(yaml.safe_dump({"zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot}}))

    def run(*args: str) -> tuple[int, str, str]:
        res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *args, "-c", str(cfg)],
                             capture_output=True, text=True, timeout=60)
        return res.returncode, res.stdout, res.stderr

    return run


def status_of(zk, name: str) -> dict:
    return next((s for s in providers_status(zk) if s["name"] == name), {})


def two_labels_yaml(labels: dict[str, tuple[int, float]], max_servers: int = 1, name: str = "prov-a",
                    cloud: str = "alpha") -> str:
    label_list = "\n".join(f"    - {{name: {n}, min-ready: {m}, max-ready-age: {age}}}"
                           for n, (m, age) in labels.items())
    pool_labels = ", ".join(f"{{name: {n}, image: deb, flavor: small}}" for n in labels)
    return (f"nodepool:\n  labels:\n{label_list}\n  providers:\n"
            f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n      max-servers: {max_servers}\n"
            f"      pools:\n        - name: main\n          labels: [{pool_labels}]\n"
            f"      images:\n        - name: deb\n          base-image: debian-12\n")


# -- provider health ------------------------------------------------------------------------------------------
def test_failing_provider_backs_off_min_ready_fills_from_the_healthy_one_and_a_probe_heals_it(
        zk, sim, start_launcher, gk):
    alpha = sim.cloud("alpha")
    alpha.set_faults(boot_errors=-1, boot_error_message="No valid host was found.")
    # prov-a has the most free slots: the launcher would keep choosing it if it did not back off
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha", max_servers=8),
                             provider_yaml("prov-b", "beta", max_servers=4)), backoff=(1.5, 3.0))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "health")
    first = [client.wait(r, 30) for r in [client.request(["debian"]) for _ in range(2)]]
    assert all(r.state == model.FULFILLED and r.provider == "prov-b" for r in first)
    in_use = [n for r in first for n in client.lock_nodes(r)]
    # min-ready needs two more: prov-a is tried, fails, backs off, and prov-b fills min-ready meanwhile
    wait_for(lambda: status_of(zk, "prov-a").get("state") in ("backing-off", "probing"), what="prov-a backing off")
    wait_for(lambda: len(ready_ids(zk)) == 2, what="min-ready refilled")
    assert {node_records(zk)[n].provider for n in ready_ids(zk)} == {"prov-b"}
    assert len(servers(sim, "beta")) == 4 and not servers(sim, "alpha")

    # prov-b is full now: the next request takes a ready node and min-ready can only launch on prov-a
    req = client.wait(client.request(["debian"]), 30)
    assert req.state == model.FULFILLED and req.provider == "prov-b"
    in_use += client.lock_nodes(req)
    # the failing cloud is not hammered: one probe per backoff (1.5 s, then 3 s, capped), not a boot per pass
    started = len(alpha.created_server_ids)
    time.sleep(6.0)  # the length of the observation, not a synchronisation: count the boots within it
    assert 1 <= len(alpha.created_server_ids) - started <= 4, alpha.created_server_ids
    assert started <= 8

    wait_for(lambda: status_of(zk, "prov-b").get("boot_p50_s"), 20, "boot times published")
    status, out, err = gk("providers", "--json")
    assert status == 0, err
    shown = {row["name"]: row for row in json.loads(out)}
    assert shown["prov-a"]["state"] in ("backing-off", "probing") and shown["prov-a"]["error_rate"] == 1.0
    assert shown["prov-a"]["consecutive_failures"] >= 3 and "No valid host" in shown["prov-a"]["last_error"]
    assert shown["prov-b"]["state"] == "healthy" and shown["prov-b"]["boot_p50_s"] > 0
    status, out, _ = gk("providers")
    assert status == 0 and "prov-a" in out and "No valid host" in out and "prov-b" in out
    metrics = render(provider_metrics(providers_status(zk)))
    assert 'gatekeeper_provider_boot_error_rate{provider="prov-a"} 1' in metrics
    assert 'gatekeeper_provider_state{provider="prov-b",state="healthy"} 1' in metrics

    # the cloud recovers: the next probe boots, the provider is healthy again and min-ready fills there
    alpha.set_faults(boot_errors=0)
    wait_for(lambda: status_of(zk, "prov-a").get("state") == "healthy", 30, "prov-a healthy after a probe")
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready refilled")
    assert "prov-a" in {node_records(zk)[n].provider for n in ready_ids(zk)}
    assert servers(sim, "alpha")
    for node in in_use:
        client.release(node)


def test_a_provider_whose_last_boot_failed_boots_one_server_at_a_time(zk, sim, start_launcher):
    alpha = sim.cloud("alpha")
    alpha.set_faults(boot_errors=-1, boot_error_message="No valid host was found.")
    # prov-a has the most room, so it is chosen first; one attempt each, so a failed boot is declined at once
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=8, attempts=1),
                             provider_yaml("prov-b", "beta", max_servers=8)), backoff=(60.0, 60.0))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "one-at-a-time")
    first = client.wait(client.request(["debian"]), 30)
    assert first.state == model.FULFILLED and first.provider == "prov-b"
    assert len(alpha.created_server_ids) == 1
    # a burst while prov-a's last boot failed: it gets one boot at a time until it opens its breaker (3 in a
    # row), not one for every request the burst brought; prov-b serves them all
    burst = [client.wait(r, 30) for r in [client.request(["debian"]) for _ in range(6)]]
    assert all(r.state == model.FULFILLED and r.provider == "prov-b" for r in burst), burst
    assert len(alpha.created_server_ids) <= 3, alpha.created_server_ids
    wait_for(lambda: status_of(zk, "prov-a").get("state") in ("backing-off", "healthy"), what="prov-a published")
    for node in [n for r in [first, *burst] for n in client.lock_nodes(r)]:
        client.release(node)


def test_min_ready_owned_by_another_launchers_failing_provider_is_kept_by_the_healthy_one(zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(boot_errors=-1, boot_error_message="No valid host was found.")
    # prov-a sorts first, so its launcher owns the label's min-ready; its cloud fails every boot
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha")), backoff=(30.0, 60.0))
    wait_live(zk, 1)
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-b", "beta")))
    wait_live(zk, 2)
    wait_for(lambda: status_of(zk, "prov-a").get("state") == "backing-off", what="prov-a backing off")
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready kept by the other launcher's provider")
    assert {node_records(zk)[n].provider for n in ready_ids(zk)} == {"prov-b"}
    assert len(servers(sim, "beta")) == 2 and not servers(sim, "alpha")


def test_quota_refusals_do_not_open_the_breaker(zk, sim, start_launcher):
    cloud = sim.cloud("alpha")
    cloud.limits.max_instances = 1
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=5)),
                              backoff=(30.0, 60.0))
    wait_live(zk, 1)
    cloud.create_server("someone-else", "debian-12", "small", None, {})  # the cloud is full behind our back
    client = NodeRequestClient(zk, "quota")
    rid = client.request(["debian"])
    wait_for(lambda: launcher.managers["prov-a"].capacity() == 0, what="limits refreshed after a quota refusal")
    cloud.limits.max_instances = 2
    launcher.managers["prov-a"].refresh_limits()
    launcher.wake()
    req = client.wait(rid, 30)
    assert req.state == model.FULFILLED
    wait_for(lambda: status_of(zk, "prov-a").get("recent_boots") == 1, what="health published")
    health = status_of(zk, "prov-a")
    assert health["state"] == "healthy" and health["consecutive_failures"] == 0 and health["error_rate"] == 0


def test_operator_drains_and_undrains_a_provider(zk, sim, start_launcher, gk):
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha", max_servers=4),
                             provider_yaml("prov-b", "beta", max_servers=4)))
    wait_live(zk, 2)
    wait_for(lambda: len(ready_ids(zk)) == 2, what="min-ready")
    holders = {node_records(zk)[n].provider for n in ready_ids(zk)}
    drained = sorted(holders)[0]
    other = "prov-b" if drained == "prov-a" else "prov-a"
    clouds = {"prov-a": sim.cloud("alpha"), "prov-b": sim.cloud("beta")}

    status, out, err = gk("drain", drained, "--reason", "cloud maintenance")
    assert status == 0, err
    # its idle ready nodes go, min-ready comes back from the other one, and nothing is launched on it
    wait_for(lambda: not clouds[drained].list_servers(), what="the drained provider's ready nodes deleted")
    wait_for(lambda: len(ready_ids(zk)) == 2 and {node_records(zk)[n].provider for n in ready_ids(zk)} == {other},
             what="min-ready from the other provider")
    created = len(clouds[drained].created_server_ids)
    client = NodeRequestClient(zk, "drain")
    reqs = [client.wait(r, 30) for r in [client.request(["debian"]) for _ in range(3)]]
    assert all(r.state == model.FULFILLED and r.provider == other for r in reqs)
    assert len(clouds[drained].created_server_ids) == created
    shown = {row["name"]: row for row in json.loads(gk("providers", "--json")[1])}
    assert shown[drained]["drained"] and shown[drained]["drain_reason"] == "cloud maintenance"
    assert not shown[other]["drained"]
    assert "cloud maintenance" in gk("providers")[1]

    status, _, err = gk("drain", "prov-x")
    assert status == 1 and "no provider named 'prov-x'" in err and "prov-a" in err and "Traceback" not in err

    assert gk("undrain", drained)[0] == 0
    assert not NodeStore(zk).provider_state(drained).drained
    # a request naming it is launched there again
    req = client.wait(client.request(["debian"], provider=drained), 30)
    assert req.state == model.FULFILLED and req.provider == drained
    assert node_records(zk)[req.nodes[0]].external_id in {s.id for s in clouds[drained].list_servers()}


def test_request_naming_a_provider_is_served_there_while_it_can(zk, sim, start_launcher, gk):
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha"), provider_yaml("prov-b", "beta")))
    wait_live(zk, 2)
    ready = wait_for(lambda: next(iter(ready_ids(zk)), None), what="a ready node")
    holder = node_records(zk)[ready].provider
    named = "prov-b" if holder == "prov-a" else "prov-a"
    client = NodeRequestClient(zk, "named")
    req = client.wait(client.request(["debian"], provider=named), 30)
    assert req.state == model.FULFILLED and req.provider == named
    cloud = sim.cloud("beta" if named == "prov-b" else "alpha")
    assert node_records(zk)[req.nodes[0]].external_id in {s.id for s in cloud.list_servers()}
    assert ready_ids(zk) == {ready}  # the other provider's ready node was not taken
    # a preference, as in Nodepool: a provider that does not run is no reason to fail the request
    elsewhere = client.wait(client.request(["debian"], provider="prov-z"), 30)
    assert elsewhere.state == model.FULFILLED and elsewhere.provider in ("prov-a", "prov-b")
    # nor is a named provider that cannot launch now: the other one serves the request
    assert gk("drain", named, "--reason", "maintenance")[0] == 0
    wait_for(lambda: all(node_records(zk)[n].provider != named for n in ready_ids(zk)),
             what="the drained provider's ready nodes deleted")
    other = client.wait(client.request(["debian"], provider=named), 30)
    assert other.state == model.FULFILLED and other.provider == holder


# -- the pool's shape -----------------------------------------------------------------------------------------
def test_request_at_max_servers_deletes_the_oldest_idle_ready_node_of_another_label(zk, sim, start_launcher):
    start_launcher(two_labels_yaml({"label1": (1, 0), "label2": (0, 0)}, max_servers=1))
    idle = wait_for(lambda: next(iter(ready_ids(zk, "label1")), None), what="a ready label1 node")
    idle_server = node_records(zk)[idle].external_id
    client = NodeRequestClient(zk, "wedge")
    req = client.wait(client.request(["label2"]), 60)
    assert req.state == model.FULFILLED
    [node] = client.lock_nodes(req)
    assert node.label == "label2"
    assert idle not in node_records(zk)
    assert {s.id for s in servers(sim, "alpha")} == {node.external_id} and idle_server != node.external_id
    client.release(node)


def test_nodes_come_back_in_the_requested_order(zk, sim, start_launcher):
    start_launcher(two_labels_yaml({"l1": (1, 0), "l2": (2, 0)}, max_servers=6))
    wait_for(lambda: len(ready_ids(zk, "l1")) == 1 and len(ready_ids(zk, "l2")) == 2, what="ready l1, l2, l2")
    client = NodeRequestClient(zk, "order")
    from_ready = client.wait(client.request(["l2", "l1", "l2"]), 30)
    assert [node_records(zk)[n].label for n in from_ready.nodes] == ["l2", "l1", "l2"]
    # launched (ready ones are in use): the order holds too, whichever boot ends first
    launched = client.wait(client.request(["l1", "l2", "l1"]), 60)
    records = node_records(zk)
    assert [records[n].label for n in launched.nodes] == ["l1", "l2", "l1"]
    assert all(records[n].external_id in {s.id for s in servers(sim, "alpha")} for n in launched.nodes)


def test_ready_node_older_than_max_ready_age_is_replaced(zk, sim, start_launcher):
    start_launcher(two_labels_yaml({"debian": (1, 2)}, max_servers=3))
    first = wait_for(lambda: next(iter(ready_ids(zk)), None), what="a ready node")
    first_server = node_records(zk)[first].external_id
    wait_for(lambda: first not in node_records(zk), 20, "the old ready node deleted")
    assert first_server in sim.cloud("alpha").deleted_server_ids
    wait_for(lambda: len(ready_ids(zk)) == 1 and first not in ready_ids(zk), 20, "a fresh ready node")


def test_provider_priority_picks_the_preferred_provider_even_with_less_room(zk, sim, start_launcher):
    preferred = provider_yaml("prov-a", "alpha", max_servers=2, extra="      priority: 1\n")
    start_launcher(pool_yaml({"debian": 0}, preferred, provider_yaml("prov-b", "beta", max_servers=8)))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "priority")
    reqs = [client.wait(r, 30) for r in [client.request(["debian"]) for _ in range(2)]]
    assert [r.provider for r in reqs] == ["prov-a", "prov-a"]
    assert len(servers(sim, "alpha")) == 2 and not servers(sim, "beta")


# -- infrastructure failures ----------------------------------------------------------------------------------
def test_build_that_cannot_get_a_working_node_is_an_infrastructure_node_failure(zk, sim, start_launcher, tmp_path):
    from gatekeeper.executor import logs
    from gatekeeper.executor.build import BuildRunner, ExecutorSettings
    from gatekeeper.executor.console import ConsoleRegistry
    from gatekeeper.executor.nodes import LauncherNodes
    from gatekeeper.executor.workspace import GitCache
    from gatekeeper.zk.builds import INFRASTRUCTURE, NODE_FAILURE, BuildRequest

    sim.cloud("alpha").set_faults(boot_errors=-1, boot_error_message="No valid host was found.")
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", attempts=1)))
    wait_live(zk, 1)
    runner = BuildRunner(ExecutorSettings(work_dir=str(tmp_path / "builds")),
                         GitCache(str(tmp_path / "cache"), lambda project: str(tmp_path / project)),
                         LauncherNodes(zk, "executor-test"),
                         logs.LogStore(str(tmp_path / "logstore"), "http://logs.example.com"), ConsoleRegistry(),
                         "executor-test")
    request = BuildRequest(pipeline="gate", job="unit", label="debian", changes="1,1",
                           change={"project": "org/a", "branch": "master", "number": 1, "patchset": 1},
                           repo_state={"branches": {}, "steps": []}, params={"run": ["true"], "timeout": 60})
    result = runner.run(request)
    assert result.result == NODE_FAILURE and result.failure_class == INFRASTRUCTURE and result.infrastructure
    assert "No valid host" in result.message and "prov-a" in result.message
    assert sim.cloud("alpha").created_server_ids  # a boot was tried and failed
    wait_for(lambda: not servers(sim, "alpha") and not node_records(zk), what="the failed node cleaned up")


# -- image health ---------------------------------------------------------------------------------------------
def test_vanished_image_marks_the_upload_bad_and_a_new_one_is_built_after_one_failed_boot(zk, sim, start_launcher):
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    # the periodic image check is far away: the boot itself must find out
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", image_extra=prepare)),
                              image_check_interval=600)
    store = NodeStore(zk)
    first = wait_for(lambda: next((b for b in store.image_builds("deb", "prov-a") if b.state == "ready"), None),
                     60, "first image build")
    alpha = sim.cloud("alpha")
    alpha.delete_image(first.external_id)  # the cloud lost it (restarted, or an operator's mistake)
    client = NodeRequestClient(zk, "stale-image")
    reqs = [client.request(["debian"] * 3)]  # three launches started together
    served = [client.wait(r, 90) for r in reqs]
    assert all(r.state == model.FULFILLED for r in served)
    builds = {b.id: b for b in store.image_builds("deb", "prov-a")}
    assert builds[first.id].state == model.IMAGE_GONE and "no longer has" in builds[first.id].reason
    newer = [b for b in builds.values() if b.state == "ready"]
    assert len(newer) == 1 and newer[0].external_id in alpha.images
    nodes = [n for r in served for n in client.lock_nodes(r)]
    assert {n.image_build for n in nodes} == {newer[0].id}
    with client.ssh(nodes[0]) as ssh:
        assert ssh.exec_command("cat \"$HOME/marker\"")[1].read().decode().strip() == "warmed"
    # the three launches started together, but only one asked the cloud for the vanished upload
    assert launcher.managers["prov-a"].image_boot_failures == 1
    # a vanished image is not the cloud's fault; the health is published each second, so wait for what it says now
    health = launcher.managers["prov-a"].health
    wait_for(lambda: status_of(zk, "prov-a").get("consecutive_failures") == health.consecutive, 10,
             "the provider's health to be published")
    assert health.consecutive == 0
    for node in nodes:
        client.release(node)


# -- ZooKeeper session expiry ---------------------------------------------------------------------------------
def test_session_expiry_mid_launch_serves_the_request_and_leaves_no_orphan(zk, zk_server, sim, start_launcher):
    from kazoo.client import KazooClient

    alpha = sim.cloud("alpha")
    alpha.set_faults(boot_delay=2.0)
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "expiry")
    rid = client.request(["debian"])
    wait_for(lambda: (client.get(rid) or model.NodeRequest()).state == model.PENDING and servers(sim, "alpha"),
             what="the request pending on a booting server")
    assert client.get(rid).launcher == launcher.ident
    session_id, password = launcher.kz.client_id
    intruder = KazooClient(hosts=zk_server.hosts, client_id=(session_id, password))
    intruder.start()
    intruder.stop()
    intruder.close()
    req = client.wait(rid, 60)
    assert req.state == model.FULFILLED
    alpha.set_faults(boot_delay=0)

    def consistent() -> bool:
        records = node_records(zk)
        return {s.id for s in servers(sim, "alpha")} == {n.external_id for n in records.values()} \
            and all(n.state in (model.ALLOCATED, model.READY) for n in records.values())
    wait_for(consistent, 30, "cloud servers == node records, none half-launched")
    assert req.nodes[0] in node_records(zk)
    [node] = client.lock_nodes(req)
    client.release(node)

    # the state the expiry can leave when the launcher's registration comes back before it looks again: a
    # request pending on this very launcher, with no launch of its behind it. It is started afresh.
    stranded = model.NodeRequest(labels=["debian"], requestor="expiry", state=model.PENDING, provider="prov-a",
                                 launcher=launcher.ident)
    path = zk.client.create(f"{paths.NODE_REQUESTS}/000100-", stranded.to_bytes(), ephemeral=True, sequence=True)
    again = client.wait(path.rsplit("/", 1)[1], 30)
    assert again.state == model.FULFILLED and again.launcher == launcher.ident
    assert node_records(zk)[again.nodes[0]].external_id in {s.id for s in servers(sim, "alpha")}
