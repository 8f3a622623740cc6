"""A pipeline's report queue on a real ZooKeeper, beyond the ledger's once-only rule: an answer lost on the way is
settled by asking Gerrit (by the report's marker) before anything is sent again; a reporter that fails does not
stop the gate; a report waited for at another scheduler wakes the pipeline once; entries of items that left are
deleted in batches; an orderly stop waits for what was queued. The code review side is a recorder that can lose
answers and can be asked what arrived."""

from __future__ import annotations

import logging
import threading

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.scheduler.backend import BATCH
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import decode, encode
from tests.functional import test_report_ledger
from tests.functional.test_report_ledger import outcome, report
from tests.helpers import wait_for

make_queue = test_report_ledger.make_queue  # make_queue(owner, reporter, source=None, wake=...)


class Gerrit:
    """Records what arrived; the first `lose` answers are lost on the way back (the report arrived, or not when
    `lose_before_arrival`); `reported` answers by the report's marker, unsettled while `unreachable` > 0."""

    def __init__(self, lose: int = 0, lose_before_arrival: bool = False, unreachable: int = 0) -> None:
        self.sent: list[str] = []
        self.asked: list[str] = []
        self.arrived: dict[str, ReportOutcome] = {}
        self.lose, self.lose_before_arrival, self.unreachable = lose, lose_before_arrival, unreachable
        self.lock = threading.Lock()

    def report(self, report: Report) -> ReportOutcome:
        with self.lock:
            self.sent.append(report.key)
            if self.lose:
                self.lose -= 1
                if not self.lose_before_arrival:
                    self.arrived[report.key] = ReportOutcome(True, "as Gerrit shows it")
                return ReportOutcome(False, "connection reset", settled=False)
            self.arrived[report.key] = ReportOutcome(True, "sent")
            return ReportOutcome(True, "sent")

    def reported(self, report: Report) -> ReportOutcome | None:
        with self.lock:
            self.asked.append(report.key)
            if self.unreachable:
                self.unreachable -= 1
                return ReportOutcome(False, "Gerrit unreachable", settled=False)
            return self.arrived.get(report.key)


def entries(zk: ZKClient) -> set[str]:
    return set(zk.client.get_children(paths.pipeline_reported("gate")))


def test_a_lost_answer_is_settled_by_asking_gerrit_and_the_report_is_not_sent_again(zk, make_queue, caplog):
    caplog.set_level(logging.WARNING, logger="gatekeeper.scheduler.backend")
    gerrit = Gerrit(lose=1)
    q = make_queue("scheduler-1", gerrit)
    merge = report(1, "success", submit=True)
    assert outcome(q, merge) == ReportOutcome(True, "as Gerrit shows it")
    assert gerrit.sent == [merge.key] and gerrit.asked == [merge.key]
    assert q.sent == 1
    assert decode(zk.client.get(f"{paths.pipeline_reported('gate')}/{merge.key}")[0]) == {
        "state": "done", "ok": True, "message": "as Gerrit shows it"}
    assert not q.latencies, "an answer that never came back has no latency"
    # the report queue's own records (a ZooKeeper client of another test in this process may log meanwhile)
    assert [r.getMessage() for r in caplog.records if r.name == "gatekeeper.scheduler.backend"] == [
        "[gate 1,1] success report unsettled (connection reset); asking Gerrit again in 0.5s"]


def test_a_report_that_did_not_arrive_is_sent_again_after_gerrit_was_asked(zk, make_queue):
    gerrit = Gerrit(lose=1, lose_before_arrival=True)
    q = make_queue("scheduler-1", gerrit)
    merge = report(2, "success", submit=True)
    assert outcome(q, merge) == ReportOutcome(True, "sent")
    assert gerrit.sent == [merge.key, merge.key] and gerrit.asked == [merge.key]
    assert q.sent == 2
    assert [action for action, _, _ in q.latencies] == ["success"]  # the settled send only


def test_while_gerrit_cannot_be_asked_the_report_is_not_sent_again(zk, make_queue):
    gerrit = Gerrit(lose=1, unreachable=2)
    q = make_queue("scheduler-1", gerrit)
    merge = report(3, "success", submit=True)
    assert outcome(q, merge) == ReportOutcome(True, "as Gerrit shows it")
    assert gerrit.sent == [merge.key]
    assert gerrit.asked == [merge.key] * 3  # twice unreachable, then it showed the report


