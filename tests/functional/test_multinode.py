"""Multi-node builds (Zuul's nodesets) over real wires: a real launcher on the OpenStack simulator (its servers are
sshd hosts), real ZooKeeper, the real executor.

    a two-node job: one node request, both nodes from one provider; a step on the primary reads the inventory and
    ssh'es to the other node (StrictHostKeyChecking=yes) by the address it names; both nodes are deleted after;
    a failing two-node build holds both nodes (one unit of the hold cap each: over the cap, neither is held);
    the other node vanishing mid-run is a NODE_FAILURE; a one-node job gets no inventory, as before.
"""

from __future__ import annotations

import os
import threading

import pytest

from gatekeeper.executor import logs
from gatekeeper.executor.build import BuildRunner, ExecutorSettings
from gatekeeper.executor.console import ConsoleRegistry
from gatekeeper.executor.nodes import FixedNodes, LauncherNodes
from gatekeeper.executor.workspace import GitCache
from gatekeeper.launcher import model
from gatekeeper.launcher.client import add_autohold
from gatekeeper.launcher.model import Autohold
from gatekeeper.sim.devstack import NOVA_COMPUTE
from gatekeeper.zk.builds import FAILURE, NODE_FAILURE, SUCCESS, BuildRequest
from tests.functional import test_executor as fixed
from tests.functional import test_launcher as base
from tests.functional.test_executor_e2e import E2E, e2e_layout
from tests.functional.test_launcher import node_records, pool_yaml, provider_yaml, servers, wait_live
from tests.helpers import wait_for

ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher
hosts = fixed.hosts  # sshd hosts without a launcher, for FixedNodes

NODESET = {"name": "two-node", "nodes": [{"name": "controller", "label": "debian"},
                                         {"name": "compute1", "label": "debian"}],
           "groups": [{"name": "subnodes", "nodes": ["compute1"]}]}
# the address and port of compute1, read from the inventory the executor wrote on the primary
PEER = ("addr=$(awk '/^  compute1:/{f=1} f && /address:/{print $2; exit}' \"$GK_INVENTORY\"); "
        "port=$(awk '/^  compute1:/{f=1} f && /port:/{print $2; exit}' \"$GK_INVENTORY\"); ")
SSH = "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -i \"$GK_SSH_KEY\" -p \"$port\""


class Rig:
    def __init__(self, tmp_path, zk, **settings) -> None:
        self.store = logs.LogStore(str(tmp_path / "logstore"), "http://logs.example.com")
        self.consoles = ConsoleRegistry()
        self.runner = BuildRunner(ExecutorSettings(work_dir=str(tmp_path / "builds"), **settings),
                                  GitCache(str(tmp_path / "cache"), lambda project: str(tmp_path / project)),
                                  LauncherNodes(zk, "executor-test"), self.store, self.consoles, "executor-test")

    def run(self, steps: list[str], nodeset: dict | None = None, label: str = "", number: int = 1, **kw):
        request = BuildRequest(pipeline="check", job="multinode", label=label, nodeset=nodeset or {},
                               changes=f"{number},1",
                               change={"project": "org/a", "branch": "master", "number": number, "patchset": 1},
                               repo_state={"branches": {}, "steps": []},
                               params={"run": steps, "timeout": 120, "workdir": ".", **kw})
        return self.runner.run(request)

    def log_dir(self, result) -> str:
        return self.store.local_path(result.log_url.removeprefix(self.store.url + "/").rstrip("/"))

    def console(self, result) -> str:
        with open(os.path.join(self.log_dir(result), "console.txt"), encoding="utf-8") as f:
            return f.read()


@pytest.fixture
def rig(tmp_path, zk, sim, start_launcher):
    def make(**settings) -> Rig:
        start_launcher(pool_yaml({"debian": 0}, provider_yaml("prov-a", "alpha", max_servers=3),
                                 provider_yaml("prov-b", "beta", max_servers=3)))
        wait_live(zk, 2)
        return Rig(tmp_path, zk, **settings)

    return make


