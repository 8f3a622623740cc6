"""Which ready nodes a node request gets: all from one provider that has every label, in the order the labels were
asked for, the oldest ready nodes first, and only from the provider it names when it names one. Over real wires:
ZooKeeper, the OpenStack simulator over HTTP, nodes that are SSH hosts."""

from __future__ import annotations

import threading

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from gatekeeper.launcher.launcher import Launcher
from gatekeeper.zk import paths
from tests.functional import test_launcher
from tests.helpers import wait_for

# the fixtures of the launcher tests: the simulator's two clouds, and the key nodes are reached with
sim, ssh_key = test_launcher.sim, test_launcher.ssh_key


def provider(name: str, cloud: str, labels: list[str], max_servers: int, extra: str = "") -> str:
    pool_labels = ", ".join(f"{{name: {label}, image: deb, flavor: small}}" for label in labels)
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n      max-servers: {max_servers}\n"
            f"{extra}      pools: [{{name: main, labels: [{pool_labels}]}}]\n"
            "      images: [{name: deb, base-image: debian-12}]\n")


@pytest.fixture
def start_launcher(zk_factory, sim, ssh_key):
    started: list[Launcher] = []

    def start(min_ready: dict[str, int], *providers: str) -> Launcher:
        labels = ", ".join(f"{{name: {n}, min-ready: {m}}}" for n, m in min_ready.items())
        nodepool = parse_layout({"nodepool.yaml": f"nodepool:\n  labels: [{labels}]\n  providers:\n"
                                                  + "".join(providers)}).nodepool
        launcher = Launcher(zk_factory(), nodepool, ssh_key=ssh_key, clouds_yaml=sim.clouds_yaml, owner="gatekeeper",
                            poll_interval=0.05, delete_verify_timeout=5.0)
        started.append(launcher)
        return launcher.start()

    yield start
    for launcher in started:
        launcher.stop()


def ready(zk, label: str) -> list[tuple[str, str]]:
    """(provider, node id) of the label's ready nodes, oldest first."""
    try:
        entries = sorted(zk.client.get_children(paths.ready_node(label)))
    except Exception:
        return []
    return [(e.split("-", 1)[1].rsplit("-", 1)[0], e.rsplit("-", 1)[1]) for e in entries]


def wait_ready(zk, label: str, count: int) -> list[tuple[str, str]]:
    return wait_for(lambda: (found := ready(zk, label)) and len(found) == count and found, 30,
                    f"{count} ready {label} nodes")


def take(client: NodeRequestClient, labels: list[str], provider: str = "") -> list[model.Node]:
    req = client.wait(client.request(labels, provider=provider), 30)
    assert req.state == model.FULFILLED, req.reason
    return client.lock_nodes(req)


def test_a_request_is_served_by_one_provider_with_every_label_in_the_order_asked(zk, start_launcher):
    start_launcher({"debian": 2, "fedora": 1}, provider("prov-a", "alpha", ["debian"], 1, "      priority: 1\n"),
                   provider("prov-b", "beta", ["debian", "fedora"], 6))
    wait_ready(zk, "debian", 2)
    [(_, fedora)] = wait_ready(zk, "fedora", 1)
    client = NodeRequestClient(zk, "mixed")
    nodes = take(client, ["fedora", "debian"])
    # only prov-b has both labels: it serves both nodes, the fedora one first as asked
    assert [(n.provider, n.label) for n in nodes] == [("prov-b", "fedora"), ("prov-b", "debian")]
    assert nodes[0].id == fedora


def test_a_named_provider_is_kept_to_and_otherwise_the_oldest_ready_node_goes_first(zk, start_launcher):
    # room for one server on each provider: one ready debian node on each
    start_launcher({"debian": 2}, provider("prov-a", "alpha", ["debian"], 1), provider("prov-b", "beta", ["debian"], 1))
    first, second = wait_ready(zk, "debian", 2)
    assert first[0] != second[0]
    client = NodeRequestClient(zk, "oldest")
    [named] = take(client, ["debian"], provider=second[0])
    assert (named.provider, named.id) == second, "the named provider's node, although another is older"
    assert first in ready(zk, "debian")
    client.release(named)  # used: deleted, and a new ready node takes its place
    wait_for(lambda: len(ready(zk, "debian")) == 2 and first in ready(zk, "debian"), 30, "a new ready node")
    [node] = take(client, ["debian"])
    assert (node.provider, node.id) == first, "not the node that has waited longest"


