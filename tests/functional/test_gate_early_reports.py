"""The success report of an item right behind a succeeding head is asked for before the head's is answered, and
sent the moment the head merged: two merges need no pass of the queue loop between them.  It is never sent when
the head did not merge: the item is then tested again without the head, and reported once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for


class HeldReporter:
    """Keeps the success report of one change from Gerrit until `release` (the head's report on its way)."""

    def __init__(self, reporter, change: int) -> None:
        self.reporter = reporter
        self.change = change
        self.released = threading.Event()
        self.entered = threading.Event()
        self.sent: list[tuple[int, str]] = []
        self.messages: dict[int, str] = {}  # change -> its success report's message (which links its builds' logs)

    def report(self, report: Report) -> ReportOutcome:
        if report.action == "success" and report.change.number == self.change:
            self.entered.set()
            self.released.wait(60)
        self.sent.append((report.change.number, report.action))
        if report.action == "success":
            self.messages[report.change.number] = report.message
        return self.reporter.report(report)

    def reported(self, report: Report) -> ReportOutcome | None:
        return self.reporter.reported(report)


@pytest.fixture
def held(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[tuple[GateHarness, list[HeldReporter]]]:
    wrappers: list[HeldReporter] = []

    def wrap(reporter):
        wrappers.append(HeldReporter(reporter, change=1))
        return wrappers[-1]

    gate = GateHarness(tmp_path, zk_factory, wrap_reporter=wrap)
    try:
        yield gate, wrappers
    finally:
        wrappers[0].released.set()
        gate.stop()


def asked(gate: GateHarness, change) -> bool:
    """Whether the scheduler has asked for the change's gate success report (sent or not)."""
    item = gate.schedulers[0].states["gate"].find(f"{change.number},1")
    reports = gate.schedulers[0]._report_queues["gate"]
    return item is not None and f"{item.id}:success" in reports._inflight


def test_the_report_behind_a_merging_head_is_asked_early_and_sent_once_the_head_merged(held) -> None:
    gate, (reporter,) = held
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.approve(a, b, c)
    assert reporter.entered.wait(60), "the head's success report was not sent"
    wait_for(lambda: asked(gate, b) and asked(gate, c), 30, "the reports behind the head to be asked for")
    assert (b.number, "success") not in reporter.sent  # held until the head merged
    reporter.released.set()
    gate.settle()
    assert gate.merge_order() == [a.number, b.number, c.number]
    successes = [n for n, action in reporter.sent if action == "success"]
    assert successes == [a.number, b.number, c.number]
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"),
                        ("unit", "SUCCESS", "1,1 2,1 3,1"))


def test_a_report_asked_early_is_never_sent_when_the_head_does_not_merge(held) -> None:
    gate, (reporter,) = held
    a = gate.change("org/a", files={"f.txt": "gated\n"})
    b = gate.change("org/b")
    gate.approve(a, b)
    assert reporter.entered.wait(60), "the head's success report was not sent"
    wait_for(lambda: asked(gate, b), 30, "the report behind the head to be asked for")
    gate.push_directly("org/a", {"f.txt": "direct\n"})  # A no longer merges: its submit is refused
    reporter.released.set()
    gate.settle()
    assert gate.status(a) == "NEW" and gate.status(b) == "MERGED"
    assert [n for n, action in reporter.sent if action == "success"] == [a.number, b.number]
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1"), ("unit", "SUCCESS", "2,1"))
    # B went in only once tested without A: its report asked behind A was never sent. (Its report links the build's
    # log; the test executor's history is no witness of the order: it records a build after publishing its result.)
    [behind_a] = [r.id for r in gate.executor.records("unit") if r.changes == "1,1 2,1"]
    [alone] = [r.id for r in gate.executor.records("unit") if r.changes == "2,1"]
    assert alone in reporter.messages[b.number] and behind_a not in reporter.messages[b.number]
    assert sum("Build succeeded" in m for m in gate.reports(b)) == 1
