"""Developers reach the nodes held for their failed builds with their own SSH keys: requested through ZooKeeper,
installed and removed by the launcher on a real SSH host of the cloud simulator, refused for other people's
changes, for nodes that are not held and when disabled, and every grant and removal in the audit log."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import paramiko
import pytest
import yaml

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient, read_node, release_node
from gatekeeper.zk import access
from gatekeeper.zk.access import AccessRefused
from tests.functional.test_launcher import pool_yaml, provider_yaml, ssh_key, wait_for  # noqa: F401 (fixture)
from tests.http import call

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="held nodes are SSH hosts in network namespaces (root)")


@pytest.fixture
def sim():
    from gatekeeper.sim.openstack.sim import CloudSim

    s = CloudSim(["alpha"], backend="netns")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def launcher(zk_factory, sim, ssh_key):  # noqa: F811
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.launcher.launcher import Launcher

    nodepool = parse_layout({"np.yaml": pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha"))}).nodepool
    started = Launcher(zk_factory(), nodepool, ssh_key=ssh_key, clouds_yaml=sim.clouds_yaml, poll_interval=0.05,
                       delete_verify_timeout=5.0).start()
    started.access_keeper.interval = 0.2
    try:
        yield started
    finally:
        started.stop()


def developer_key(tmp_path, name: str) -> tuple[str, str]:
    path = str(tmp_path / name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@laptop", "-f", path], check=True)
    return path, open(path + ".pub").read()


def held_node(zk, change: str = "7,1", owner: str = "jane") -> model.Node:
    client = NodeRequestClient(zk, "test-build")
    req = client.wait(client.request(["debian"]), timeout=60)
    [node] = client.lock_nodes(req)
    client.release(node, held=True, reason="build b1: unit for 7,1 in gate ended FAILURE", hold_hours=1,
                   change=change, owner=owner)
    return read_node(zk, node.id)[0]


def can_login(node: model.Node, key_path: str) -> bool:
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        ssh.connect(node.address, node.port, node.username, key_filename=key_path, look_for_keys=False,
                    allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        _, out, _ = ssh.exec_command("hostname")
        return bool(out.read().strip())
    except (paramiko.AuthenticationException, paramiko.SSHException, OSError):
        return False
    finally:
        ssh.close()


def grant_state(zk, grant_id: str) -> str:
    return next((g.state for g, _ in access.list_grants(zk) if g.id == grant_id), "")


def test_the_owner_gets_in_until_the_grant_expires_and_every_step_is_audited(zk, launcher, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.audit")
    node = held_node(zk)
    assert (node.state, node.hold_owner, node.hold_change) == (model.HOLD, "jane", "7,1")
    key_path, public = developer_key(tmp_path, "jane")
    assert not can_login(node, key_path)

    grant = access.request_access(zk, node.id, "jane", public, "jane", hours=5 / 3600)
    wait_for(lambda: grant_state(zk, grant.id) == access.INSTALLED, 20, "the key to be installed")
    assert can_login(node, key_path)
    wait_for(lambda: grant_state(zk, grant.id) == access.REMOVED, 30, "the key to be removed at expiry")
    assert not can_login(node, key_path)
    # the launcher's own key still works: only the grant's line went
    assert read_node(zk, node.id)[0].state == model.HOLD
    audit = [r.getMessage() for r in caplog.records if r.name == "gatekeeper.audit"]
    assert any(f"access {grant.id} requested by jane for jane on node {node.id} (change 7,1)" in m for m in audit)
    assert any(f"access {grant.id}: jane's key installed on node {node.id}" in m for m in audit)
    assert any(f"access {grant.id}: jane's key removed from node {node.id}: its time was up" in m for m in audit)


def test_releasing_the_node_ends_the_grant(zk, launcher, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.audit")
    node = held_node(zk)
    key_path, public = developer_key(tmp_path, "jane")
    grant = access.request_access(zk, node.id, "jane", public, "jane")
    wait_for(lambda: grant_state(zk, grant.id) == access.INSTALLED, 20, "the key to be installed")
    assert can_login(node, key_path)
    release_node(zk, node.id)
    wait_for(lambda: grant_state(zk, grant.id) == access.REMOVED, 30, "the grant to end with the release")
    assert not can_login(node, key_path)
    assert any(f"access {grant.id}: jane's key removed from node {node.id}" in r.getMessage()
               for r in caplog.records if r.name == "gatekeeper.audit")


def test_someone_elses_change_a_node_not_held_and_a_disabled_deployment_are_refused(zk, launcher, tmp_path):
    node = held_node(zk)
    _, public = developer_key(tmp_path, "bob")
    with pytest.raises(AccessRefused) as exc:
        access.request_access(zk, node.id, "bob", public, "bob")
    assert str(exc.value) == f"node {node.id} is held for jane's change 7,1; bob may not reach it " \
                             "(only the change owner or an operator)"
    with pytest.raises(AccessRefused, match="jane may not reach it"):  # not on someone else's behalf either
        access.request_access(zk, node.id, "bob", public, "jane")
    with pytest.raises(AccessRefused, match="disabled"):
        access.request_access(zk, node.id, "jane", public, "jane", enabled=False)
    with pytest.raises(AccessRefused, match="not an OpenSSH public key"):
        access.request_access(zk, node.id, "jane", open(tmp_path / "bob").read(), "jane")
    client = NodeRequestClient(zk, "other-build")
    [busy] = client.lock_nodes(client.wait(client.request(["debian"]), timeout=60))
    with pytest.raises(AccessRefused, match=f"node {busy.id} is not held"):
        access.request_access(zk, busy.id, "jane", public, "jane")
    with pytest.raises(AccessRefused, match="does not exist"):
        access.request_access(zk, "0000099999", "jane", public, "jane")
    assert access.list_grants(zk) == []
    # an operator may grant anyone
    granted = access.request_access(zk, node.id, "bob", public, "operator alice", operator=True)
    assert granted.user == "bob" and granted.expires <= node.hold_until


def test_the_operator_command_grants_lists_and_revokes(zk, launcher, tmp_path, zk_server, zk_chroot):
    node = held_node(zk)
    key_path, _ = developer_key(tmp_path, "jane")
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(yaml.safe_dump({"zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot}}))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "hold-access", *args, "-c", str(config)],
                              capture_output=True, text=True, timeout=60)

    res = cli(node.id, "--key", key_path + ".pub")
    assert res.returncode == 0, res.stderr
    assert f"jane's key goes on node {node.id}" in res.stdout  # the change owner, by default
    [grant] = json.loads(cli("--list", "--json").stdout)
    wait_for(lambda: grant_state(zk, grant["id"]) == access.INSTALLED, 20, "the key to be installed")
    assert can_login(node, key_path)
    assert cli("--revoke", grant["id"]).returncode == 0
    wait_for(lambda: grant_state(zk, grant["id"]) == access.REMOVED, 30, "the key to be removed")
    assert not can_login(node, key_path)
    bad = cli(node.id, "--key", key_path)  # the private key by mistake
    assert bad.returncode == 1 and "not an OpenSSH public key" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("--revoke", "nope").returncode == 1


def test_developers_ask_through_the_web_with_their_own_tokens(zk, launcher, tmp_path):
    from gatekeeper.web.server import WebService

    node = held_node(zk)
    key_path, public = developer_key(tmp_path, "jane")
    web = WebService(zk, port=0, admin_token="admin-secret", user_tokens={"jane": "jane-token", "bob": "bob-token"},
                     hold_access={"max-hours": 2}).start()

    def post(token: str | None, body: dict, node_id: str = node.id) -> tuple[int, dict]:
        return call(f"{web.url}/api/v1/nodes/{node_id}/access", "POST", token, body)

    try:
        assert post(None, {"public_key": public})[0] == 401
        assert post("guess", {"public_key": public})[0] == 403
        code, body = post("bob-token", {"public_key": public})
        assert code == 403 and "bob may not reach it" in body["error"]
        code, body = post("jane-token", {"public_key": "ssh-ed25519 not-base64!"})
        assert code == 400 and "damaged" in body["error"]
        code, body = post("jane-token", {"public_key": public, "hours": "lots"})
        assert code == 400 and "hours" in body["error"]
        code, body = post("jane-token", {"public_key": public}, node_id="0000099999")
        assert code == 404
        code, body = post("jane-token", {"public_key": public})
        assert code == 201 and body["user"] == "jane"
        assert body["expires"] <= time.time() + 2 * 3600 + 5  # capped by the deployment's max-hours
        wait_for(lambda: grant_state(zk, body["grant"]) == access.INSTALLED, 20, "the key to be installed")
        assert can_login(node, key_path)
        code, body = post("admin-secret", {"public_key": public, "user": "bob"})
        assert code == 201 and body["user"] == "bob"
        with urllib.request.urlopen(f"{web.url}/api/v1/access", timeout=20) as resp:
            assert {g["user"] for g in json.loads(resp.read())} == {"jane", "bob"}
    finally:
        web.stop()