def test_two_node_job_reaches_the_other_node_by_its_inventory_and_releases_both(rig, zk, sim):
    r = rig()
    result = r.run(["cat \"$GK_INVENTORY\"",
                    PEER + SSH + " \"root@$addr\" 'echo \"on the peer: $SSH_CONNECTION\"'",
                    "ssh -o BatchMode=yes compute1 'echo \"by name: $(hostname)\"'",
                    "echo \"nodes=$GK_NODES primary=$GK_PRIMARY subnodes=$GK_SUBNODES at $GK_SUBNODE_ADDRESSES\""],
                   nodeset=NODESET)
    console = r.console(result)
    assert result.result == SUCCESS, console
    controller, compute1 = result.node["nodeset"]
    assert (controller["name"], compute1["name"]) == ("controller", "compute1")
    assert controller["provider"] == compute1["provider"] and controller["id"] != compute1["id"]
    assert result.node["name"] == controller["id"]  # the primary is the build's node
    # the command ran on compute1, over a connection from the primary
    assert f"on the peer: {controller['address']} " in console and f" {compute1['address']} " in console
    assert f"by name: gk-debian-{compute1['id']}" in console  # the simulator names a server after its node
    assert (f"nodes=controller compute1 primary=controller subnodes=compute1 at {compute1['address']}"
            in console)
    text = [line.split(" | ", 1)[1] for line in console.splitlines()]
    at = text.index("groups:")  # the inventory's groups, as the primary's `cat` showed them
    assert text[at + 1:at + 3] == ["  subnodes:", "  - compute1"]
    assert {"syslog.txt", "compute1-syslog.txt"} <= set(os.listdir(r.log_dir(result)))
    # both nodes were given back used: the launcher deletes them, and their servers
    wait_for(lambda: not ({controller["id"], compute1["id"]} & set(node_records(zk))), 30, "both nodes deleted")
    wait_for(lambda: not servers(sim, "alpha") and not servers(sim, "beta"), 30, "both servers deleted")


def test_failed_two_node_build_holds_both_nodes_within_the_hold_cap(rig, zk):
    r = rig(max_held=3)
    first = r.run(["ssh -o BatchMode=yes compute1 true", "exit 3"], nodeset=NODESET, number=1)
    assert first.result == FAILURE, r.console(first)
    ids = [n["id"] for n in first.node["nodeset"]]
    records = node_records(zk)
    assert [records[i].state for i in ids] == [model.HOLD, model.HOLD]
    assert records[ids[0]].hold_reason == records[ids[1]].hold_reason and "multinode" in records[ids[0]].hold_reason
    assert first.node.get("held_until")
    # two held, a cap of three: a second failing two-node build does not fit, so neither of its nodes is held
    second = r.run(["exit 3"], nodeset=NODESET, number=2)
    assert second.result == FAILURE
    second_ids = [n["id"] for n in second.node["nodeset"]]
    wait_for(lambda: not (set(second_ids) & set(node_records(zk))), 30, "the second build's nodes deleted")
    assert "held_until" not in second.node


def test_other_node_vanishing_mid_run_is_a_node_failure(rig, zk, sim):
    r = rig()
    killed: list[str] = []

    def kill_peer() -> None:
        def waiting() -> str | None:
            for build_id in r.consoles.running():
                console = r.consoles.get(build_id)
                text = open(console.path, encoding="utf-8").read() if console else ""
                if "peer up" in text:
                    return text.split("NODESET_NODE=compute1 ", 1)[1].split(" ", 1)[0]
            return None

        node_id = wait_for(waiting, 60, "the build waiting on its peer")
        record = node_records(zk)[node_id]
        sim.backend.destroy(record.external_id)
        killed.append(node_id)

    killer = threading.Thread(target=kill_peer, daemon=True)
    killer.start()
    # the step polls the other node until it stops answering, then fails as a change's step would
    result = r.run(["echo peer up; while ssh -o BatchMode=yes -o ConnectTimeout=2 compute1 true; do sleep 0.2; done; "
                    "exit 1"], nodeset=NODESET)
    killer.join(30)
    assert killed and result.result == NODE_FAILURE, r.console(result)
    assert "compute1" in result.message and "stopped answering" in result.message


def test_one_node_job_gets_no_inventory_and_runs_as_before(rig, zk):
    r = rig()
    result = r.run(["test -z \"$GK_INVENTORY\" && test ! -e \"$HOME/gatekeeper/inventory.yaml\"",
                    "test ! -e \"$HOME/.ssh/id_gatekeeper\"", "echo one node"], label="debian")
    assert result.result == SUCCESS, r.console(result)
    assert "nodeset" not in result.node and "NODESET_NODE" not in r.console(result)
    wait_for(lambda: result.node["name"] not in node_records(zk), 30, "the node deleted")


