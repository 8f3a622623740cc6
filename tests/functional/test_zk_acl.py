"""Who owns gatekeeper's ZooKeeper tree, against the real server: the chroot node carries our digest ACL like
everything below it, a chroot someone else made is refused, and the README's split auth form reaches the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

from gatekeeper.config.settings import load_service_config
from gatekeeper.zk.client import ChrootNotOwned, DigestAuth, ZKClient
from gatekeeper.zk.server import LocalZooKeeper

OWNER = DigestAuth("gatekeeper", "s3cret")


@pytest.fixture
def raw(zk_server: LocalZooKeeper) -> Iterator[KazooClient]:
    """A plain kazoo client at the server's root with no credentials: a stranger on the network."""
    client = KazooClient(hosts=zk_server.hosts)
    client.start(timeout=15)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def cleanup(zk_server: LocalZooKeeper, zk_chroot: str) -> Iterator[None]:
    """Remove the test's chroot afterwards, as its owner (an unauthenticated client may not)."""
    yield
    owner = KazooClient(hosts=zk_server.hosts, auth_data=[("digest", f"{OWNER.username}:{OWNER.password}")])
    owner.start(timeout=15)
    try:
        owner.delete(zk_chroot, recursive=True)
    except Exception:
        pass
    finally:
        owner.stop()
        owner.close()


def test_the_chroot_itself_carries_our_digest_acl(zk_server, zk_chroot, raw, cleanup):
    owner = ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start()
    try:
        owner.client.create("/pipelines/gate", b"x", makepath=True)
        acls, _ = owner.client.get_acls("/")  # the chroot node, seen from inside
        assert acls == [make_digest_acl(OWNER.username, OWNER.password, all=True)]
        with pytest.raises(NoAuthError):
            raw.create(f"{zk_chroot}/intruder", b"")
        with pytest.raises(NoAuthError):
            raw.delete(f"{zk_chroot}/pipelines", recursive=True)
        with pytest.raises(NoAuthError):
            raw.set_acls(zk_chroot, OPEN_ACL_UNSAFE)
        assert raw.exists(f"{zk_chroot}/intruder") is None
        # Starting again on our own chroot is fine.
        ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start().stop()
    finally:
        owner.stop()


def test_a_chroot_made_by_a_stranger_is_refused(zk_server, zk_chroot, raw, cleanup):
    raw.create(zk_chroot, b"")  # world:anyone, all permissions
    raw.create(f"{zk_chroot}/layout", b"the stranger's")
    with pytest.raises(ChrootNotOwned) as exc:
        ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start(timeout=10)
    assert str(exc.value).startswith(
        f"ZooKeeper node {zk_chroot} on {zk_server.hosts} (zookeeper.chroot) is not ours: its ACL grants "
        "world:anyone cdrwa, where gatekeeper needs digest:gatekeeper cdrwa alone; it was created by another "
        "client or account;")
    assert raw.get(f"{zk_chroot}/layout")[0] == b"the stranger's"  # nothing adopted, nothing written


def test_a_chroot_of_another_account_or_password_is_refused(zk_server, zk_chroot, cleanup):
    ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start().stop()
    with pytest.raises(ChrootNotOwned) as exc:
        ZKClient(zk_server.hosts, chroot=zk_chroot, auth=DigestAuth("gatekeeper", "wrong")).start(timeout=10)
    assert str(exc.value).startswith(
        f"ZooKeeper node {zk_chroot} on {zk_server.hosts} (zookeeper.chroot) does not let user gatekeeper read it: "
        "either zookeeper.auth's password (GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD) is not the one it was created with, "
        "or it is not ours (it was created by another client or account;")
    with pytest.raises(ChrootNotOwned, match="does not let user mallory read it"):
        ZKClient(zk_server.hosts, chroot=zk_chroot, auth=DigestAuth("mallory", "x")).start(timeout=10)


