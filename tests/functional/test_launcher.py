"""The launcher against real ZooKeeper and the OpenStack simulator over HTTP, with nodes that are real SSH hosts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import openstack
import paramiko
import pytest
import yaml
from openstack.config import loader

from gatekeeper.child_process import start_tied
from gatekeeper.config.layout import parse_layout
from gatekeeper.launcher import cleanup as cleanup_module
from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient, read_node
from gatekeeper.launcher.images import list_builds
from gatekeeper.launcher.launcher import Launcher
from gatekeeper.sim.openstack.sim import CloudSim
from gatekeeper.zk import paths
from gatekeeper.zk.nodes import NodeStore
from tests.helpers import wait_for

OWNER = "gatekeeper"


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("sshkey") / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


@pytest.fixture
def sim():
    s = CloudSim(["alpha", "beta"])
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def start_launcher(zk_factory, sim, ssh_key):
    """Start a launcher (own ZooKeeper session) on a node-pool YAML; all are stopped at the end."""
    started = []

    def start(nodepool_yaml: str, **kw) -> Launcher:
        nodepool = parse_layout({"nodepool.yaml": nodepool_yaml}).nodepool
        kw.setdefault("poll_interval", 0.05)
        kw.setdefault("delete_verify_timeout", 5.0)
        launcher = Launcher(zk_factory(), nodepool, ssh_key=ssh_key, clouds_yaml=sim.clouds_yaml, owner=OWNER,
                            **kw)
        started.append(launcher)
        return launcher.start()

    yield start
    for launcher in started:
        launcher.stop()


def pool_yaml(labels: dict[str, int], *providers: str) -> str:
    label_list = "\n".join(f"    - {{name: {n}, min-ready: {m}}}" for n, m in labels.items())
    return f"nodepool:\n  labels:\n{label_list}\n  providers:\n" + "".join(providers)


def provider_yaml(name: str, cloud: str, max_servers: int = 4, boot_timeout: float = 15, attempts: int = 3,
                  label: str = "debian", image_extra: str = "", extra: str = "") -> str:
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n"
            f"      max-servers: {max_servers}\n      boot-timeout: {boot_timeout}\n"
            f"      launch-attempts: {attempts}\n{extra}"
            f"      pools:\n        - name: main\n          labels: [{{name: {label}, image: deb, flavor: small}}]\n"
            f"      images:\n        - name: deb\n          base-image: debian-12\n{image_extra}")


def ready_ids(zk, label: str = "debian") -> set[str]:
    try:
        return {e.rsplit("-", 1)[1] for e in zk.client.get_children(paths.ready_node(label))}
    except Exception:
        return set()


def node_records(zk) -> dict[str, model.Node]:
    out = {}
    for node_id in zk.client.get_children(paths.NODES):
        try:
            out[node_id] = read_node(zk, node_id)[0]
        except Exception:
            pass
    return out


def wait_live(zk, count: int) -> None:
    wait_for(lambda: len(zk.client.get_children(paths.LAUNCHERS)) == count, what=f"{count} live providers")


def use_and_release(client: NodeRequestClient, rid: str, timeout: float = 60.0) -> model.NodeRequest:
    req = client.wait(rid, timeout)
    assert req.state == model.FULFILLED, req.reason
    for node in client.lock_nodes(req):
        client.release(node)
    return req


def servers(sim: CloudSim, cloud: str) -> list:
    return sim.cloud(cloud).list_servers()


# -- ready pool, SSH, host keys -------------------------------------------------------------------------------
def test_min_ready_is_reached_handed_out_with_pinned_host_key_and_kept(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha")))
    first_ready = wait_for(lambda: ready_ids(zk) if len(ready_ids(zk)) == 2 else None, what="2 ready nodes")

    client = NodeRequestClient(zk, "test-build")
    req = client.wait(client.request(["debian"]), timeout=30)
    assert req.state == model.FULFILLED and req.nodes[0] in first_ready
    [node] = client.lock_nodes(req)
    assert node.state == model.IN_USE and node.provider == "prov-a" and node.cloud == "alpha"
    assert node.host_keys and node.address.startswith(("169.254.", "127."))
    with client.ssh(node) as ssh:
        _, out, _ = ssh.exec_command("echo hello from $(hostname)")
        assert out.read().decode().strip() == f"hello from gk-debian-{node.id}" or \
            out.read().decode().strip().startswith("hello from")

    # a node whose host key is not the pinned one is refused
    other = paramiko.Ed25519Key.from_private_key_file(node.private_key)
    forged = model.Node.from_dict(node.to_dict())
    forged.host_keys = [f"{other.get_name()} {other.get_base64()}"]
    with pytest.raises(paramiko.SSHException):
        client.ssh(forged).close()

    # min-ready is kept: a replacement is launched while the node is in use, and the used node is deleted
    wait_for(lambda: len(ready_ids(zk)) == 2, what="min-ready restored")
    server_id = node.external_id
    client.release(node)
    wait_for(lambda: node.id not in node_records(zk), what="used node deleted")
    assert server_id not in {s.id for s in servers(sim, "alpha")}
    assert len(ready_ids(zk)) == 2


def test_max_servers_never_exceeded_under_100_simultaneous_requests(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=4),
                             provider_yaml("prov-b", "beta", max_servers=3)))
    wait_live(zk, 2)
    peak = Counter()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for cloud in ("alpha", "beta"):
                peak[cloud] = max(peak[cloud], len(servers(sim, cloud)))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    client = NodeRequestClient(zk, "burst")
    try:
        rids = [client.request(["debian"], priority=100) for _ in range(100)]
        fulfilled: list[model.NodeRequest] = []
        lock = threading.Lock()

        def consume(chunk: list[str]) -> None:
            for rid in chunk:
                req = use_and_release(client, rid, timeout=120)
                with lock:
                    fulfilled.append(req)

        workers = [threading.Thread(target=consume, args=(rids[i::8],)) for i in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        stop.set()
        sampler.join()
    assert len(fulfilled) == 100
    all_nodes = [n for r in fulfilled for n in r.nodes]
    assert len(set(all_nodes)) == 100  # no node handed out twice
    assert peak["alpha"] <= 4 and peak["beta"] <= 3
    assert peak["alpha"] + peak["beta"] > 4  # both providers did work


# -- failures -------------------------------------------------------------------------------------------------
def test_failover_when_one_provider_fails_every_boot(zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(boot_errors=-1, boot_error_message="No valid host was found.")
    launcher = start_launcher(pool_yaml({"debian": 0},
                                        provider_yaml("prov-a", "alpha", max_servers=6, attempts=2),
                                        provider_yaml("prov-b", "beta", max_servers=3)))
    wait_live(zk, 2)
    client = NodeRequestClient(zk, "failover")
    reqs = [client.wait(r, 60) for r in [client.request(["debian"]) for _ in range(3)]]
    assert all(r.state == model.FULFILLED for r in reqs)
    assert {r.provider for r in reqs} == {"prov-b"}
    # routed around: declined after its failed launches, or given back when the provider started backing off
    assert any("prov-a" in r.declined_by for r in reqs) or \
        launcher.managers["prov-a"].health.state != "healthy"
    wait_for(lambda: not servers(sim, "alpha"), what="failed servers deleted")
    assert not [n for n in node_records(zk).values() if n.provider == "prov-a"]


def test_node_that_never_answers_ssh_is_deleted_and_replaced(zk, sim, start_launcher):
    sim.cloud("alpha").set_faults(no_ssh=1)
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", boot_timeout=3)))
    client = NodeRequestClient(zk, "mute")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.FULFILLED
    [node] = client.lock_nodes(req)
    with client.ssh(node) as ssh:
        assert ssh.exec_command("true")[1].channel.recv_exit_status() == 0
    first = sim.cloud("alpha").deleted_server_ids
    wait_for(lambda: len(first) == 1, what="the mute server deleted")
    assert first[0] != node.external_id
    client.release(node)


def test_request_that_every_provider_declines_fails_with_reason(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0, "fedora": 0}, provider_yaml("prov-a", "alpha"),
                             provider_yaml("prov-b", "beta", label="fedora")))
    client = NodeRequestClient(zk, "multi")
    wait_live(zk, 2)
    req = client.wait(client.request(["debian", "fedora"]), 30)  # no provider has both labels
    assert req.state == model.REQUEST_FAILED
    assert "debian, fedora" in req.reason and sorted(req.declined_by) == ["prov-a", "prov-b"]


# -- images ---------------------------------------------------------------------------------------------------
def test_image_is_built_rebuilt_and_a_failed_build_keeps_the_old_image(zk, sim, start_launcher):
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    launcher = start_launcher(
        pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=3, image_extra=prepare,
                                               extra="      image-rebuild-hours: 0.0008\n")),
        image_check_interval=0.3, cleanup_interval=0.5)
    builds = lambda: list_builds(zk.client, "deb", "prov-a")  # noqa: E731
    first = wait_for(lambda: next((b for b in builds() if b.state == "ready"), None), what="first build")
    client = NodeRequestClient(zk, "image-user")
    req = client.wait(client.request(["debian"]), 30)
    [node] = client.lock_nodes(req)
    assert node.image_build == first.id
    with client.ssh(node) as ssh:
        assert ssh.exec_command("cat \"$HOME/marker\"")[1].read().decode().strip() == "warmed"
    client.release(node)

    # the next template fails to boot: that build fails, the old image stays and keeps serving
    sim.cloud("alpha").set_faults(boot_errors=1)
    wait_for(lambda: any(b.state == "failed" for b in builds()), what="failed build")
    assert sim.cloud("alpha").get_image(first.external_id).status == "active"
    req = client.wait(client.request(["debian"]), 30)
    [node] = client.lock_nodes(req)
    assert node.image_build == first.id
    client.release(node)

    # later good builds supersede it; as in Nodepool the current and the previous build are kept, and an older
    # one is deleted once no node uses it
    newer = wait_for(lambda: [b for b in builds() if b.state == "ready" and b.id > first.id][:2] or None, 30,
                     "rebuild")[0]
    assert first.id in {b.id for b in builds()}, "the build before the current one is kept to fall back on"
    newest = wait_for(lambda: [b for b in builds() if b.state == "ready" and b.id > newer.id][:1] or None, 30,
                      "a second rebuild")[0]
    wait_for(lambda: first.id not in {b.id for b in builds()}, 30, "superseded build removed")
    assert first.external_id not in sim.cloud("alpha").images
    assert {newer.external_id, newest.external_id} <= set(sim.cloud("alpha").images)
    newer = newest
    assert not [s for s in servers(sim, "alpha") if s.name.startswith("gk-template")]
    assert launcher.managers["prov-a"].image_builds["deb"][0] >= newer.id


def test_operators_build_an_image_now_and_delete_a_build_which_falls_back_to_the_previous(
        zk, zk_server, zk_chroot, sim, start_launcher, tmp_path):
    prepare = "          prepare: |\n            echo warmed > \"$HOME/marker\"\n"
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", image_extra=prepare)),
                              image_check_interval=60, cleanup_interval=0.5)
    builds = lambda: list_builds(zk.client, "deb", "prov-a")  # noqa: E731
    first = wait_for(lambda: next((b for b in builds() if b.state == "ready"), None), what="first build")
    cfg = tmp_path / "gk.yaml"
    cfg.write_text(yaml.safe_dump({"zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot}}))

    def gk(*args: str, rc: int = 0) -> str:
        res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *args, "-c", str(cfg)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == rc, res.stderr
        return res.stdout + res.stderr

    # not due for a day, built at once when asked (the builder's own check comes only every 60 s)
    assert "a new build was asked for on prov-a" in gk("image-build", "deb")
    second = wait_for(lambda: next((b for b in builds() if b.state == "ready" and b.id != first.id), None), 30,
                      "the asked-for build")
    wait_for(lambda: launcher.managers["prov-a"].image_builds.get("deb", ("",))[0] == second.id,
             what="the new build in use")
    assert gk("image-build", "nosuch", rc=1).startswith("image nosuch: no builds are known")
    assert "provider prov-z does not build it" in gk("image-build", "deb", "--provider", "prov-z", rc=1)

    # deleting the current build: never booted again, the previous one serves, and its cloud image goes
    assert "deleted" in gk("image-delete", "deb", "--provider", "prov-a", "--build", second.id)
    wait_for(lambda: launcher.managers["prov-a"].image_builds.get("deb", ("",))[0] == first.id,
             what="the fall-back to the previous build")
    client = NodeRequestClient(zk, "image-user")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    assert node.image_build == first.id
    client.release(node)
    wait_for(lambda: second.id not in {b.id for b in builds()}, 30, "the deleted build removed")
    assert second.external_id not in sim.cloud("alpha").images
    assert first.external_id in sim.cloud("alpha").images
    assert "has no build nosuch" in gk("image-delete", "deb", "--provider", "prov-a", "--build", "nosuch", rc=1)
    assert [b.id for b in builds()] == [first.id]


# -- cleanup and holds ----------------------------------------------------------------------------------------
def test_held_node_is_kept_until_its_hold_expires_then_deleted(zk, sim, start_launcher, monkeypatch):
    finished_runs: list[float] = []
    real_cleanup = cleanup_module.run_cleanup

    def counted_cleanup(launcher) -> None:
        real_cleanup(launcher)
        finished_runs.append(time.time())

    monkeypatch.setattr(cleanup_module, "run_cleanup", counted_cleanup)
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.3)
    client = NodeRequestClient(zk, "build 7")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    client.release(node, held=True, reason="build 7 failed", hold_hours=6.0 / 3600)
    held = read_node(zk, node.id)[0]
    assert held.state == model.HOLD and held.hold_reason == "build 7 failed"
    # Cleanup runs that finish before the hold expires must keep the node: wait for three of them.
    seen = len(finished_runs)
    wait_for(lambda: len(finished_runs) >= seen + 3, 20, "three cleanup runs while the node is held")
    assert finished_runs[seen + 2] < held.hold_until, "the cleanup runs came too late to test the hold"
    assert read_node(zk, node.id)[0].state == model.HOLD
    assert node.external_id in {s.id for s in servers(sim, "alpha")}
    wait_for(lambda: node.id not in node_records(zk), what="expired hold deleted")
    assert node.external_id not in {s.id for s in servers(sim, "alpha")}


def test_leaked_servers_and_images_are_deleted_and_foreign_ones_kept(zk, sim, start_launcher, ssh_key):
    cfg = loader.OpenStackConfig(config_files=[sim.clouds_yaml]).get_one(cloud="alpha")
    conn = openstack.connection.Connection(config=cfg)
    image = conn.image.find_image("debian-12")
    leaked = conn.compute.create_server(name="leak", image_id=image.id, flavor_id="1", networks="none",
                                        metadata={model.META_OWNER: OWNER, model.META_NODE: "0123456789ab"})
    foreign = conn.compute.create_server(name="someone-else", image_id=image.id, flavor_id="1", networks="none")
    leaked_image = conn.image.create_image(name="gk-deb-old", data=b"x", disk_format="qcow2",
                                           container_format="bare",
                                           **{model.META_OWNER: OWNER, model.META_BUILD: "no-such-build"})
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")), cleanup_interval=0.3)
    wait_for(lambda: leaked.id not in {s.id for s in servers(sim, "alpha")}, what="leaked server deleted")
    wait_for(lambda: leaked_image.id not in sim.cloud("alpha").images, what="leaked image deleted")
    assert foreign.id in {s.id for s in servers(sim, "alpha")}


def test_delete_that_silently_does_not_happen_is_retried(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha")), delete_verify_timeout=1.0)
    client = NodeRequestClient(zk, "deleter")
    [node] = client.lock_nodes(client.wait(client.request(["debian"]), 30))
    sim.cloud("alpha").set_faults(delete_ignored=1)
    client.release(node)
    wait_for(lambda: node.id not in node_records(zk), what="node deleted after a re-issued delete")
    assert not servers(sim, "alpha")


# -- several launchers, crashes -------------------------------------------------------------------------------
def test_two_launchers_share_the_work_without_double_fulfilment(zk, sim, start_launcher):
    labels = {"debian": 2}
    one = start_launcher(pool_yaml(labels, provider_yaml("prov-a", "alpha", max_servers=4)))
    wait_live(zk, 1)
    two = start_launcher(pool_yaml(labels, provider_yaml("prov-b", "beta", max_servers=4)))
    wait_live(zk, 2)
    wait_for(lambda: len(ready_ids(zk)) == 2, what="min-ready")
    # ready nodes are on prov-a (its launcher owns min-ready); nothing is launched on beta while they sit there
    client = NodeRequestClient(zk, "pair")
    for req in [client.wait(r, 30) for r in [client.request(["debian"]) for _ in range(2)]]:
        assert req.provider == "prov-a"
    assert not servers(sim, "beta")

    rids = [client.request(["debian"]) for _ in range(30)]
    reqs = []
    for rid in rids:
        reqs.append(use_and_release(client, rid))
    nodes = [n for r in reqs for n in r.nodes]
    assert len(nodes) == len(set(nodes)) == 30
    assert one.handed_out > 0 and two.handed_out > 0
    assert {r.provider for r in reqs} == {"prov-a", "prov-b"}


def test_launcher_killed_and_restarted_leaks_no_server_and_loses_no_request(zk, zk_server, zk_chroot, sim,
                                                                              ssh_key, tmp_path):
    (tmp_path / "layout").mkdir()
    (tmp_path / "layout" / "nodepool.yaml").write_text(
        pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=6, boot_timeout=20)))
    (tmp_path / "gatekeeper.yaml").write_text(yaml.safe_dump({
        "zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot, "timeout": 3},
        "layout": str(tmp_path / "layout"),
        "launcher": {"clouds-yaml": sim.clouds_yaml, "ssh-key": ssh_key, "cleanup-interval": 1},
    }))

    def spawn(log_name: str) -> subprocess.Popen:
        return start_tied([sys.executable, "-m", "gatekeeper.cmd", "-v", "launcher", "-c",
                                 str(tmp_path / "gatekeeper.yaml")],
                          stdout=subprocess.DEVNULL, stderr=open(tmp_path / log_name, "w"))

    sim.cloud("alpha").set_faults(boot_delay=1.5)
    first = spawn("first.log")
    second = None
    try:
        client = NodeRequestClient(zk, "survivor")
        rids = [client.request(["debian"]) for _ in range(4)]
        wait_for(lambda: len(servers(sim, "alpha")) == 4, what="4 servers booting")
        booting = {s.id for s in servers(sim, "alpha")}
        first.send_signal(signal.SIGKILL)
        first.wait()
        sim.cloud("alpha").set_faults(boot_delay=0)
        second = spawn("second.log")
        reqs = [client.wait(r, 60) for r in rids]
        assert all(r.state == model.FULFILLED for r in reqs), (tmp_path / "second.log").read_text()[-3000:]

        def consistent():
            records = {n.external_id for n in node_records(zk).values()}
            return {s.id for s in servers(sim, "alpha")} == records and len(records) == 4
        wait_for(consistent, 30, "cloud servers == node records (the killed launcher's boots deleted)")
        assert booting <= set(sim.cloud("alpha").deleted_server_ids)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_operator_commands_list_hold_and_delete(zk, zk_server, zk_chroot, sim, start_launcher, tmp_path):
    start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")))
    node_id = wait_for(lambda: next(iter(ready_ids(zk)), None), what="a ready node")
    cfg = tmp_path / "gk.yaml"
    cfg.write_text(yaml.safe_dump({"zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot}}))

    def gk(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *args, "-c", str(cfg)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    import json
    listed = json.loads(gk("nodes", "--json"))
    assert [n["id"] for n in listed] == [node_id] and listed[0]["state"] == "ready"
    gk("hold", node_id, "--reason", "debugging the image")
    held = read_node(zk, node_id)[0]
    assert held.state == model.HOLD and held.hold_reason == "debugging the image"
    assert "debugging the image" in gk("nodes")
    wait_for(lambda: len(ready_ids(zk)) == 1 and node_id not in ready_ids(zk), what="min-ready replaced")
    gk("release", node_id)
    wait_for(lambda: node_id not in node_records(zk), what="released node deleted")
    other = next(iter(ready_ids(zk)))
    gk("delete-node", other)
    wait_for(lambda: other not in node_records(zk), what="deleted node gone")
    assert "id" in gk("requests") and "image" in gk("images")
    os.environ.pop("GATEKEEPER_CONFIG", None)


# -- static hosts, autohold -----------------------------------------------------------------------------------
def test_static_hosts_are_handed_out_one_node_each_and_reused_and_autohold_holds_failures(
        zk, sim, start_launcher, ssh_key):
    from gatekeeper.launcher.client import add_autohold, list_autoholds
    from gatekeeper.sim.openstack.hosts import HostSpec

    backend = sim.backend
    pub = open(ssh_key + ".pub").read()
    addresses = [backend.boot(HostSpec(f"rack-{i}", f"rack-{i}", pub)) for i in range(2)]
    with open(os.path.join(backend.hosts["rack-0"].workdir, "ssh_host_ed25519_key.pub")) as f:
        pinned = " ".join(f.read().split()[:2])
    start_launcher(
        "nodepool:\n  labels:\n    - {name: metal}\n  providers:\n    - name: rack\n      driver: static\n"
        "      hosts:\n"
        f"        - {{name: rack-0, address: '{addresses[0]}', port: {backend.port}, labels: [metal], "
        f"host-key: '{pinned}'}}\n"
        f"        - {{name: rack-1, address: '{addresses[1]}', port: {backend.port}, labels: [metal]}}\n")
    wait_for(lambda: len(ready_ids(zk, "metal")) == 2, what="both static hosts ready")

    client = NodeRequestClient(zk, "metal-user")
    first = client.wait(client.request(["metal"]), 30)
    second = client.wait(client.request(["metal"]), 30)
    third_id = client.request(["metal"])  # both hosts busy: it waits
    nodes = client.lock_nodes(first) + client.lock_nodes(second)
    assert {n.external_id for n in nodes} == {"rack-0", "rack-1"}
    assert next(n for n in nodes if n.external_id == "rack-0").host_keys == [pinned]
    for node in nodes:
        with client.ssh(node) as ssh:
            assert ssh.exec_command("echo ok")[1].read().decode().strip() == "ok"
    assert client.get(third_id).state in (model.REQUESTED, model.PENDING)

    add_autohold(zk, model.Autohold(project="org/a", job="unit", change=r"12\d+,\d+", count=1,
                                    reason="investigating flaky unit"))
    held = client.release_after_build(nodes[0], failed=True, project="org/a", job="unit", change="1234,2")
    assert held and read_node(zk, nodes[0].id)[0].hold_reason == "investigating flaky unit"
    assert not client.release_after_build(nodes[1], failed=True, project="org/a", job="unit", change="1299,1")
    third = client.wait(third_id, 30)  # the other host comes back once released
    assert third.state == model.FULFILLED and third.nodes == [nodes[1].id]  # same host, same record, reused
    assert list_autoholds(zk)[0].held_nodes == [nodes[0].id]
    for i in range(2):
        backend.destroy(f"rack-{i}")


# -- priority and quota ---------------------------------------------------------------------------------------
def test_requests_waiting_for_capacity_are_served_in_priority_order(zk, sim, start_launcher):
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=1)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "queue")
    first = client.request(["debian"], priority=300)
    order = [client.wait(first, 30)]
    later = [client.request(["debian"], priority=p) for p in (200, 100, 150)]
    for node in client.lock_nodes(order[0]):
        client.release(node)
    pending = set(later)
    while pending:
        req = next((client.get(r) for r in sorted(pending) if client.get(r).state == model.FULFILLED), None)
        if req is None:
            time.sleep(0.05)
            continue
        order.append(req)
        pending.discard(req.id)
        assert all(client.get(r).state != model.FULFILLED for r in pending)  # one at a time: max-servers 1
        for node in client.lock_nodes(req):
            client.release(node)
    assert [r.priority for r in order] == [300, 100, 150, 200]


def test_cloud_quota_error_is_retried_after_refreshing_limits_not_failed(zk, sim, start_launcher, ssh_key):
    cloud = sim.cloud("alpha")
    cloud.limits.max_instances = 2
    launcher = start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=5)))
    wait_live(zk, 1)
    assert launcher.managers["prov-a"].capacity() == 2  # the cloud's limit, read from the cloud
    # someone else takes one instance behind the launcher's back: its cached limits are now wrong
    foreign = cloud.create_server("someone-else", "debian-12", "small", None, {})
    client = NodeRequestClient(zk, "quota")
    rids = [client.request(["debian"]) for _ in range(2)]
    first = wait_for(lambda: next((r for r in map(client.get, rids) if r.state == model.FULFILLED), None),
                     what="one request fulfilled")
    wait_for(lambda: launcher.managers["prov-a"].capacity() == 1, what="limits refreshed after a quota error")
    [other] = [r for r in rids if r != first.id]
    assert client.get(other).state == model.PENDING  # waiting, not failed
    for node in client.lock_nodes(first):
        client.release(node)
    second = client.wait(other, 30)
    assert second.state == model.FULFILLED
    assert len(cloud.list_servers()) <= 2 and foreign.id in {s.id for s in cloud.list_servers()}


def test_cloud_api_errors_and_hangs_delay_but_do_not_fail_requests(zk, sim, start_launcher):
    # the first calls of the launcher (key upload, limits, ...) get 500s, and one call hangs for a while
    sim.cloud("alpha").set_faults(api_errors=4, hang_requests=1, api_hang=1.0)
    start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", attempts=5)))
    client = NodeRequestClient(zk, "flaky-api")
    req = client.wait(client.request(["debian"]), 60)
    assert req.state == model.FULFILLED
    [node] = client.lock_nodes(req)
    with client.ssh(node) as ssh:
        assert ssh.exec_command("true")[1].channel.recv_exit_status() == 0
    client.release(node)
    assert sim.cloud("alpha").faults.api_errors == 0  # the errors did happen


def test_launcher_whose_zookeeper_session_expires_takes_its_providers_back(zk, zk_server, sim, start_launcher):
    from kazoo.client import KazooClient

    launcher = start_launcher(pool_yaml({"debian": 1}, provider_yaml("prov-a", "alpha")))
    wait_for(lambda: len(ready_ids(zk)) == 1, what="a ready node")
    # expire the launcher's session the classic way: another client joins it and closes it
    session_id, password = launcher.kz.client_id
    intruder = KazooClient(hosts=zk_server.hosts, client_id=(session_id, password))
    intruder.start()
    intruder.stop()
    intruder.close()
    wait_for(lambda: launcher.kz.connected and zk.client.get_children(paths.LAUNCHERS) == ["prov-a"]
             and launcher.managers["prov-a"].active, 30, "provider re-acquired after session loss")
    client = NodeRequestClient(zk, "after-expiry")
    reqs = [client.wait(r, 30) for r in [client.request(["debian"]) for _ in range(2)]]
    assert all(r.state == model.FULFILLED for r in reqs)
    nodes = [n for r in reqs for n in client.lock_nodes(r)]
    for node in nodes:
        client.release(node)


def test_idle_nodes_of_a_label_the_provider_no_longer_serves_are_deleted_after_a_restart(zk, sim, start_launcher):
    first = start_launcher(pool_yaml({"debian": 2}, provider_yaml("prov-a", "alpha")))
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "two ready debian nodes")
    client = NodeRequestClient(zk, "changed-section")
    unlocked = client.wait(client.request(["debian"]), 30)  # fulfilled, never locked: its node stays allocated
    used = client.wait(client.request(["debian"]), 30)
    [taken] = client.lock_nodes(used)
    wait_for(lambda: len(ready_ids(zk)) == 2, 30, "min-ready refilled")
    idle = ready_ids(zk)
    first.stop()
    wait_live(zk, 0)
    NodeStore(zk).cancel_request(unlocked.id)  # its consumer went away while no launcher ran
    old_servers = {n.external_id for n in node_records(zk).values()} - {taken.external_id}

    # restarted on a section whose provider offers ubuntu only: the idle debian nodes are never handed out again
    start_launcher(pool_yaml({"ubuntu": 1}, provider_yaml("prov-a", "alpha", label="ubuntu")))
    gone = idle | set(unlocked.nodes)
    wait_for(lambda: not gone & set(node_records(zk)), 30, "the idle debian nodes deleted")
    wait_for(lambda: old_servers.isdisjoint(s.id for s in servers(sim, "alpha")), 30, "their servers deleted")
    assert not ready_ids(zk) and len(ready_ids(zk, "ubuntu")) <= 1
    assert node_records(zk)[taken.id].state == model.IN_USE  # a build still runs there: left until released
    client.release(taken)
    wait_for(lambda: taken.id not in node_records(zk), 30, "the released debian node deleted")