def test_a_request_for_more_nodes_than_one_provider_has_ready_is_launched_on_one_provider(zk, start_launcher):
    start_launcher({"debian": 2}, provider("prov-a", "alpha", ["debian"], 1), provider("prov-b", "beta", ["debian"], 3))
    wait_ready(zk, "debian", 2)
    client = NodeRequestClient(zk, "pair")
    nodes = take(client, ["debian", "debian"])
    assert len({n.provider for n in nodes}) == 1 and len({n.id for n in nodes}) == 2


def test_a_request_withdrawn_while_its_fulfilment_is_in_flight_leaves_its_nodes_as_ready_spares(zk, start_launcher):
    """The launcher does not wait for ZooKeeper's answers: the fulfilment of a request it launched for can be
    in flight when the consumer withdraws the request. The nodes launched for it must end as ready spares in the
    index (handed to the next request), not as records nobody hands out or deletes."""
    launcher = start_launcher({"l1": 0, "l2": 0}, provider("prov-a", "alpha", ["l1", "l2"], 4))
    client = NodeRequestClient(zk, "withdraws")
    send = launcher.store.fulfil_async
    withdrawn = []

    def withdraw_first(request, *args, **kwargs):
        if not withdrawn:  # the consumer gives up just as the launcher sends the fulfilment
            withdrawn.append(request.id)
            client.store.cancel_request(request.id)
        return send(request, *args, **kwargs)

    launcher.store.fulfil_async = withdraw_first
    first = client.request(["l1", "l2"])
    wait_for(lambda: withdrawn == [first], 30, "the fulfilment sent after the request was withdrawn")
    spares = wait_for(lambda: (found := ready(zk, "l1") + ready(zk, "l2")) and len(found) == 2 and found, 30,
                      "both launched nodes ready")
    records = {n.id: n for n, _ in launcher.store.load_nodes().values()}
    assert all(records[node_id].state == model.READY and not records[node_id].request for _, node_id in spares)
    nodes = take(client, ["l2", "l1"])
    assert sorted(n.id for n in nodes) == sorted(node_id for _, node_id in spares)


def test_a_node_up_while_another_of_its_request_boots_again_is_shown_allocated_with_its_address(zk, sim,
                                                                                               start_launcher):
    """As Nodepool shows a node launched for a request once it is up: while another node of the same request
    boots again (its first boot failed), the one that is up is recorded allocated to the request, with its
    address; both are handed out together."""
    sim.cloud("alpha").set_faults(boot_errors=1, boot_delay=1.0)
    try:
        launcher = start_launcher({"l1": 0, "l2": 0}, provider("prov-a", "alpha", ["l1", "l2"], 4))
        client = NodeRequestClient(zk, "two-nodes")
        rid = client.request(["l1", "l2"])

        def up_while_pending() -> bool:
            req = launcher.store.read_request(rid)
            nodes = [n for n, _ in launcher.store.load_nodes().values() if n.request == rid]
            return bool(req) and req[0].state == model.PENDING and any(
                n.state == model.ALLOCATED and n.address for n in nodes)
        wait_for(up_while_pending, 30, "a node allocated with its address while the other boots again")
        req = client.wait(rid, 60)
        assert req.state == model.FULFILLED, req.reason
        assert [n.label for n in client.lock_nodes(req)] == ["l1", "l2"]
    finally:
        sim.cloud("alpha").set_faults(boot_errors=0, boot_delay=0)


def test_the_launcher_sends_no_zookeeper_request_from_kazoos_connection_thread(zk, start_launcher):
    """The request and release watches are handled on kazoo's connection thread (one thread switch less): a request
    sent from there could block that thread for good (kazoo wakes it through a socket only it drains, and a busy
    launcher fills it), so everything they need sent goes through the main loop."""
    launcher = start_launcher({"debian": 2}, provider("prov-b", "beta", ["debian"], 4))
    kz = launcher.kz
    wait_ready(zk, "debian", 2)
    connection_thread = kz._connection._connection_routine
    sent_from = []
    kazoo_call = kz._call

    def call(request, async_object):
        if threading.current_thread() is connection_thread:
            sent_from.append(type(request).__name__)
        return kazoo_call(request, async_object)
    kz._call = call
    client = NodeRequestClient(zk, "threads")
    for _ in range(3):
        for node in take(client, ["debian"]):
            client.release(node)
    wait_ready(zk, "debian", 2)
    assert sent_from == []
