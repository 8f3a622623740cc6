"""The report ledger on a real ZooKeeper: a report is sent once whichever scheduler asks, and a submit cut short by
a dead scheduler is settled from the change's state: sent again only when Gerrit shows it did not arrive. The code
review side is a recorder."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.backend import ReportQueue
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import decode, encode
from tests.helpers import wait_for


class Recorder:
    """What reached the code review system; refuses the submits of the changes in `refuse`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.refuse: set[int] = set()
        self.lock = threading.Lock()

    def report(self, report: Report) -> ReportOutcome:
        with self.lock:
            self.sent.append((report.key, report.action))
        if report.submit and report.change.number in self.refuse:
            return ReportOutcome(False, "blocked by Verified")
        return ReportOutcome()


class Source:
    def __init__(self) -> None:
        self.status: dict[int, str] = {}

    def get_change(self, number: int) -> Change | None:
        return Change(project="org/a", number=number, patchset=1, status=self.status.get(number, "NEW"))

    def git_url(self, project: str) -> str:
        return f"ssh://review/{project}"


@pytest.fixture
def make_queue(zk_factory: Callable[..., ZKClient]) -> Iterator[Callable[..., ReportQueue]]:
    made: list[ReportQueue] = []

    def make(owner: str, recorder: Recorder, source: Source | None = None,
             wake: Callable[[], None] = lambda: None) -> ReportQueue:
        q = ReportQueue(zk_factory(), "gate", recorder, source or Source(), owner, wake)
        made.append(q)
        return q

    yield make
    for q in made:
        q.stop()


def report(number: int, action: str, submit: bool = False) -> Report:
    change = Change(project="org/a", number=number, patchset=1)
    return Report(pipeline="gate", change=change, action=action, message=f"{action} of {number},1",
                  labels={"Verified": 2 if submit else 0}, submit=submit, key=f"item-{number}:{action}")


def outcome(q: ReportQueue, r: Report) -> ReportOutcome:
    return wait_for(lambda: q.submit(r), 20, f"the outcome of {r.key}")


def ledger_entry(zk: ZKClient, r: Report) -> dict:
    raw, _ = zk.client.get(f"{paths.pipeline_reported('gate')}/{r.key}")
    return decode(raw)


def test_a_ledgered_report_is_sent_once_whichever_scheduler_asks(zk, make_queue):
    recorder = Recorder()
    first, second = make_queue("scheduler-1", recorder), make_queue("scheduler-2", recorder)
    verdict = report(1, "failure")
    assert outcome(first, verdict) == ReportOutcome()
    assert outcome(second, verdict) == ReportOutcome()  # from the ledger
    assert recorder.sent == [("item-1:failure", "failure")]
    assert ledger_entry(zk, verdict) == {"state": "done", "ok": True, "message": ""}
    # "Starting" messages go through the ledger too: said once, whichever scheduler starts the item
    start = report(1, "start")
    outcome(first, start)
    outcome(second, start)
    assert recorder.sent.count(("item-1:start", "start")) == 1
    assert ledger_entry(zk, start)["state"] == "done"


def test_a_refused_submit_is_recorded_and_not_tried_again(zk, make_queue):
    recorder = Recorder()
    recorder.refuse.add(2)
    merge = report(2, "success", submit=True)
    assert outcome(make_queue("scheduler-1", recorder), merge) == ReportOutcome(False, "blocked by Verified")
    assert ledger_entry(zk, merge) == {"state": "done", "ok": False, "message": "blocked by Verified"}
    assert outcome(make_queue("scheduler-2", recorder), merge) == ReportOutcome(False, "blocked by Verified")
    assert recorder.sent == [("item-2:success", "success")]


@pytest.mark.parametrize(("status", "sent_again"), [("MERGED", []), ("NEW", [("item-3:success", "success")])])
def test_a_submit_left_pending_by_a_dead_scheduler_is_settled_from_the_change(zk, make_queue, status, sent_again):
    merge = report(3, "success", submit=True)
    zk.client.create(f"{paths.pipeline_reported('gate')}/{merge.key}",
                     encode({"state": "pending", "owner": "dead-scheduler"}), makepath=True)
    # the asking scheduler is registered (as every running one is); the entry's owner is not
    zk.client.create(paths.component("scheduler", "scheduler-2"), b"{}", makepath=True, ephemeral=True)
    source = Source()
    source.status[3] = status
    recorder = Recorder()
    assert outcome(make_queue("scheduler-2", recorder, source), merge) == ReportOutcome(True, "")
    # Gerrit's state decides: a merged change is not submitted again; one that is not merged is sent now
    assert recorder.sent == sent_again
    assert ledger_entry(zk, merge) == {"state": "done", "ok": True, "message": ""}