# -- through the whole system: layout, scheduler, ZooKeeper, executor service ----------------------------------
E2E_LAYOUT = e2e_layout("""\
  - name: multinode
    nodeset: pair
    timeout: 60
    attempts: 1
    run: ['ssh -o BatchMode=yes compute1 "echo from the peer: \\$(hostname)"']
  - name: multinode-broken
    nodeset: pair
    attempts: 1
    run: ['ssh -o BatchMode=yes compute1 "exit 1"']
""", "{check: [multinode]}", {"ubuntu-jammy": ("jammy", "debian-12")},
    more_projects="  - name: openstack/glance\n    pipelines: {check: [multinode-broken]}\n") + """\
nodesets:
  - name: pair
    nodes:
      - {name: controller, label: ubuntu-jammy}
      - {name: compute1, label: ubuntu-jammy}
"""


def test_a_layouts_nodeset_job_runs_on_two_nodes_and_votes(tmp_path, zk_factory):
    rig = E2E(tmp_path, zk_factory, layout=E2E_LAYOUT)
    try:
        gate = rig.gate
        change = gate.change("openstack/nova", "Tidy boot", files={"nova/compute.py": NOVA_COMPUTE + "# tidy\n"})
        gate.settle(120)
        (result,) = rig.results(change)
        console = open(os.path.join(rig.log_dir(result), "console.txt"), encoding="utf-8").read()
        assert gate.ci_votes(change) == {"Verified": 1}, console
        controller, compute1 = result.node["nodeset"]
        assert (controller["name"], compute1["name"]) == ("controller", "compute1")
        # the simulator names a server after its node: the command ran on compute1
        (said,) = [line for line in console.splitlines() if "| from the peer: " in line]
        assert said.endswith(f"-{compute1['id']}")
    finally:
        rig.stop()


def test_an_autohold_holds_every_node_of_a_failed_build_and_counts_it_once(rig, zk):
    add_autohold(zk, Autohold(project="org/a", job="multinode", count=1, hold_hours=2, reason="look at both"))
    r = rig(max_held=0)  # only the autohold holds anything
    first = r.run(["exit 3"], nodeset=NODESET, number=1)
    assert first.result == FAILURE
    records = node_records(zk)
    held = [records[n["id"]] for n in first.node["nodeset"]]
    assert [(n.state, n.hold_reason) for n in held] == [(model.HOLD, "look at both")] * 2
    # the one unit went to that build, whatever its number of nodes: the next failure is not held
    second = r.run(["exit 3"], nodeset=NODESET, number=2)
    assert second.result == FAILURE and "held_until" not in second.node


def test_other_node_unreachable_before_the_job_is_a_node_failure_and_both_go_back(hosts, tmp_path):
    primary = hosts.boot("debian")
    # a node whose host is gone: nothing answers at its address, so it cannot be set up
    dead = hosts.boot("debian")
    hosts.destroy(dead)
    source = FixedNodes([primary, dead])
    runner = BuildRunner(ExecutorSettings(work_dir=str(tmp_path / "builds")),
                         GitCache(str(tmp_path / "cache"), lambda project: str(tmp_path / project)), source,
                         logs.LogStore(str(tmp_path / "logstore"), "http://logs.example.com"), ConsoleRegistry(),
                         "executor-test")
    request = BuildRequest(pipeline="check", job="multinode", nodeset=NODESET, changes="1,1",
                           change={"project": "org/a", "branch": "master", "number": 1, "patchset": 1},
                           repo_state={"branches": {}, "steps": []},
                           params={"run": ["touch ran"], "timeout": 60, "workdir": "."})
    result = runner.run(request)
    assert result.result == NODE_FAILURE and "before the job started" in result.message, result.message
    assert dead.address in result.message
    assert sorted(source.released) == sorted([(primary.id, False, ""), (dead.id, False, "")])
    assert not os.path.exists(os.path.join(hosts.home(primary), "workspace", "ran"))


def test_a_failed_nodeset_jobs_report_names_every_held_node(tmp_path, zk_factory):
    rig = E2E(tmp_path, zk_factory, layout=E2E_LAYOUT)
    try:
        gate = rig.gate
        change = gate.change("openstack/glance", "Break the peer")
        gate.settle(120)
        assert gate.ci_votes(change) == {"Verified": -1}
        (result,) = rig.results(change)
        controller, compute1 = (n["id"] for n in result.node["nodeset"])
        assert [rig.node(n).state for n in (controller, compute1)] == [model.HOLD, model.HOLD]
        assert any(f"Its node {controller} is held until" in m
                   and f"The other nodes of its nodeset are held too: {compute1}." in m
                   for m in gate.ci_messages(change))
    finally:
        rig.stop()
