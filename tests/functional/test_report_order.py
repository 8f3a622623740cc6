"""Reports asked for behind another (a merge that follows the one ahead's without a pass between them), on a real
ZooKeeper: one behind a good outcome goes out without being asked again, one behind a bad outcome or withdrawn never
goes out, one being sent cannot be taken back; an orderly stop gives up waiting on a stuck review system; while the
review system cannot be asked, it is asked less and less often. Each waits for the queue to have handled what it
asserts about (`drain`), never for a time."""

from __future__ import annotations

import threading
import time

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.scheduler.backend import RETRY_MIN
from tests.functional import test_report_ledger
from tests.functional.test_report_ledger import Recorder, report
from tests.functional.test_report_queue import Gerrit
from tests.helpers import wait_for

make_queue = test_report_ledger.make_queue  # make_queue(owner, reporter, source=None, wake=...)


class Gated(Recorder):
    """A recorder whose answer to the reports in `hold` waits until `go` is set."""

    def __init__(self, *hold: str) -> None:
        super().__init__()
        self.hold, self.go, self.inside = set(hold), threading.Event(), threading.Event()

    def report(self, report: Report) -> ReportOutcome:
        if report.key in self.hold:
            self.inside.set()
            assert self.go.wait(20)
        return super().report(report)


def test_a_report_behind_one_that_merges_goes_out_once_without_being_asked_again(zk, make_queue):
    recorder = Gated("item-1:success")
    woken = threading.Event()
    q = make_queue("scheduler-1", recorder, wake=woken.set)
    head, behind = report(1, "success", submit=True), report(2, "success", submit=True)
    q.submit(head)
    q.submit(behind, after=head.key)
    assert recorder.inside.wait(10)
    recorder.go.set()
    q.drain()
    assert recorder.sent == [(head.key, "success"), (behind.key, "success")]
    assert q.submit(behind) == ReportOutcome()
    later = report(3, "success", submit=True)  # asked behind one whose outcome is known already
    woken.clear()
    q.submit(later, after=behind.key)
    q.drain()
    assert recorder.sent[-1] == (later.key, "success")
    assert [action for action, _, _ in q.latencies] == ["success"] * 3, "each one's latency is measured"


def test_a_report_behind_one_that_was_refused_or_withdrawn_never_goes_out(zk, make_queue):
    recorder = Recorder()
    recorder.refuse.add(1)
    q = make_queue("scheduler-1", recorder)
    head, behind = report(1, "success", submit=True), report(2, "success", submit=True)
    q.submit(head)
    q.submit(behind, after=head.key)
    q.drain()
    assert recorder.sent == [(head.key, "success")]
    assert not q.busy
    slow = Gated("item-4:success")
    q2 = make_queue("scheduler-2", slow)
    first, gone = report(4, "success", submit=True), report(5, "success", submit=True)
    q2.submit(first)
    q2.submit(gone, after=first.key)
    assert slow.inside.wait(10)
    q2.withdraw(gone.key)  # its item was reset while the report ahead was on its way
    slow.go.set()
    q2.drain()
    assert slow.sent == [(first.key, "success")]


def test_a_report_being_sent_is_not_taken_back_and_is_sent_once(zk, make_queue):
    recorder = Gated("item-2:success")
    q = make_queue("scheduler-1", recorder)
    head, behind = report(1, "success", submit=True), report(2, "success", submit=True)
    q.submit(head)
    q.submit(behind, after=head.key)
    assert recorder.inside.wait(10)  # `behind` is being sent
    q.withdraw(behind.key)
    assert q.submit(behind) is None, "still on its way"
    recorder.go.set()
    q.drain()
    assert recorder.sent == [(head.key, "success"), (behind.key, "success")]
    assert q.submit(behind) == ReportOutcome()


def test_a_report_asked_in_its_own_right_cannot_be_withdrawn(zk, make_queue):
    recorder = Gated("item-1:success")
    q = make_queue("scheduler-1", recorder)
    head, plain = report(1, "success", submit=True), report(2, "success", submit=True)
    q.submit(head)
    q.submit(plain)
    assert recorder.inside.wait(10)
    q.withdraw(plain.key)
    recorder.go.set()
    q.drain()
    assert recorder.sent == [(head.key, "success"), (plain.key, "success")]


def test_an_orderly_stop_gives_up_waiting_on_a_review_system_that_does_not_answer(zk, make_queue):
    recorder = Gated("item-1:failure")
    q = make_queue("scheduler-1", recorder)
    q.submit(report(1, "failure"))
    assert recorder.inside.wait(10)
    done = threading.Event()
    threading.Thread(target=lambda: (q.drain(timeout=0.2), done.set()), daemon=True).start()
    try:
        assert done.wait(10), "drain returned although the report is still being sent"
    finally:
        recorder.go.set()


def test_while_gerrit_cannot_be_asked_it_is_asked_less_and_less_often(zk, make_queue):
    class Timed(Gerrit):
        def __init__(self) -> None:
            super().__init__(lose=1, unreachable=100)
            self.times: list[float] = []

        def reported(self, report: Report) -> ReportOutcome | None:
            self.times.append(time.monotonic())
            return super().reported(report)

    gerrit = Timed()
    q = make_queue("scheduler-1", gerrit)
    q.submit(report(1, "failure"))
    wait_for(lambda: len(gerrit.times) >= 3, 20, "three questions to Gerrit")
    first, second = gerrit.times[1] - gerrit.times[0], gerrit.times[2] - gerrit.times[1]
    # waits of 0.5 s, then 1 s, then 2 s: lower bounds only, which a loaded machine cannot break
    assert first >= 0.95 * 2 * RETRY_MIN and second >= 0.95 * 4 * RETRY_MIN, (first, second)
    gerrit.unreachable = 0
    q.stop()
