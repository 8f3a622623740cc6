"""End to end: real ZooKeeper, the Gerrit simulator, merger, scheduler, launcher on the cloud simulator (nodes are
real sshd hosts) and the executor running the devstack stand-in against the nova stand-in.

    good change -> check +1, gate +2, merged; broken nova -> -1, logs archived, node held;
    node killed mid-run -> NODE_FAILURE, retried on another node, passes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.executor.build import ExecutorSettings
from gatekeeper.executor.logs import LogStore
from gatekeeper.executor.remote import RemoteHost
from gatekeeper.executor.service import ExecutorService
from gatekeeper.gitrepo import ssh_command
from gatekeeper.launcher import model
from gatekeeper.launcher.client import add_autohold, read_node
from gatekeeper.launcher.launcher import Launcher
from gatekeeper.launcher.model import Autohold
from gatekeeper.sim.devstack import BROKEN_NOVA_COMPUTE, NOVA_COMPUTE, seed_devstack, seed_nova
from gatekeeper.sim.openstack.sim import CloudSim
from tests.functional.gate_harness import LAYOUT as GATE_LAYOUT
from tests.functional.gate_harness import GateHarness, wait_for

PROJECTS = ("openstack/nova", "openstack-dev/devstack", "openstack/glance")
INTEGRATED = ("openstack/nova", "openstack-dev/devstack")  # the projects that share the integrated queue


def devstack_job(label: str = "ubuntu-jammy", variants: str = "", collect: str = "") -> str:
    """The devstack job the end-to-end tests run (stack.sh then exercise.sh on nova and devstack), as layout text;
    `variants` and `collect` are the YAML values of those keys, when given."""
    return (f"  - name: devstack\n    label: {label}\n"
            + (f"    variants:{variants}\n" if variants else "")
            + """\
    timeout: 120
    attempts: 3
    required-projects: [openstack/nova, openstack-dev/devstack]
    run: [./stack.sh, ./exercise.sh]
    devstack:
      localrc:
        ADMIN_PASSWORD: e2e-admin-secret
        ENABLED_SERVICES: key,g-api,n-api,n-cpu
        SCREEN_LOGDIR: logs
        LOGFILE: logs/stack.sh.log
"""
            + (f"    collect: {collect}\n" if collect else ""))


def e2e_layout(jobs: str, pipelines: str, labels: dict[str, tuple[str, str]], *, per_branch: bool = False,
               more_projects: str = "", min_ready: int = 0) -> str:
    """The gate's pipelines, `jobs` (layout text), nova and devstack in the integrated queue (a queue per branch
    with `per_branch`) running `pipelines`, and one cloud-simulator provider with `labels` ({label: (image, base
    image)}); the text other tests edit keeps this shape."""
    return (GATE_LAYOUT.split("queues:")[0] + "\nqueues:\n  - name: integrated\n"
            + ("    per-branch: true\n" if per_branch else "")
            + "jobs:\n" + jobs + "projects:\n"
            + "".join(f"  - name: {project}\n    queue: integrated\n    pipelines: {pipelines}\n"
                      for project in INTEGRATED)
            + more_projects + "nodepool:\n  labels:\n"
            + "".join(f"    - {{name: {label}" + (f", min-ready: {min_ready}" if min_ready else "") + "}\n"
                      for label in labels)
            + """\
  providers:
    - name: sim-alpha
      driver: openstack
      cloud: alpha
      max-servers: 4
      boot-timeout: 20
      pools:
        - name: main
"""
            + "          labels: [" + ", ".join(f"{{name: {label}, image: {image}, flavor: small}}"
                                               for label, (image, _) in labels.items()) + "]\n"
            + "      images:\n"
            + "".join(f"        - name: {image}\n          base-image: {base}\n" for image, base in labels.values()))


LAYOUT = e2e_layout(
    devstack_job(collect="[logs/screen-*.log, logs/stack.sh.log, /var/log/syslog]") + """\
  - name: hang
    label: ubuntu-jammy
    timeout: 3
    attempts: 1
    run: ['echo hanging; sleep 300 & echo $! > "$HOME/hang.pid"; wait']
