"""`gatekeeper scheduler` as a real process: it runs the Gerrit event listener, tests an uploaded change in check
(with a merger and the test executor beside it), reloads its layout on SIGHUP and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest
import yaml

from gatekeeper.child_process import start_tied
from gatekeeper.config.store import read_layout
from gatekeeper.gitrepo import ssh_command
from gatekeeper.merger.service import MergerService
from gatekeeper.sim.gerrit import GerritSimulator
from tests.executor import TestExecutor
from tests.functional.gate_harness import LAYOUT, PROJECTS, wait_for


class Rig:
    """The Gerrit simulator, a merger and the test executor in this process; schedulers as real processes."""

    def __init__(self, tmp_path, zk_server, zk_chroot, zk_factory) -> None:
        self.sim = GerritSimulator(str(tmp_path / "gerrit")).start()
        self.procs: list[subprocess.Popen] = []
        self.merger = self.executor = None
        ci = self.sim.add_account("ci", key_dir=str(tmp_path / "keys"))
        for name in ("jane", "rita"):
            self.sim.add_account(name)
        for project in PROJECTS:
            self.sim.create_project(project)
        self.layout = tmp_path / "layout.yaml"
        self.layout.write_text(LAYOUT)
        self.config = tmp_path / "gatekeeper.yaml"
        self.config.write_text(yaml.safe_dump({
            "zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot, "timeout": 4},
            "gerrit": {"host": "127.0.0.1", "port": self.sim.port, "user": "ci", "key": ci.key_file},
            "layout": str(self.layout),
        }))
        self.merger = MergerService(zk_factory(), str(tmp_path / "merger"),
                                    ssh=ssh_command(ci.key_file, str(tmp_path / "known_hosts"))).start()
        self.executor = TestExecutor(zk_factory()).start()

    def scheduler(self) -> subprocess.Popen:
        proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "scheduler", "-c", str(self.config)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for part in (self.executor, self.merger):
            if part:
                part.stop()
        self.sim.stop()


@pytest.fixture
def rig(tmp_path, zk_server, zk_chroot, zk_factory):
    r = Rig(tmp_path, zk_server, zk_chroot, zk_factory)
    try:
        yield r
    finally:
        r.stop()


class Output:
    """The lines a process writes, read as they come (a test can wait for one)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def text(self) -> str:
        self._thread.join(20)
        return "".join(self.lines)


GOOD_RELOAD = LAYOUT.replace("  - name: unit\n", "  - name: unit\n  - name: lint\n", 1).replace(
    "pipelines: {check: [unit], gate: [unit, integration]}",
    "pipelines: {check: [unit, lint], gate: [unit, integration]}", 1)


def test_scheduler_process_listens_reports_reloads_and_stops(rig, zk):
    sim, layout, executor = rig.sim, rig.layout, rig.executor
    assert GOOD_RELOAD.count("lint") == 2
    proc = rig.scheduler()
    output = Output(proc)
    wait_for(lambda: sim.listener_count() >= 1, 30, "the scheduler's Gerrit listener to connect")
    change = sim.create_change("org/a", "Checked by a real scheduler process", owner="jane")
    wait_for(lambda: sim.votes(change).get("ci", {}).get("Verified") == 1, 60, "check's Verified +1")
    started_with = read_layout(zk).files

    # SIGHUP reloads the layout: a bad one is refused and the running one kept
    layout.write_text(LAYOUT.replace("manager: independent", "manager: serial-ish", 1))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: output.has("unknown manager (expected independent, dependent, serial or supercedent)"), 30,
             "the scheduler to refuse the bad layout")
    assert read_layout(zk).files == started_with
    second = sim.create_change("org/a", "Still checked after a bad reload", owner="jane")
    wait_for(lambda: sim.votes(second).get("ci", {}).get("Verified") == 1, 60, "the kept layout to work")

    # ... and a good one is published and used for what comes next: org/a's check gains a lint job
    layout.write_text(GOOD_RELOAD)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: read_layout(zk).files != started_with, 30, "the scheduler to publish the new layout")
    third = sim.create_change("org/a", "Checked with the reloaded layout", owner="jane")
    wait_for(lambda: sim.votes(third).get("ci", {}).get("Verified") == 1, 60, "check on the new layout")
    jobs = {n: sorted(r.job for r in executor.history if r.change == n and r.pipeline == "check")
            for n in (change.number, second.number, third.number)}
    assert jobs == {change.number: ["unit"], second.number: ["unit"], third.number: ["lint", "unit"]}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, output.text()[-3000:]
    wait_for(lambda: sim.listener_count() == 0, 20, "the listener to disconnect")


def test_scheduler_killed_with_sigkill_mid_gate_is_resumed_by_a_new_one_without_double_reports(rig):
    sim, executor = rig.sim, rig.executor
    first = rig.scheduler()
    wait_for(lambda: sim.listener_count() >= 1, 30, "the first scheduler's listener")
    a, b = (sim.create_change("org/a", f"Change {n}", owner="jane") for n in (1, 2))
    wait_for(lambda: all(sim.votes(c).get("ci", {}).get("Verified") == 1 for c in (a, b)), 60, "check")
    executor.hold = True
    for change in (a, b):
        sim.approve(change, "rita")
    wait_for(lambda: len([r for r in executor.held() if r.pipeline == "gate"]) >= 3, 60, "gate builds running")
    # "Starting" reports are best-effort (not ledgered): kill once they are out, while the builds run
    wait_for(lambda: all(any("Starting gate jobs." in m for m in sim.messages(c)) for c in (a, b)), 30, "starts")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    executor.release("unit", a.number)  # results wait in ZooKeeper for whoever schedules next
    rig.scheduler()
    executor.hold = False
    executor.release()
    wait_for(lambda: all(sim.change(c).status == "MERGED" for c in (a, b)), 90, "both changes to merge")
    for change in (a, b):
        messages = sim.messages(change)
        assert sum("Starting gate jobs." in m for m in messages) == 1, messages
        assert sum("Build succeeded (gate pipeline)." in m for m in messages) == 1, messages