def test_a_report_left_pending_by_a_dead_scheduler_is_settled_by_its_marker(zk, make_queue):
    gerrit = Gerrit()
    arrived, lost = report(4, "failure"), report(5, "failure")
    gerrit.arrived[arrived.key] = ReportOutcome(True, "as Gerrit shows it")
    for r in (arrived, lost):
        zk.client.create(f"{paths.pipeline_reported('gate')}/{r.key}",
                         encode({"state": "pending", "owner": "dead-scheduler"}), makepath=True)
    q = make_queue("scheduler-1", gerrit)
    assert outcome(q, arrived) == ReportOutcome(True, "as Gerrit shows it")
    assert outcome(q, lost) == ReportOutcome(True, "sent")
    # Gerrit was asked about each by its report, and only the one it did not show was sent
    assert gerrit.asked == [arrived.key, lost.key]
    assert gerrit.sent == [lost.key]


def test_a_reporter_that_fails_refuses_the_submit_and_does_not_stop_the_gate(zk, make_queue, caplog):
    caplog.set_level(logging.ERROR, logger="gatekeeper.scheduler.backend")
    class Broken:
        def report(self, report: Report) -> ReportOutcome:
            raise OSError("ssh: broken pipe")

    q = make_queue("scheduler-1", Broken())
    merge, comment = report(6, "success", submit=True), report(7, "failure")
    assert outcome(q, merge) == ReportOutcome(False, "ssh: broken pipe")
    assert outcome(q, comment) == ReportOutcome(True, "ssh: broken pipe")
    assert q.sent == 2 and q.completed == 2 and not q.busy
    assert sorted(r.getMessage() for r in caplog.records) == [
        "[gate 6,1] success report failed", "[gate 7,1] failure report failed"]


def test_report_latency_runs_from_the_first_request_and_includes_gerrit_time(zk, make_queue):
    class Slow(Gerrit):
        def __init__(self) -> None:
            super().__init__()
            self.sending, self.go = threading.Event(), threading.Event()

        def report(self, report: Report) -> ReportOutcome:
            self.sending.set()
            assert self.go.wait(20)
            return super().report(report)

    gerrit = Slow()
    q = make_queue("scheduler-1", gerrit)
    merge = report(8, "success", submit=True)
    assert q.submit(merge) is None
    assert gerrit.sending.wait(20)
    assert q.busy and q.submit(merge) is None
    gerrit.go.set()
    assert outcome(q, merge) == ReportOutcome(True, "sent")
    assert not q.busy
    [(action, total, in_gerrit)] = q.latencies
    assert action == "success"
    assert 0 < in_gerrit <= total < 60


def test_a_report_sent_by_a_live_scheduler_wakes_the_pipeline_once_when_it_is_done(zk_server, zk, make_queue,
                                                                                    caplog):
    caplog.set_level(logging.WARNING, logger="gatekeeper")
    woken: list[int] = []
    gerrit = Gerrit()
    q = make_queue("scheduler-2", gerrit, wake=lambda: woken.append(1))
    first = report(9, "start")
    assert outcome(q, first) == ReportOutcome(True, "sent")
    assert q.completed == 1 and len(woken) == 1
    merge = report(9, "success", submit=True)
    entry = f"{paths.pipeline_reported('gate')}/{merge.key}"
    zk.client.create(entry, encode({"state": "pending", "owner": "live-scheduler"}), makepath=True)
    zk.client.create(paths.component("scheduler", "live-scheduler"), b"{}", makepath=True, ephemeral=True)
    watches = int(zk_server.mntr()["zk_watch_count"])
    assert q.submit(merge) is None
    wait_for(lambda: int(zk_server.mntr()["zk_watch_count"]) > watches, 10, "a watch on the pending entry")
    assert q.busy and len(woken) == 1
    zk.client.set(entry, encode({"state": "done", "ok": True, "message": "merged"}))
    wait_for(lambda: not q.busy, 10, "the pipeline woken by the ledger watch")
    assert len(woken) == 2 and q.completed == 2
    assert outcome(q, merge) == ReportOutcome(True, "merged")  # asked again: from the ledger, a third outcome
    wait_for(lambda: len(woken) == 3, 10, "the pipeline woken by that outcome")
    assert gerrit.sent == [first.key] and q.completed == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "the watch failed and a retry took over"
    # The watch ended with the report: the entry's deletion (its item left) wakes nobody. The positive signal
    # that the deletion was processed: a later watch on the queue's own session fired (its callbacks run in order).
    probe, seen = f"{entry}-probe", threading.Event()
    q.zk.client.exists(probe, watch=lambda event: seen.set())
    zk.client.delete(entry)
    zk.client.create(probe, b"")
    assert seen.wait(10)
    assert len(woken) == 3 and q.completed == 3


