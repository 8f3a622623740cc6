"""Each outcome reported exactly once, as Gerrit sees it, through the faults that used to double, falsify or hold
up one: an answer lost after Gerrit applied a review, a command Gerrit never answers, ZooKeeper stopped while a
merged change is ledgered, a scheduler killed between sending a report and recording it."""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.server import LocalZooKeeper
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for

MARKER = re.compile(r"\n\nGatekeeper-Report: [0-9a-f]{12}$")


def settled_in_check(gate: GateHarness, *changes) -> None:
    """Wait until the check pipeline reported on every change (so that the faults below meet gate reports)."""
    gate.settle()
    for change in changes:
        assert gate.reports(change, "check")[-1].startswith("Build succeeded (check pipeline)."), \
            gate.reports(change, "check")


def assert_each_once(gate: GateHarness, change, *expected_starts: str) -> None:
    """The change's gate messages are exactly these, in order (each given by how it starts), each once, and
    each carries one report marker."""
    merged_note = "Change has been successfully merged"  # Gerrit's own, on a submit
    messages = [m for m in gate.reports(change) if not m.startswith(merged_note)]
    assert len(messages) == len(expected_starts) and all(
        m.startswith(e) for m, e in zip(messages, expected_starts, strict=True)), messages
    raw = [m for m in gate.ci_messages(change, raw=True) if "check" not in m and merged_note not in m]
    assert all(len(MARKER.findall(m)) == 1 for m in raw), raw
    assert len({MARKER.search(m).group(0) for m in raw}) == len(raw)  # one marker per report


def test_a_channel_closed_after_gerrit_applied_a_report_never_doubles_it(gate: GateHarness) -> None:
    a, b = gate.change("org/b"), gate.change("org/b")
    settled_in_check(gate, a, b)
    gate.executor.hold = True
    gate.sim.faults.drop("review")  # A's start report is applied; the connection drops before the answer
    gate.approve(a, b)
    gate.settle()
    assert gate.sim.faults.pending("review") == 0
    assert gate.reports(a) == gate.reports(b) == ["Starting gate jobs."]
    gate.sim.faults.drop("submit")  # A merges; its answer is lost
    gate.executor.release("unit", a.number)
    gate.settle()
    assert gate.sim.faults.pending("submit") == 0
    gate.sim.faults.drop("review")  # B's failure report is applied; its answer is lost
    gate.executor.release("unit", b.number, "FAILURE")
    gate.settle()
    assert gate.sim.faults.pending("review") == 0
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "NEW"]
    assert_each_once(gate, a, "Starting gate jobs.", "Build succeeded (gate pipeline).")
    assert_each_once(gate, b, "Starting gate jobs.", "Build failed (gate pipeline).")
    assert gate.ci_votes(a) == {"Verified": 2} and gate.ci_votes(b) == {"Verified": -2}
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "FAILURE", "1,1 2,1"))
    assert len(gate.history("gate")) == 2, gate.history("gate")  # nothing was reset or retried


def test_a_report_whose_command_gerrit_never_answers_is_sent_again_and_the_gate_moves_on(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    gate = GateHarness(tmp_path, zk_factory, ssh_timeout=3.0)
    try:
        a, b = gate.change("org/b"), gate.change("org/b")
        settled_in_check(gate, a, b)
        # A's success report: Gerrit's SSH connection goes silent as the command arrives (no answer to its start,
        # nothing more on that connection), and stays so
        gate.sim.faults.unanswered("submit")
        gate.approve(a, b)
        wait_for(lambda: gate.status(b) == "MERGED", 60, "A and B to merge past the silent connection")
        gate.settle()
        assert gate.sim.faults.pending("submit") == 0
        assert gate.status(a) == "MERGED"
        assert_each_once(gate, a, "Starting gate jobs.", "Build succeeded (gate pipeline).")
        assert_each_once(gate, b, "Starting gate jobs.", "Build succeeded (gate pipeline).")
        gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))
    finally:
        gate.stop()


class FreezeZooKeeperAfterSubmit:
    """Freezes ZooKeeper (SIGSTOP, as a long GC pause or a hung host would) right after Gerrit merged a change,
    before the scheduler records it, for `outage` seconds: the ledger write in flight fails with ConnectionLoss."""

    def __init__(self, reporter, server: LocalZooKeeper, outage: float) -> None:
        self.reporter = reporter
        self.server = server
        self.outage = outage
        self.frozen = threading.Event()
        self.thawed = threading.Event()

    def report(self, report: Report) -> ReportOutcome:
        outcome = self.reporter.report(report)
        if report.submit and outcome.ok and not self.frozen.is_set():
            os.kill(self.server.process.pid, signal.SIGSTOP)
            self.frozen.set()
            threading.Timer(self.outage, self._thaw).start()
        return outcome

    def _thaw(self) -> None:
        os.kill(self.server.process.pid, signal.SIGCONT)
        self.thawed.set()

    def reported(self, report: Report) -> ReportOutcome | None:
        return self.reporter.reported(report)


@pytest.fixture
def own_zookeeper(tmp_path) -> Iterator[LocalZooKeeper]:
    """A ZooKeeper of this test's own, which it freezes (the session's server stays up for others)."""
    server = LocalZooKeeper(data_dir=str(tmp_path / "zk"), force_sync=False).start()
    try:
        yield server
    finally:
        server.cleanup()


