"""The OpenStack simulator, driven by the real openstacksdk through a real clouds.yaml over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openstack
import paramiko
import pytest
from openstack import exceptions as osexc
from openstack.config import loader

from gatekeeper.child_process import start_tied
from gatekeeper.sim.openstack.hosts import NetnsBackend
from gatekeeper.sim.openstack.sim import CloudSim
from tests.helpers import wait_for

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("sshkey") / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


@pytest.fixture(params=[pytest.param("netns", marks=pytest.mark.netns), "loopback"])
def sim(request) -> CloudSim:
    s = CloudSim(["alpha", "beta"], backend=request.param, max_instances=3)
    assert isinstance(s.backend, NetnsBackend) == (request.param == "netns")  # no silent fallback to loopback
    try:
        yield s
    finally:
        s.stop()


def connect(sim: CloudSim, cloud: str) -> openstack.connection.Connection:
    cfg = loader.OpenStackConfig(config_files=[sim.clouds_yaml]).get_one(cloud=cloud)
    return openstack.connection.Connection(config=cfg)


def boot(conn, ssh_key: str, name: str, image: str = "debian-12", **kw):
    if conn.compute.find_keypair("gk", ignore_missing=True) is None:
        conn.compute.create_keypair(name="gk", public_key=open(ssh_key + ".pub").read())
    image_id = conn.image.find_image(image).id
    server = conn.compute.create_server(name=name, image_id=image_id, flavor_id="1", key_name="gk",
                                        networks="none", **kw)
    return conn.compute.wait_for_server(server, interval=0.05, wait=20)


def ssh_run(address: str, port: int, key: str, command: str) -> str:
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    ssh.connect(address, port, "root" if ROOT else os.environ.get("USER", ""), key_filename=key,
                look_for_keys=False, allow_agent=False, timeout=10)
    try:
        _, out, _ = ssh.exec_command(command)
        return out.read().decode()
    finally:
        ssh.close()


def sshd_pids_for(address: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "sshd"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if address in ln]


def test_sdk_boots_server_that_is_a_real_ssh_host_and_delete_ends_it(sim, ssh_key):
    conn = connect(sim, "alpha")
    server = boot(conn, ssh_key, "node-one", metadata={"owner": "me"})
    assert server.status == "ACTIVE"
    address = server.access_ipv4
    port = sim.backend.port
    assert address.startswith("169.254.") if isinstance(sim.backend, NetnsBackend) else address.startswith("127.")
    out = ssh_run(address, port, ssh_key, "hostname; echo $HOME; echo data > f; cat f")
    if isinstance(sim.backend, NetnsBackend):
        assert out.splitlines()[0] == "node-one"
    assert out.splitlines()[-1] == "data"
    assert [s.name for s in conn.compute.servers(details=True)] == ["node-one"]
    assert conn.compute.get_server(server.id).metadata == {"owner": "me"}

    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=0.05, wait=20)
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=1).close()
    assert sshd_pids_for(address) == []
    if isinstance(sim.backend, NetnsBackend):
        tag = sim.backend.tag
        assert tag not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_snapshot_image_carries_what_the_template_host_had(sim, ssh_key):
    conn = connect(sim, "alpha")
    template = boot(conn, ssh_key, "template")
    ssh_run(template.access_ipv4, sim.backend.port, ssh_key, "mkdir -p cache && echo warmed > cache/marker")
    image = conn.compute.create_server_image(template, name="snap", metadata={"purpose": "test"}, wait=False)
    wait_for(lambda: conn.image.get_image(image.id).status == "active", 20, "the snapshot image to become active")
    assert conn.image.get_image(image.id).properties["purpose"] == "test"
    child = boot(conn, ssh_key, "child", image="snap")
    assert ssh_run(child.access_ipv4, sim.backend.port, ssh_key, "cat cache/marker").strip() == "warmed"
    conn.image.delete_image(image.id)
    assert conn.image.find_image(image.id, ignore_missing=True) is None


def test_clouds_are_separate_and_the_cloud_layer_works(sim, ssh_key):
    alpha, beta = connect(sim, "alpha"), connect(sim, "beta")
    boot(alpha, ssh_key, "a1")
    assert [s.name for s in alpha.list_servers()] == ["a1"]
    assert beta.list_servers() == []
    limits = alpha.get_compute_limits()
    assert (limits.max_total_instances, limits.total_instances_used) == (3, 1)
    assert alpha.list_availability_zone_names() == ["nova"]


@pytest.mark.parametrize("sim", ["loopback"], indirect=True)
def test_faults_error_boot_quota_api_errors_ignored_delete_and_no_ssh(sim, ssh_key):
    conn = connect(sim, "alpha")
    cloud = sim.cloud("alpha")

    cloud.set_faults(boot_errors=1, boot_error_message="No valid host was found.")
    with pytest.raises(osexc.ResourceFailure):
        boot(conn, ssh_key, "broken")
    broken = next(conn.compute.servers(name="broken"))
    assert broken.status == "ERROR" and "No valid host" in broken.fault["message"]
    conn.compute.delete_server(broken)
    conn.compute.wait_for_delete(broken, interval=0.05, wait=10)

    cloud.set_faults(no_ssh=1)
    mute = boot(conn, ssh_key, "mute")
    assert mute.status == "ACTIVE" and mute.access_ipv4
    with pytest.raises(OSError):
        socket.create_connection((mute.access_ipv4, sim.backend.port), timeout=1).close()

    boot(conn, ssh_key, "second")
    boot(conn, ssh_key, "third")
    with pytest.raises(osexc.HttpException) as exc:
        boot(conn, ssh_key, "fourth")
    assert exc.value.status_code == 403 and "Quota exceeded" in str(exc.value)

    cloud.set_faults(api_errors=1)
    with pytest.raises(osexc.HttpException) as exc:
        list(conn.compute.servers())
    assert exc.value.status_code == 500
    assert len(list(conn.compute.servers())) == 3

    cloud.set_faults(delete_ignored=1)
    conn.compute.delete_server(mute)
    assert cloud.faults.delete_ignored == 0  # the fault was met
    # A later delete that is carried out: once it is done, the ignored one would have been done too.
    second = next(conn.compute.servers(name="second"))
    conn.compute.delete_server(second)
    conn.compute.wait_for_delete(second, interval=0.05, wait=10)
    assert conn.compute.get_server(mute.id).status == "ACTIVE"
    assert mute.id not in cloud.deleted_server_ids

    cloud.set_faults(hang_requests=1, api_hang=1.0)
    started = time.monotonic()
    list(conn.compute.servers())
    assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize("sim", ["loopback"], indirect=True)
def test_server_listing_paginates_and_old_microversion_shapes(sim, ssh_key):
    conn = connect(sim, "alpha")
    for name in ("p1", "p2", "p3"):
        boot(conn, ssh_key, name)
    assert [s.name for s in conn.compute.servers(details=True, limit=2)] == ["p1", "p2", "p3"]
    # a raw request without a microversion gets the 2.1 shape (flavor by id, not embedded)
    old = conn.compute.get("/servers/detail").json()["servers"][0]
    assert set(old["flavor"]) == {"id", "links"}


def test_cloud_sim_command_serves_several_clouds_and_fault_controls(tmp_path):
    clouds_yaml = tmp_path / "clouds.yaml"
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--cloud", "east", "--cloud",
                             "west", "--backend", "none", "--clouds-yaml", str(clouds_yaml)],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        assert set(info["clouds"]) == {"east", "west"}
        cfg = loader.OpenStackConfig(config_files=[str(clouds_yaml)]).get_one(cloud="west")
        conn = openstack.connection.Connection(config=cfg)
        assert {f.name for f in conn.compute.flavors()} >= {"small", "medium"}
        req = urllib.request.Request(info["clouds"]["west"] + "/sim/faults", data=b'{"boot_errors": 2}',
                                     method="POST", headers={"Content-Type": "application/json"})
        assert json.load(urllib.request.urlopen(req))["boot_errors"] == 2
        with pytest.raises(urllib.error.HTTPError) as exc:  # addresses only: no hosts to keep spare
            urllib.request.urlopen(info["clouds"]["west"] + "/sim/spare-hosts")
        assert exc.value.code == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def _spare_hosts(url: str, count: int | None = None) -> dict:
    data = None if count is None else json.dumps({"count": count}).encode()
    req = urllib.request.Request(url + "/sim/spare-hosts", data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def test_cloud_sim_command_keeps_the_spare_hosts_asked_for_and_the_api_changes_their_count(tmp_path):
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--cloud", "east", "--cloud", "west",
                       "--backend", "loopback", "--spare-hosts", "2", "--work-dir", str(tmp_path / "sim")],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = json.loads(proc.stdout.readline())["clouds"]
        wait_for(lambda: _spare_hosts(urls["west"])["ready"] == 2, 60, "two spare hosts")
        # one pool, shared by the simulator's clouds
        assert _spare_hosts(urls["east"]) == {"target": 2, "ready": 2, "starting": 0}
        assert _spare_hosts(urls["east"], 0) == {"target": 0, "ready": 0, "starting": 0}
        assert _spare_hosts(urls["west"]) == {"target": 0, "ready": 0, "starting": 0}
        with pytest.raises(urllib.error.HTTPError) as exc:
            _spare_hosts(urls["west"], -1)
        assert exc.value.code == 400 and "count" in exc.value.read().decode()
        with pytest.raises(urllib.error.HTTPError) as exc:
            _spare_hosts(urls["west"], 251)  # more than a bridge holds: refused
        assert exc.value.code == 400 and "from 0 to 250" in exc.value.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_cloud_sim_command_refuses_spare_hosts_without_hosts():
    res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--backend", "none",
                          "--spare-hosts", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--spare-hosts needs hosts" in res.stderr
    res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--spare-hosts", "251"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--spare-hosts 251: at most 250" in res.stderr, res.stderr


@pytest.mark.netns
@pytest.mark.parametrize("sim", ["netns"], indirect=True)
def test_netns_nodes_have_their_own_opt_and_var_log(sim, ssh_key):
    """devstack writes /opt/stack/logs: two nodes must not see each other's files there, nor write the host's."""
    conn = connect(sim, "alpha")
    first, second = boot(conn, ssh_key, "left"), boot(conn, ssh_key, "right")
    marker = f"/opt/gk-node-test-{os.getpid()}"
    port = sim.backend.port
    ssh_run(first.access_ipv4, port, ssh_key, f"mkdir -p {marker} && echo left > {marker}/who && echo x > /var/log/gk")
    assert "No such file" in ssh_run(second.access_ipv4, port, ssh_key, f"cat {marker}/who 2>&1")
    assert ssh_run(first.access_ipv4, port, ssh_key, f"cat {marker}/who").strip() == "left"
    assert not os.path.exists(marker) and not os.path.exists("/var/log/gk")
