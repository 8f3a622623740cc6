"""Static hosts as Nodepool's static driver documents them: max-parallel-jobs, connection-port, a host's own
username and pinned host-key. Real ZooKeeper, and hosts that are real SSH servers."""

from __future__ import annotations

import os
import socket

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.sim.openstack.hosts import HostSpec
from tests.functional import test_launcher as base
from tests.functional.test_launcher import node_records, ready_ids
from tests.helpers import wait_for

# the launcher tests' fixtures: a key pair, the simulator (its host backend runs the static hosts), launchers
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher


def test_a_host_with_max_parallel_jobs_two_serves_two_nodes_at_once_and_a_third_waits(
        zk, sim, start_launcher, ssh_key):
    backend = sim.backend
    address = backend.boot(HostSpec("rack-0", "rack-0", open(ssh_key + ".pub").read()))
    try:
        with open(os.path.join(backend.hosts["rack-0"].workdir, "ssh_host_ed25519_key.pub")) as f:
            pinned = " ".join(f.read().split()[:2])
        other_key = " ".join(open(ssh_key + ".pub").read().split()[:2])  # a valid key; old-box is never reached
        start_launcher(
            "nodepool:\n  labels:\n    - {name: metal}\n    - {name: legacy}\n  providers:\n"
            "    - name: rack\n      driver: static\n      hosts:\n"
            f"        - {{name: rack-0, address: '{address}', connection-port: {backend.port}, labels: [metal], "
            f"host-key: '{pinned}', max-parallel-jobs: 2}}\n"
            f"        - {{name: old-box, address: 192.0.2.7, labels: [legacy], username: zuul, "
            f"host-key: '{other_key}'}}\n"
            f"        - {{name: new-box, address: 192.0.2.8, labels: [legacy], username: ubuntu, "
            f"host-key: '{other_key}'}}\n")
        wait_for(lambda: len(ready_ids(zk, "metal")) == 2, 30, "a ready node for each of rack-0's two slots")
        wait_for(lambda: len(ready_ids(zk, "legacy")) == 2, 30, "old-box and new-box ready")

        client = NodeRequestClient(zk, "parallel-jobs")
        first = client.wait(client.request(["metal"]), 30)
        second = client.wait(client.request(["metal"]), 30)
        assert first.state == second.state == model.FULFILLED
        nodes = client.lock_nodes(first) + client.lock_nodes(second)
        assert {n.external_id for n in nodes} == {"rack-0", "rack-0#2"}
        assert {(n.address, n.port) for n in nodes} == {(address, backend.port)}
        assert all(n.host_keys == [pinned] for n in nodes)
        sessions = [client.ssh(n) for n in nodes]  # both logged in at once, each verified against the pin
        try:
            for ssh in sessions:
                assert ssh.exec_command("echo ok")[1].read().decode().strip() == "ok"
        finally:
            for ssh in sessions:
                ssh.close()

        third_id = client.request(["metal"])  # both slots in use: it waits
        wait_for(lambda: client.get(third_id).state in (model.REQUESTED, model.PENDING), 10, "the third seen")
        assert client.get(third_id).state != model.FULFILLED
        client.release(nodes[1])
        third = client.wait(third_id, 30)
        assert third.state == model.FULFILLED and third.nodes == [nodes[1].id]  # the freed slot, reused

        # each host's node logs in as that host's user, on the default port
        legacy = {n.external_id: (n.username, n.port) for n in node_records(zk).values() if n.label == "legacy"}
        assert legacy == {"old-box": ("zuul", 22), "new-box": ("ubuntu", 22)}
    finally:
        backend.destroy("rack-0")


