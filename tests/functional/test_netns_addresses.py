"""Network-namespace hosts: an address given back when a boot fails before the host exists; a bridge whose own
address never changes."""

from __future__ import annotations

import socket
import subprocess

import pytest

from gatekeeper.sim.openstack.hosts import HostSpec, NetnsBackend

pytestmark = pytest.mark.netns


def test_a_boot_that_fails_in_preparation_returns_its_address(tmp_path):
    backend = NetnsBackend(str(tmp_path / "hosts"))
    try:
        free = len(backend._free_octets)
        for i in range(3):
            with pytest.raises(Exception):  # noqa: B017 (any failure to unpack the damaged disk)
                backend.boot(HostSpec(f"s{i}", f"h{i}", disk=b"not a tar archive"))
        assert len(backend._free_octets) == free
    finally:
        backend.close()


def _mac(device: str) -> str:
    with open(f"/sys/class/net/{device}/address") as f:
        return f.read().strip()


def test_the_bridge_keeps_its_address_while_servers_come_and_go_so_hosts_keep_reaching_it(tmp_path):
    """A Linux bridge takes the lowest address of its ports unless it has one of its own: a server whose port has a
    lower address would change it, and every other host's ARP entry for the bridge (the simulators, Gerrit) would
    point nowhere until it expired. Here a port with the lowest address there is joins and leaves, and a server
    boots and is deleted: the bridge's address never changes, and a host still reaches the bridge at once."""
    backend = NetnsBackend(str(tmp_path / "hosts"))
    port, peer = f"{backend.tag}lo", f"{backend.tag}lp"
    try:
        before = _mac(backend.bridge)
        address = backend.boot(HostSpec("s1", "h1"))
        subprocess.run(["ip", "link", "add", port, "address", "02:00:00:00:00:01", "type", "veth", "peer", "name",
                        peer], check=True)
        subprocess.run(["ip", "link", "set", port, "master", backend.bridge, "up"], check=True)
        assert _mac(backend.bridge) == before
        backend.boot(HostSpec("s2", "h2"))
        backend.destroy("s2")
        subprocess.run(["ip", "link", "del", port], check=True)
        assert _mac(backend.bridge) == before
        with socket.create_server((f"{backend.subnet}.1", 0)) as server:
            namespace = backend.hosts["s1"].extra["netns"]
            reach = subprocess.run(["ip", "netns", "exec", namespace, "timeout", "3", "bash", "-c",
                                    f"echo > /dev/tcp/{backend.subnet}.1/{server.getsockname()[1]}"])
        assert reach.returncode == 0, f"{address} could not reach the bridge"
    finally:
        subprocess.run(["ip", "link", "del", port], capture_output=True)
        backend.close()