""", "{check: [devstack], gate: [devstack]}", {"ubuntu-jammy": ("jammy", "debian-12")},
    more_projects="  - name: openstack/glance\n    pipelines: {check: [hang]}\n", min_ready=1)


class ExecutorAdapter:
    """What GateHarness reads from its executor, from the real executor's history."""

    def __init__(self, service: ExecutorService) -> None:
        self.service = service

    def held(self) -> list:
        return []

    @property
    def history(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(job=req.job, result=res.result, changes=req.changes)
                for req, res in self.service.history]

    def stop(self) -> None:
        self.service.stop()


class E2E:
    def __init__(self, root, zk_factory, layout: str = LAYOUT) -> None:
        self.gate = GateHarness(root / "gate", zk_factory, layout_text=layout, projects=PROJECTS)
        self.cloud: CloudSim | None = None
        self.launcher: Launcher | None = None
        try:
            self.gate.executor.stop()  # the in-process stand-in executor: the real one takes its place
            sim = self.gate.sim
            seed_devstack(sim.project("openstack-dev/devstack").repo.path)
            seed_nova(sim.project("openstack/nova").repo.path)
            key = str(root / "node_key")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
            self.cloud = CloudSim(["alpha"], workdir=str(root / "cloud"))
            nodepool = parse_layout({"layout.yaml": layout}).nodepool
            self.launcher = Launcher(zk_factory(), nodepool, ssh_key=key, clouds_yaml=self.cloud.clouds_yaml,
                                     poll_interval=0.05, delete_verify_timeout=5.0).start()
            self.store = LogStore(str(root / "logs"), "http://logs.example.com")
            self.executor = ExecutorService(
                zk_factory(), ExecutorSettings(work_dir=str(root / "executor")), self.store,
                lambda project: sim.ssh_url(project, "ci"),
                ssh=ssh_command(self.gate.ci.key_file, str(root / "known_hosts")), concurrency=2,
            ).start()
            self.gate.executor = ExecutorAdapter(self.executor)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        self.gate.stop()
        if self.launcher is not None:
            self.launcher.stop()
        if self.cloud is not None:
            self.cloud.stop()

    def results(self, change) -> list:
        return [res for req, res in self.executor.history if req.change.get("number") == change.number]

    def log_dir(self, result) -> str:
        return self.store.local_path(result.log_url.removeprefix(self.store.url + "/").rstrip("/"))

    def node(self, node_id: str) -> model.Node | None:
        try:
            return read_node(self.gate.zk, node_id)[0]
        except Exception:
            return None

    def kill_first_node_at_stack(self) -> tuple[threading.Thread, list[str]]:
        """Destroy the VM under the first build that reaches `./stack.sh`; returns the watching thread and the
        list that gets the killed node's id."""
        killed: list[str] = []

        def watch() -> None:
            while not killed:
                for build_id in self.executor.consoles.running():
                    console = self.executor.consoles.get(build_id)
                    text = open(console.path).read() if console else ""
                    if "$ ./stack.sh" in text:
                        node_id = text.split("NODE_ID=", 1)[1].split("\n", 1)[0]
                        self.cloud.backend.destroy(self.node(node_id).external_id)  # the VM dies under the job
                        killed.append(node_id)
                        return
                time.sleep(0.01)

        killer = threading.Thread(target=watch, daemon=True)
        killer.start()
        return killer, killed


@pytest.fixture
def e2e(tmp_path, zk_factory):
    rig = E2E(tmp_path, zk_factory)
    try:
        yield rig
    finally:
        rig.stop()


def console_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split(" | ", 1)[1].rstrip("\n") for line in f]


def test_good_change_passes_check_and_gate_and_merges(e2e):
    gate = e2e.gate
    change = gate.change("openstack/nova", "Tidy boot", files={"nova/compute.py": NOVA_COMPUTE + "# tidy\n"})
    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": 1}
    gate.approve(change)
    gate.settle(120)
    assert gate.status(change) == "MERGED"
    gate.assert_history(("devstack", "SUCCESS", "1,1"), ("devstack", "SUCCESS", "1,1"))
    result = e2e.results(change)[-1]
    logdir = e2e.log_dir(result)
    names = set(os.listdir(logdir))
    assert {"console.txt", "syslog.txt", "screen-n-api.txt", "screen-key.txt", "index.html"} <= names
    lines = console_lines(os.path.join(logdir, "console.txt"))
    assert lines[0].startswith("openstack-dev/devstack master ")
    assert lines[1].startswith("openstack/nova master ")
    assert lines[2] == "NODE_PROVIDER=sim-alpha" and lines[3] == "NODE_LABEL=ubuntu-jammy"
    assert "e2e-admin-secret" not in open(os.path.join(logdir, "console.txt")).read()
    # success: the node was used and is gone (deleted by the launcher)
    wait_for(lambda: e2e.node(result.node["name"]) is None, 30, "the used node to be deleted")