def test_nodes_of_a_static_host_removed_from_the_layout_are_deleted_once_idle(zk, sim, start_launcher, ssh_key):
    key = " ".join(open(ssh_key + ".pub").read().split()[:2])  # pinned: these hosts are never reached

    def rack(*names: str) -> str:
        return ("nodepool:\n  labels:\n    - {name: metal}\n  providers:\n"
                "    - name: rack\n      driver: static\n      hosts:\n" +
                "".join(f"        - {{name: {n}, address: 192.0.2.{i + 1}, labels: [metal], host-key: '{key}'}}\n"
                        for i, n in enumerate(names)))

    first = start_launcher(rack("box-a", "box-b", "box-c"))
    wait_for(lambda: len(ready_ids(zk, "metal")) == 3, 30, "a ready node on each host")
    client = NodeRequestClient(zk, "removed-hosts")
    [taken] = client.lock_nodes(client.wait(client.request(["metal"]), 30))
    kept_host = next(h for h in ("box-a", "box-b", "box-c") if h != taken.external_id)
    by_host = {n.external_id: n.id for n in node_records(zk).values()}
    idle_removed = next(by_host[h] for h in by_host if h not in (kept_host, taken.external_id))
    first.stop()

    start_launcher(rack(kept_host))  # the other two hosts leave the layout
    wait_for(lambda: idle_removed not in node_records(zk), 30, "the idle node of a removed host deleted")
    assert ready_ids(zk, "metal") == {by_host[kept_host]}
    assert node_records(zk)[taken.id].state == model.IN_USE  # a build still runs there: left until released
    client.release(taken)
    wait_for(lambda: taken.id not in node_records(zk), 30, "the released node of a removed host deleted")
    served = client.wait(client.request(["metal"]), 30)
    assert served.state == model.FULFILLED and served.nodes == [by_host[kept_host]]
    assert set(node_records(zk)) == {by_host[kept_host]}


def test_a_node_of_a_label_its_static_host_no_longer_has_is_deleted_once_released(zk, sim, start_launcher, ssh_key):
    key = " ".join(open(ssh_key + ".pub").read().split()[:2])  # pinned: this host is never reached

    def rack(label: str) -> str:
        return (f"nodepool:\n  labels:\n    - {{name: {label}}}\n  providers:\n"
                "    - name: rack\n      driver: static\n      hosts:\n"
                f"        - {{name: box-a, address: 192.0.2.1, labels: [{label}], host-key: '{key}'}}\n")

    first = start_launcher(rack("metal"))
    wait_for(lambda: len(ready_ids(zk, "metal")) == 1, 30, "a ready metal node")
    client = NodeRequestClient(zk, "relabelled-host")
    [taken] = client.lock_nodes(client.wait(client.request(["metal"]), 30))
    first.stop()

    start_launcher(rack("bare"))  # the host now serves another label
    client.release(taken)
    wait_for(lambda: taken.id not in node_records(zk), 30, "the released metal node deleted, not reused")
    wait_for(lambda: len(ready_ids(zk, "bare")) == 1, 30, "the host's slot serving its new label")
    assert not ready_ids(zk, "metal")
    assert [n.label for n in node_records(zk).values()] == ["bare"]


def test_nodepools_static_pools_and_nodes_serve_and_a_nodes_timeout_bounds_its_key_scan(
        zk, sim, start_launcher, ssh_key):
    backend = sim.backend
    address = backend.boot(HostSpec("rack-0", "rack-0", open(ssh_key + ".pub").read()))
    silent = socket.create_server(("127.0.0.1", 0))  # takes connections, never says a word: a host that hangs
    try:
        # Nodepool's static driver configuration, as its documentation writes it (pools of nodes)
        start_launcher(
            "nodepool:\n  labels:\n    - {name: metal}\n    - {name: hung}\n  providers:\n"
            "    - name: static-rack\n      driver: static\n      boot-timeout: 60\n      launch-retries: 1\n"
            "      pools:\n        - name: main\n          nodes:\n"
            f"            - name: '{address}'\n              labels: metal\n"
            f"              connection-port: {backend.port}\n              username: root\n"
            "              max-parallel-jobs: 1\n              host-key-checking: true\n"
            "            - name: 127.0.0.1\n              labels: [hung]\n"
            f"              connection-port: {silent.getsockname()[1]}\n              timeout: 1\n")
        client = NodeRequestClient(zk, "nodepool-static")
        [node] = client.lock_nodes(client.wait(client.request(["metal"]), 30))
        assert (node.external_id, node.address, node.username) == (address, address, "root")
        with client.ssh(node) as ssh:  # its host key was scanned when its node was made, and is checked
            assert ssh.exec_command("echo ok")[1].read().decode().strip() == "ok"
        client.release(node)
        # the hung host's scan gives up after its timeout (1 s), not the provider's boot-timeout (60 s)
        hung = client.wait(client.request(["hung"]), 20)
        assert hung.state == model.REQUEST_FAILED and "127.0.0.1" in hung.reason, hung.reason
    finally:
        silent.close()
        backend.destroy("rack-0")
