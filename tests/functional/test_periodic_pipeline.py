"""Periodic pipelines over real wires: a timer trigger's fire enqueues every branch tip (listed over Gerrit's SSH)
of every project with jobs in the pipeline; the merger gives each job exactly that revision; nothing is reported
to Gerrit; with two schedulers running, each fire is enqueued once. The timers' clock is the test's."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.gerrit.client import GerritCommandError
from gatekeeper.gerrit.source import GerritReporter
from gatekeeper.scheduler.timer import FIRES, KEEP_FIRES, PipelineTimer
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.functional.test_post_pipeline import Recording, given
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

PERIODIC = r"""
  - name: periodic
    manager: independent
    precedence: low
    trigger:
      timer:
        - time: '* * * * * *'
    success: {gerrit: {labels: {Verified: 1}, message: Periodic jobs passed.}}
    failure: {gerrit: {labels: {Verified: -1}, message: Periodic jobs failed.}}
queues:"""

LAYOUT = GATE_LAYOUT.replace("\nqueues:", PERIODIC, 1).replace(
    "  - name: unit\n", "  - name: unit\n  - name: nightly\n", 1).replace(
    "pipelines: {check: [unit], gate: [unit, integration]}",
    "pipelines: {check: [unit], gate: [unit, integration], periodic: [nightly]}", 1)

START = 1_800_000_000.5  # the timers' clock at the start: half a second before a fire of '* * * * * *'


class Clock:
    """A wall clock that moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(START)
    monkeypatch.setattr(PipelineTimer, "clock", staticmethod(clock))
    return clock


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient], clock: Clock) -> Iterator[GateHarness]:
    recorders: list[Recording] = []

    def wrap(reporter: GerritReporter) -> Recording:
        recorders.append(Recording(reporter))
        return recorders[-1]

    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT, wrap_reporter=wrap)
    harness.start_scheduler(wrap)  # a second scheduler, with a timer of its own
    harness.recorders = recorders
    try:
        yield harness
    finally:
        harness.stop()


def periodic_builds(gate: GateHarness) -> list:
    return [r for r in gate.executor.history if r.pipeline == "periodic"]


def fire(gate: GateHarness, clock: Clock, now: float, due: float) -> None:
    """Move the clock to `now` and wait until every scheduler's timer has looked at the fire `due` then."""
    clock.now = now
    for scheduler in gate.schedulers:
        scheduler.timer.wake()
    wait_for(lambda: all(any(t == due for _, t, _ in s.timer.fired) for s in gate.schedulers), 30,
             f"every timer to see the fire at {due}")


def test_each_fire_runs_the_jobs_once_on_every_branch_tip_and_reports_nothing(gate: GateHarness,
                                                                              clock: Clock) -> None:
    stable = gate.sim.create_branch("org/a", "stable/1")
    change = gate.change("org/a", "Move master on")
    gate.settle()
    gate.approve(change)
    gate.settle()
    master = gate.sim.branch_tip("org/a", "master")
    assert gate.status(change) == "MERGED" and master != stable
    wait_for(lambda: all(s.timer.looked_at == START for s in gate.schedulers), 30, "both timers to look at the clock")
    assert periodic_builds(gate) == []  # no fire before the clock moves

    fire(gate, clock, START + 0.5, START + 0.5)
    gate.settle()
    builds = periodic_builds(gate)
    assert sorted((b.job, b.result, b.changes) for b in builds) == [
        ("nightly", "SUCCESS", f"org/a:refs/heads/master@{master[:12]}"),
        ("nightly", "SUCCESS", f"org/a:refs/heads/stable/1@{stable[:12]}")]
    assert {given(gate, b)["org/a"]["master" if "master" in b.changes else "stable/1"] for b in builds} == {
        master, stable}
    # One scheduler enqueued the fire (two branch tips of org/a; org/b, org/c and org/s have no periodic job),
    # the other found it done.
    assert sorted(put for s in gate.schedulers for _, t, put in s.timer.fired if t == START + 0.5) == [-1, 2]
    assert gate.gate_queue("periodic") == []

    # Five seconds later: fires missed meanwhile are not replayed; the latest runs every branch tip again.
    fire(gate, clock, START + 5.7, START + 5.5)
    gate.settle()
    assert len(periodic_builds(gate)) == 4
    assert sorted((t, put) for s in gate.schedulers for _, t, put in s.timer.fired) == [
        (START + 0.5, -1), (START + 0.5, 2), (START + 5.5, -1), (START + 5.5, 2)]
    assert sorted(gate.zk.client.get_children(f"{FIRES}/periodic")) == ["1800000001", "1800000006"]

    # Fire nodes older than KEEP_FIRES before the latest fire are deleted.
    fire(gate, clock, START + KEEP_FIRES + 10, START + KEEP_FIRES + 9.5)
    gate.settle()
    assert len(periodic_builds(gate)) == 6
    assert gate.zk.client.get_children(f"{FIRES}/periodic") == [f"{START + KEEP_FIRES + 9.5:.0f}"]
    assert not [r for rec in gate.recorders for r in rec.sent if r[0] == "periodic"]
    assert not [m for m in gate.ci_messages(change) if "Periodic" in m]


def test_branch_tips_are_read_from_gerrits_git_over_ssh_and_an_unknown_project_is_a_clear_error(
        gate: GateHarness) -> None:
    stable = gate.sim.create_branch("org/b", "stable/2")
    assert gate.connection.branch_heads("org/b") == {"master": gate.sim.branch_tip("org/b", "master"),
                                                     "stable/2": stable}
    with pytest.raises(GerritCommandError) as exc:
        gate.connection.branch_heads("org/nope")
    assert "'org/nope': not a Gerrit project" in str(exc.value), exc.value


def test_a_reloaded_layout_changes_what_the_next_fire_enqueues(gate: GateHarness, clock: Clock) -> None:
    # org/a and org/b start from the same commit: each gets its own item all the same (made so: their first commits
    # are the same only when both projects were created within one second)
    a_repo, b_repo = (gate.sim.project(p).repo for p in ("org/a", "org/b"))
    b_repo.git("fetch", "-q", a_repo.path, "+refs/heads/master:refs/heads/master")
    wait_for(lambda: all(s.timer.looked_at == START for s in gate.schedulers), 30, "both timers to look at the clock")
    gate.layout_path.write_text(LAYOUT.replace("pipelines: {check: [unit], gate: [unit]}\n",
                                               "pipelines: {check: [unit], gate: [unit], periodic: [nightly]}\n", 1))
    assert gate.schedulers[0].reload() == ""
    wait_for(lambda: all(s.layout.projects["org/b"].jobs_for("periodic") for s in gate.schedulers), 30,
             "both schedulers to run the new layout")
    fire(gate, clock, START + 0.5, START + 0.5)
    gate.settle()
    a, b = (gate.sim.branch_tip(p, "master") for p in ("org/a", "org/b"))
    assert a == b
    assert sorted((r.job, r.changes) for r in periodic_builds(gate)) == sorted([
        ("nightly", f"org/a:refs/heads/master@{a[:12]}"), ("nightly", f"org/b:refs/heads/master@{b[:12]}")])