def test_broken_change_fails_with_logs_archived_and_node_held(e2e):
    gate = e2e.gate
    change = gate.change("openstack/nova", "Break boot", files={"nova/compute.py": BROKEN_NOVA_COMPUTE})
    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": -1}
    (result,) = e2e.results(change)
    assert result.result == "FAILURE"
    assert any(result.log_url in m for m in gate.ci_messages(change))
    logdir = e2e.log_dir(result)
    assert "exercise compute: FAIL" in open(os.path.join(logdir, "console.txt")).read()
    assert "screen-n-cpu.txt" in os.listdir(logdir) and "syslog.txt" in os.listdir(logdir)
    node = e2e.node(result.node["name"])
    assert node is not None and node.state == model.HOLD
    assert node.hold_reason.startswith(f"build {result.id}: devstack for {change.number},1 in check ended FAILURE")
    assert (node.hold_change, node.hold_owner) == (f"{change.number},1", "jane")
    # the report tells the owner that the node waits for them, and how to reach it
    assert any(f"Its node {node.id} is held until" in m and f"gatekeeper hold-access {node.id}" in m
               for m in gate.ci_messages(change))


def test_node_killed_mid_run_is_retried_on_another_node_and_passes(e2e):
    gate = e2e.gate
    killer, killed = e2e.kill_first_node_at_stack()
    change = gate.change("openstack/nova", "Survive a node loss", files={"nova/x.py": "X = 1\n"})
    gate.settle(180)
    killer.join(5)
    assert killed, "no build got far enough to kill its node"
    results = e2e.results(change)
    assert [r.result for r in results] == ["NODE_FAILURE", "SUCCESS"]
    assert results[0].node["name"] == killed[0] != results[1].node["name"]
    assert gate.ci_votes(change) == {"Verified": 1}


def test_subject_with_command_substitution_runs_nothing(e2e, tmp_path):
    gate = e2e.gate
    nasty = "$(touch pwned) `touch pwned` \"$(touch pwned)\""
    change = gate.change("openstack/nova", nasty, files={"nova/$(touch pwned).py": "X = 1\n"})
    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": 1}
    (result,) = e2e.results(change)
    console = open(os.path.join(e2e.log_dir(result), "console.txt")).read()
    assert f" {nasty}\n" in console
    pwned = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files if f == "pwned"]
    assert pwned == [] and not os.path.exists("pwned")


def test_timed_out_job_is_killed_on_the_node_and_held_by_an_autohold(e2e, caplog):
    caplog.set_level(logging.INFO)
    gate = e2e.gate
    add_autohold(gate.zk, Autohold(project="openstack/glance", job="hang", change=r"\d+,1", hold_hours=2,
                                   reason="operator wants to see the hang"))
    change = gate.change("openstack/glance", "Hang forever")
    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": -1}
    (result,) = e2e.results(change)
    assert result.result == "TIMED_OUT"
    node = e2e.node(result.node["name"])
    # held for inspection, so we can look inside (the message: what the services said of this node)
    assert node is not None and node.state == model.HOLD, "\n".join(
        r.getMessage() for r in caplog.records if result.node["name"] in r.getMessage() or "autohold" in r.getMessage())
    assert node.hold_reason == "operator wants to see the hang"
    assert 2 * 3600 - 600 < node.hold_until - time.time() <= 2 * 3600  # the autohold's 2 hours, not the default
    with RemoteHost(node).connect() as remote:
        status, out = remote.execute('cat /proc/"$(cat "$HOME/hang.pid")"/stat')
    assert status != 0 or out.decode().rsplit(")", 1)[1].split()[0] == "Z", "the job's sleep still runs"