def test_zookeeper_lost_after_a_submit_never_tells_a_merged_change_it_failed(tmp_path, own_zookeeper) -> None:
    chroot = f"/test-{uuid.uuid4().hex[:8]}"
    clients: list[ZKClient] = []

    def factory(**kwargs: object) -> ZKClient:
        client = ZKClient(own_zookeeper.hosts, chroot=chroot, timeout=10.0).start()
        clients.append(client)
        return client

    faults: list[FreezeZooKeeperAfterSubmit] = []

    def wrap(reporter):
        faults.append(FreezeZooKeeperAfterSubmit(reporter, own_zookeeper, outage=8.0))
        return faults[-1]

    gate = GateHarness(tmp_path / "gate", factory, wrap_reporter=wrap)
    try:
        a, b, c = gate.change("org/b"), gate.change("org/b"), gate.change("org/b")
        settled_in_check(gate, a, b, c)
        gate.executor.hold = True
        gate.approve(a, b, c)
        gate.settle()
        gate.executor.release("unit", a.number)  # A merges, then ZooKeeper stops before its ledger entry is done
        assert faults[0].frozen.wait(30) and faults[0].thawed.wait(60)
        gate.settle(timeout=120)
        assert gate.status(a) == "MERGED"
        gate.executor.hold = False
        gate.executor.release()
        gate.settle(timeout=120)
        assert [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3
        for change in (a, b, c):
            assert_each_once(gate, change, "Starting gate jobs.", "Build succeeded (gate pipeline).")
        # B and C were not reset: each was built once, on the state it was first given
        gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"),
                            ("unit", "SUCCESS", "1,1 2,1 3,1"))
        assert len(gate.history("gate")) == 3, gate.history("gate")
    finally:
        gate.stop()
        for client in clients:
            try:
                client.stop()
            except Exception:
                pass


class KillAfterSend:
    """Kills the scheduler (as SIGKILL would) right after Gerrit applied its first report of `action`, before
    the scheduler could record it."""

    def __init__(self, reporter, gate: GateHarness, action: str) -> None:
        self.reporter = reporter
        self.gate = gate
        self.action = action
        self.killed = threading.Event()

    def report(self, report: Report) -> ReportOutcome:
        outcome = self.reporter.report(report)
        if report.pipeline == "gate" and report.action == self.action and not self.killed.is_set():
            scheduler = next(s for s in self.gate.schedulers if s.reporter is self)
            killer = threading.Thread(target=self.gate.kill_scheduler, args=(scheduler,))
            killer.start()
            killer.join(60)
            self.killed.set()
        return outcome

    def reported(self, report: Report) -> ReportOutcome | None:
        return self.reporter.reported(report)


@pytest.mark.parametrize("action", ["start", "success", "failure"])
def test_scheduler_killed_between_sending_a_report_and_recording_it_never_repeats_it(
        tmp_path, zk_factory: Callable[..., ZKClient], action: str) -> None:
    kills: list[KillAfterSend] = []

    def wrap(reporter):
        kills.append(KillAfterSend(reporter, gate, action))
        return kills[-1]

    gate = GateHarness.__new__(GateHarness)  # `wrap` needs the harness before its first scheduler starts
    GateHarness.__init__(gate, tmp_path, zk_factory, wrap_reporter=wrap)
    try:
        a, b = gate.change("org/b"), gate.change("org/b")
        settled_in_check(gate, a, b)
        if action == "failure":
            gate.executor.fail("unit", a.number, "FAILURE")
        gate.approve(a, b)
        assert kills[0].killed.wait(60)
        gate.start_scheduler()
        gate.settle()
        if action == "failure":
            assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
            assert_each_once(gate, a, "Starting gate jobs.", "Build failed (gate pipeline).")
        else:
            assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
            assert_each_once(gate, a, "Starting gate jobs.", "Build succeeded (gate pipeline).")
        assert_each_once(gate, b, "Starting gate jobs.", "Build succeeded (gate pipeline).")
        assert not any("could not be merged" in m for m in gate.reports(a) + gate.reports(b))
    finally:
        gate.stop()


class CountCommands:
    """Counts the SSH commands each report takes on the reporter's own Gerrit connection."""

    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.commands: list[tuple[str, list[str]]] = []  # (action, commands it ran)
        client = reporter.connection.client
        original = client.run_command
        self._current: list[str] | None = None

        def run_command(command: str, *args, **kwargs):
            if self._current is not None:
                self._current.append(command.split(" --", 1)[0])
            return original(command, *args, **kwargs)

        client.run_command = run_command

    def report(self, report: Report) -> ReportOutcome:
        self._current = []
        try:
            return self.reporter.report(report)
        finally:
            self.commands.append((report.action, self._current))
            self._current = None

    def reported(self, report: Report) -> ReportOutcome | None:
        return self.reporter.reported(report)


def test_a_gate_success_is_reported_and_merged_in_one_gerrit_command(tmp_path, zk_factory) -> None:
    counters: list[CountCommands] = []

    def wrap(reporter):
        counters.append(CountCommands(reporter))
        return counters[-1]

    gate = GateHarness(tmp_path, zk_factory, wrap_reporter=wrap)
    try:
        a = gate.change("org/b")
        settled_in_check(gate, a)
        gate.approve(a)
        gate.settle()
        assert gate.status(a) == "MERGED"
        gate_reports = [(action, cmds) for action, cmds in counters[0].commands if action == "success"]
        assert gate_reports[-1] == ("success", ["gerrit review"]), counters[0].commands
    finally:
        gate.stop()