def test_entries_of_items_that_left_are_deleted_in_batches(zk, make_queue):
    gerrit = Gerrit()
    q = make_queue("scheduler-1", gerrit)
    reports = [report(100 + i, "failure") for i in range(BATCH + 2)]
    for r in reports:
        outcome(q, r)
    assert entries(zk) == {r.key for r in reports}
    q.forget([("item-100", ["failure"]), ("item-101", ["failure", "start"])])
    assert q.submit(reports[0]) is None, "a forgotten outcome is not answered from memory"
    wait_for(lambda: q.submit(reports[0]), 10, "the outcome again, from the ledger")
    assert gerrit.sent.count(reports[0].key) == 1
    q.flush()
    assert entries(zk) == {r.key for r in reports}, "fewer than a batch waits"
    q.flush(force=True)
    assert entries(zk) == {r.key for r in reports[2:]}
    q.flush(force=True)  # nothing waiting: nothing to do
    q.forget([(f"item-{100 + i}", ["failure"]) for i in range(2, BATCH + 2)])
    q.flush()
    assert entries(zk) == set()


def test_draining_waits_for_the_reports_queued_and_the_queue_goes_on(zk, make_queue):
    class Slow(Gerrit):
        def __init__(self) -> None:
            super().__init__()
            self.inside, self.go = 0, threading.Event()

        def report(self, report: Report) -> ReportOutcome:
            with self.lock:
                self.inside += 1
            assert self.go.wait(20)
            return super().report(report)

    gerrit = Slow()
    q = make_queue("scheduler-1", gerrit)
    start, verdict = report(10, "start"), report(11, "failure")
    q.submit(start)
    q.submit(verdict)

    def release() -> None:  # once both lanes are sending, so that drain is called while they are
        wait_for(lambda: gerrit.inside == 2, 10, "both reports being sent")
        gerrit.go.set()

    threading.Thread(target=release, daemon=True).start()
    q.drain()
    # drain returned: both outcomes are known now, without waiting
    assert q.submit(start) == ReportOutcome(True, "sent") and q.submit(verdict) == ReportOutcome(True, "sent")
    later = report(12, "failure")
    assert outcome(q, later) == ReportOutcome(True, "sent"), "a drained queue still sends"


def test_a_done_entry_without_its_outcome_counts_as_sent_and_is_not_sent_again(zk, make_queue, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.scheduler.backend")
    gerrit = Gerrit()
    merge = report(13, "success", submit=True)
    # as an older scheduler wrote it: done, nothing more
    zk.client.create(f"{paths.pipeline_reported('gate')}/{merge.key}", encode({"state": "done"}), makepath=True)
    q = make_queue("scheduler-1", gerrit)
    assert outcome(q, merge) == ReportOutcome(True, "")
    assert gerrit.sent == [] and gerrit.asked == []
    assert "[gate 13,1] success already reported" in [r.getMessage() for r in caplog.records]
    # nothing is left to record for it: no second write, and no error (the next report on the same lane is
    # taken only once the lane is done with this one)
    assert outcome(q, report(14, "failure")) == ReportOutcome(True, "sent")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("gatekeeper")]


def test_an_unexpected_error_while_ledgering_is_logged_and_the_report_tried_again(zk, make_queue, caplog,
                                                                              monkeypatch):
    from gatekeeper.scheduler import backend

    monkeypatch.setattr(backend, "RETRY_MAX", 0.2)
    caplog.set_level(logging.INFO, logger="gatekeeper.scheduler.backend")

    class Flaky(Gerrit):
        def reported(self, report: Report) -> ReportOutcome | None:
            if not self.asked:
                self.asked.append(report.key)
                raise RuntimeError("Gerrit query returned garbage")
            return super().reported(report)

    gerrit = Flaky()
    merge = report(14, "success", submit=True)
    zk.client.create(f"{paths.pipeline_reported('gate')}/{merge.key}",
                     encode({"state": "pending", "owner": "dead-scheduler"}), makepath=True)
    q = make_queue("scheduler-1", gerrit)
    assert outcome(q, merge) == ReportOutcome(True, "sent")
    assert gerrit.asked == [merge.key, merge.key] and gerrit.sent == [merge.key]
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == ["[gate 14,1] success report failed; trying again"]
    assert "Gerrit query returned garbage" in failed[0].exc_text
