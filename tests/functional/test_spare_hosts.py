"""Spare hosts of the cloud simulator, on real sshd hosts: a host started ahead and bound to a server at its boot
is, to anyone who logs in, the host that boot would have started; a boot with an empty pool starts its own; the
pool is kept full; closing the backend leaves no process, namespace or file behind."""

from __future__ import annotations

import os
import subprocess

import paramiko
import pytest

from gatekeeper.sim.openstack.hosts import HostBackend, HostSpec, LoopbackBackend, NetnsBackend, pack_disk, unpack_disk
from tests.helpers import wait_for

ROOT = os.geteuid() == 0
KINDS = [pytest.param("netns", marks=pytest.mark.netns), "loopback"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    """Two key pairs: `login`, the one a server is booted with, and `stranger`, one it never heard of."""
    out = {}
    for name in ("login", "stranger"):
        path = str(tmp_path_factory.mktemp(name) / "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        out[name] = path
    return out


@pytest.fixture(params=KINDS)
def backend(request, tmp_path):
    b: HostBackend = (NetnsBackend if request.param == "netns" else LoopbackBackend)(str(tmp_path / "hosts"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def disk(tmp_path) -> bytes:
    """An image's disk: a file and a directory in the login's home."""
    (tmp_path / "image" / "cache").mkdir(parents=True)
    (tmp_path / "image" / "marker").write_text("from the image\n")
    (tmp_path / "image" / "cache" / "warm").write_text("warmed\n")
    return pack_disk(str(tmp_path / "image"))


def connect(backend: HostBackend, address: str, key: str) -> paramiko.SSHClient:
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    ssh.connect(address, backend.port, "root" if ROOT else os.environ.get("USER", ""), key_filename=key,
                look_for_keys=False, allow_agent=False, timeout=10)
    return ssh


def run(ssh: paramiko.SSHClient, command: str) -> str:
    _, out, _ = ssh.exec_command(command)
    return out.read().decode()


def what_a_login_sees(backend: HostBackend, server_id: str, key: str) -> dict[str, str]:
    """The hostname, the home's files, the private /opt and /var/log, and the host key, as a login finds them."""
    host = backend.hosts[server_id]
    ssh = connect(backend, host.address, key)
    try:
        netns = isinstance(backend, NetnsBackend)
        seen = {
            "hostname": run(ssh, "hostname" if netns else 'echo "$GK_HOSTNAME"').strip(),
            "home": run(ssh, "ls -AR ."),
            "marker": run(ssh, "cat marker cache/warm"),
            "private": run(ssh, "ls -A /opt /var/log") if netns else "",
            "scanned key": " ".join((ssh.get_transport().get_remote_server_key().get_name(),
                                     ssh.get_transport().get_remote_server_key().get_base64())),
        }
    finally:
        ssh.close()
    with open(os.path.join(host.workdir, "ssh_host_ed25519_key.pub")) as f:
        kind, blob, comment = f.read().split()
    seen["key file"], seen["key comment"] = f"{kind} {blob}", comment
    return seen


def test_a_spare_host_bound_to_a_server_is_what_a_boot_would_have_started(backend, keys, disk, tmp_path):
    pool = backend.spares
    pool.settle = 0
    pool.set_target(1)
    assert pool.wait_ready(60)
    spare = pool.hosts()[0]
    pool.settle = 3600  # no refill from here on: the second boot finds the pool empty and starts its own host
    authorized = open(keys["login"] + ".pub").read()

    address = backend.boot(HostSpec("from-spare", "node-from-spare", authorized, disk))
    assert address == spare.address and pool.status().ready == 0
    cold_address = backend.boot(HostSpec("on-demand", "node-on-demand", authorized, disk))
    assert cold_address != address

    bound, cold = what_a_login_sees(backend, "from-spare", keys["login"]), \
        what_a_login_sees(backend, "on-demand", keys["login"])
    assert (bound["hostname"], bound["key comment"]) == ("node-from-spare", "node-from-spare")
    assert (cold["hostname"], cold["key comment"]) == ("node-on-demand", "node-on-demand")
    assert bound["marker"] == "from the image\nwarmed\n"
    assert bound["scanned key"] == bound["key file"] and cold["scanned key"] == cold["key file"]
    assert bound["key file"] != cold["key file"]
    same = ("home", "marker", "private")
    assert {k: bound[k] for k in same} == {k: cold[k] for k in same}
    with pytest.raises(paramiko.AuthenticationException):
        connect(backend, address, keys["stranger"]).close()

    if isinstance(backend, NetnsBackend):  # its /opt is its own, as a booted host's is
        marker = f"/opt/gk-spare-test-{os.getpid()}"
        ssh = connect(backend, address, keys["login"])
        try:
            run(ssh, f"mkdir -p {marker} && echo spare > {marker}/who")
            assert run(ssh, f"cat {marker}/who") == "spare\n"
        finally:
            ssh.close()
        assert not os.path.exists(marker)
        ssh = connect(backend, cold_address, keys["login"])
        try:
            assert "No such file" in run(ssh, f"cat {marker}/who 2>&1")
        finally:
            ssh.close()

    # a snapshot of it carries what its server wrote, and a delete ends it
    ssh = connect(backend, address, keys["login"])
    try:
        run(ssh, "echo written > after-boot")
    finally:
        ssh.close()
    unpack_disk(backend.snapshot("from-spare"), str(tmp_path / "snapshot"))
    assert (tmp_path / "snapshot" / "after-boot").read_text() == "written\n"
    backend.destroy("from-spare")
    with pytest.raises(OSError):
        connect(backend, address, keys["login"]).close()


def test_the_pool_keeps_its_count_as_boots_take_spares(backend, keys):
    pool = backend.spares
    pool.settle = 0
    pool.set_target(2)
    assert pool.wait_ready(60)
    before = {h.address for h in pool.hosts()}
    address = backend.boot(HostSpec("s1", "n1", open(keys["login"] + ".pub").read()))
    assert address in before
    wait_for(lambda: pool.status().ready == 2, 60, "the pool refilled to two spares")
    assert address not in {h.address for h in pool.hosts()}
    ssh = connect(backend, address, keys["login"])  # the server it went to is still there
    ssh.close()



def test_a_spare_whose_sshd_died_while_it_waited_is_never_bound(backend, keys):
    """(Its server would turn ACTIVE on an address nobody reaches.) The boot takes the next one, or starts one."""
    pool = backend.spares
    pool.settle = 0
    pool.set_target(1, refill=False)
    assert pool.wait_ready(60)
    [dead] = pool.hosts()
    for proc in dead.procs:
        proc.kill()
        proc.wait()
    address = backend.boot(HostSpec("s1", "n1", open(keys["login"] + ".pub").read()))
    assert pool.status().ready == 0
    ssh = connect(backend, address, keys["login"])  # a live host, started for the boot
    ssh.close()

def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("kind", KINDS)
def test_closing_the_backend_ends_its_spares_and_its_servers_hosts(kind, keys, tmp_path):
    backend = (NetnsBackend if kind == "netns" else LoopbackBackend)(str(tmp_path / "hosts"))
    try:
        backend.spares.settle = 0
        backend.spares.set_target(3)
        assert backend.spares.wait_ready(60)
        backend.boot(HostSpec("s1", "n1", open(keys["login"] + ".pub").read()))
        hosts = [*backend.spares.hosts(), *backend.hosts.values()]
        pids = [p.pid for h in hosts for p in h.procs]
        pids += [int(p) for h in hosts if "netns" in h.extra for p in subprocess.run(
            ["ip", "netns", "pids", h.extra["netns"]], capture_output=True, text=True).stdout.split()]
        assert len(hosts) >= 3 and all(_alive(p) for p in pids)
    finally:
        backend.close()
    assert not any(_alive(p) for p in pids)
    assert os.listdir(tmp_path / "hosts") == []
    if kind == "netns":
        assert backend.tag not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert backend.tag not in subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout


def test_a_server_name_with_shell_characters_is_its_hostname_and_runs_nothing(backend, keys, tmp_path):
    """A server's name is the cloud user's text: it reaches the host's hostname as it is, never a shell."""
    marker = tmp_path / "ran"
    name = f'x"$(touch${{IFS}}{marker})`touch${{IFS}}{marker}`'  # (no blank: the host key's comment is one word)
    address = backend.boot(HostSpec("s1", name, open(keys["login"] + ".pub").read()))
    seen = what_a_login_sees(backend, "s1", keys["login"])
    # (the kernel keeps 64 bytes of a hostname; the loopback backend hands the name to the login as it is)
    assert seen["hostname"] == (name[:64] if isinstance(backend, NetnsBackend) else name) and not marker.exists()
    assert address