def test_a_submit_in_flight_at_a_live_scheduler_is_waited_for_then_taken_from_the_ledger(zk_server, zk,
                                                                                          make_queue):
    merge = report(4, "success", submit=True)
    entry = f"{paths.pipeline_reported('gate')}/{merge.key}"
    zk.client.create(entry, encode({"state": "pending", "owner": "live-scheduler"}), makepath=True)
    zk.client.create(paths.component("scheduler", "live-scheduler"), b"{}", makepath=True, ephemeral=True)
    woken = threading.Event()
    recorder = Recorder()
    q = make_queue("scheduler-2", recorder, wake=woken.set)
    watches = int(zk_server.mntr()["zk_watch_count"])
    assert q.submit(merge) is None
    # The positive signal that the queue chose to wait: it set a watch on the live scheduler's ledger entry.
    wait_for(lambda: int(zk_server.mntr()["zk_watch_count"]) > watches, 10, "a watch on the pending entry")
    assert q.submit(merge) is None and not woken.is_set() and recorder.sent == []
    zk.client.set(entry, encode({"state": "done", "ok": True, "message": ""}))
    assert woken.wait(10), "the ledger watch did not wake the pipeline"
    assert outcome(q, merge) == ReportOutcome(True, "")
    assert recorder.sent == []


def test_a_submit_is_ledgered_as_pending_with_its_sender_while_it_is_sent(zk, make_queue):
    class Slow(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.sending, self.go = threading.Event(), threading.Event()

        def report(self, report: Report) -> ReportOutcome:
            self.sending.set()
            assert self.go.wait(20)
            return super().report(report)

    recorder = Slow()
    q = make_queue("scheduler-1", recorder)
    merge = report(5, "success", submit=True)
    assert q.submit(merge) is None
    assert recorder.sending.wait(20)
    assert ledger_entry(zk, merge) == {"state": "pending", "owner": "scheduler-1"}
    recorder.go.set()
    assert outcome(q, merge) == ReportOutcome()
    assert ledger_entry(zk, merge) == {"state": "done", "ok": True, "message": ""}


def test_a_report_asked_after_another_goes_out_only_once_that_one_merged(zk, make_queue):
    recorder = Recorder()
    recorder.refuse.add(4)
    woken = threading.Event()
    q = make_queue("scheduler-1", recorder, wake=woken.set)
    head, behind, last = report(4, "success", submit=True), report(5, "success", submit=True), \
        report(6, "success", submit=True)
    assert q.submit(head) is None
    q.submit(behind, after=head.key)
    q.submit(last, after=behind.key)
    assert outcome(q, head) == ReportOutcome(False, "blocked by Verified")
    # The head did not merge: those asked after it are dropped unsent (the scheduler is woken to test them again).
    wait_for(lambda: not q.busy, 20, "the reports behind the refused head to be dropped")
    assert woken.is_set()
    assert recorder.sent == [(head.key, "success")]
    assert q.submit(behind) is None  # asked again, plainly: sent now
    assert outcome(q, behind) == ReportOutcome()
    # After a good outcome the next one goes out at once; a withdrawn one never does.
    q.submit(last, after=behind.key)
    assert outcome(q, last) == ReportOutcome()
    recorder.refuse.clear()
    gone, blocked = report(7, "success", submit=True), threading.Event()
    slow = Recorder()
    slow.report = lambda r, real=slow.report: (blocked.wait(20), real(r))[1]  # the head's answer is slow
    q2 = make_queue("scheduler-2", slow)
    q2.submit(report(8, "success", submit=True))
    q2.submit(gone, after="item-8:success")
    q2.withdraw(gone.key)  # its item was reset while the head's report was on its way
    blocked.set()
    wait_for(lambda: not q2.busy, 20, "the head's report")
    assert slow.sent == [("item-8:success", "success")]
    assert recorder.sent == [(head.key, "success"), (behind.key, "success"), (last.key, "success")]


def test_a_first_report_is_ledgered_with_the_state_that_asks_for_it(zk, make_queue):
    from gatekeeper.models.pipeline import PipelineState
    from gatekeeper.models.store import PipelineStore
    from gatekeeper.scheduler.backend import ZKBackend

    recorder = Recorder()
    q = make_queue("scheduler-1", recorder)
    store = PipelineStore(zk.client, "gate")
    state = PipelineState("gate")
    held = threading.Event()
    real = recorder.report
    recorder.report = lambda r: (held.wait(20), real(r))[1]
    backend = ZKBackend(zk, "gate", q)
    fresh = report(9, "start")
    backend.report_first(fresh)
    assert recorder.sent == [] and not zk.client.exists(f"{paths.pipeline_reported('gate')}/{fresh.key}")
    state.changed = True
    backend.save(store, state, [])
    # Written in the state's transaction, before it is sent: a crash now leaves it pending, to be settled.
    _, entry_stat = zk.client.get(f"{paths.pipeline_reported('gate')}/{fresh.key}")
    _, state_stat = zk.client.get(paths.pipeline_state("gate"))
    assert entry_stat.czxid == state_stat.mzxid
    assert ledger_entry(zk, fresh) == {"state": "pending", "owner": "scheduler-1"}
    held.set()
    assert outcome(q, fresh) == ReportOutcome()
    assert recorder.sent == [(fresh.key, "start")]
    # An entry already there (an earlier scheduler's): the state is saved without it, the report read from it.
    done = report(10, "start")
    zk.client.create(f"{paths.pipeline_reported('gate')}/{done.key}", encode({"state": "done", "ok": True}))
    backend.report_first(done)
    state.changed = True
    backend.save(store, state, [])
    assert outcome(q, done) == ReportOutcome()
    assert recorder.sent == [(fresh.key, "start")]
    assert PipelineStore(zk.client, "gate").load(None).version == state.version == 1