def test_split_auth_config_reaches_the_server(zk_server, zk_chroot, tmp_path, raw, cleanup):
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(f"zookeeper:\n  hosts: {zk_server.hosts}\n  chroot: {zk_chroot}\n"
                    "  auth: {username: gatekeeper}\n")
    config = load_service_config(path, environ={"GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD": OWNER.password})
    zk = ZKClient(config.get("zookeeper", "hosts"), **config.zk_kwargs()).start()
    try:
        zk.client.create("/nodepool/nodes/0001", b"{}", makepath=True)
        assert zk.client.get_acls("/")[0] == [make_digest_acl(OWNER.username, OWNER.password, all=True)]
    finally:
        zk.stop()
    with pytest.raises(NoAuthError):
        raw.get(f"{zk_chroot}/nodepool/nodes/0001")


def run_cli(config_path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *argv, "-c", str(config_path)],
                          capture_output=True, text=True, check=False, timeout=60, env=env)


def test_commands_say_why_zookeeper_refuses_them(zk_server, zk_chroot, tmp_path, raw, cleanup):
    """A stranger's chroot, or our tree without the password: a sentence and exit 1, never a traceback."""
    owner = ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start()
    owner.client.create("/nodepool/nodes/0001", b"{}", makepath=True)
    owner.stop()
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"zookeeper:\n  hosts: {zk_server.hosts}\n  chroot: {zk_chroot}\n")
    proc = run_cli(config, "nodes")
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.strip() == ("ZooKeeper refused access to gatekeeper's data: zookeeper.auth is missing or "
                                   "its password is wrong (set it in the config or as "
                                   "GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD)")

    stranger_chroot = f"{zk_chroot}-stranger"
    raw.create(stranger_chroot, b"")
    try:
        config.write_text(f"zookeeper:\n  hosts: {zk_server.hosts}\n  chroot: {stranger_chroot}\n"
                          "  auth: {username: gatekeeper, password: s3cret}\n")
        proc = run_cli(config, "nodes")
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert f"ZooKeeper node {stranger_chroot} on {zk_server.hosts} (zookeeper.chroot) is not ours" in proc.stderr
    finally:
        raw.delete(stranger_chroot, recursive=True)


def test_a_chroot_below_someone_elses_node_is_refused(zk_server, zk_chroot, cleanup):
    ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start().stop()
    with pytest.raises(ChrootNotOwned) as exc:
        ZKClient(zk_server.hosts, chroot=f"{zk_chroot}/mine", auth=DigestAuth("mallory", "x")).start(timeout=10)
    assert str(exc.value) == (f"cannot create ZooKeeper node {zk_chroot}/mine on {zk_server.hosts} "
                              "(zookeeper.chroot): a node above it does not let user mallory create children; "
                              "choose another zookeeper.chroot")


def test_a_chroot_an_older_gatekeeper_left_open_is_taken_over_only_if_all_in_it_is_ours(zk_server, zk_chroot, raw,
                                                                                           cleanup):
    acl = make_digest_acl(OWNER.username, OWNER.password, all=True)
    raw.create(zk_chroot, b"")  # open to anyone, as gatekeeper used to create it
    with pytest.raises(ChrootNotOwned, match="is not ours"):  # empty: nothing proves it is ours
        ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start(timeout=10)
    raw.create(f"{zk_chroot}/nodepool", b"", acl=[acl])
    raw.create(f"{zk_chroot}/planted", b"")  # someone else's node in it: refused
    with pytest.raises(ChrootNotOwned, match="is not ours"):
        ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start(timeout=10)
    raw.delete(f"{zk_chroot}/planted")
    owner = ZKClient(zk_server.hosts, chroot=zk_chroot, auth=OWNER).start(timeout=10)
    try:
        assert owner.client.get_acls("/")[0] == [acl]
        with pytest.raises(NoAuthError):
            raw.create(f"{zk_chroot}/intruder", b"")
    finally:
        owner.stop()
