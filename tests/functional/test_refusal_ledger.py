"""A refusal ("Change 2,1 cannot enter gate: ...") is ledgered under the event that asked for it, so that a pass
applied again never reports it twice; once the pipeline's state is saved past that event, its ledger entry is
deleted, as an item's entries are when the item leaves. Real ZooKeeper; the gate over the Gerrit simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.backend import ReportQueue
from gatekeeper.zk import paths
from tests.functional.gate_harness import GateHarness
from tests.functional.test_report_ledger import Recorder, Source, ledger_entry, outcome
from tests.helpers import wait_for


def refusal(number: int, event: str) -> Report:
    change = Change(project="org/a", number=number, patchset=1)
    return Report(pipeline="gate", change=change, action="refused", message=f"Change {number},1 cannot enter gate",
                  labels={}, key=f"refused:{event}:{number},1")


@pytest.fixture
def queue(zk) -> Iterator[tuple[ReportQueue, Recorder]]:
    recorder = Recorder()
    made = ReportQueue(zk, "gate", recorder, Source(), "scheduler-1", lambda: None)
    try:
        yield made, recorder
    finally:
        made.stop()


def test_a_settled_refusal_is_kept_until_the_state_is_saved_then_deleted(zk, queue):
    q, recorder = queue
    refused = refusal(2, "q-0000000007")
    assert outcome(q, refused) == ReportOutcome()
    wait_for(lambda: ledger_entry(zk, refused)["state"] == "done", 20, "the refusal to be ledgered as done")
    q.flush(force=True)
    assert ledger_entry(zk, refused)["state"] == "done"  # a pass applying the event again must find it
    assert outcome(q, refused) == ReportOutcome() and recorder.sent == [(refused.key, "refused")]
    q.saved()
    q.flush(force=True)
    assert zk.client.get_children(paths.pipeline_reported("gate")) == []
    assert recorder.sent == [(refused.key, "refused")]


def test_the_gate_leaves_no_refusal_in_its_ledger(gate: GateHarness) -> None:
    other = gate.change("org/c", "Elsewhere")
    app = gate.change("org/a", "Needs elsewhere", depends_on=(other,))
    gate.approve(other, app)
    gate.settle()
    refusals = [m for m in gate.ci_messages(app) if "cannot enter gate" in m]
    assert len(refusals) == 1, refusals

    def refusal_entries() -> list[str]:
        return [k for k in gate.zk.client.get_children(paths.pipeline_reported("gate")) if k.startswith("refused:")]

    wait_for(lambda: refusal_entries() == [], 30, "the settled refusal's ledger entry to be deleted")
    assert gate.status(other) == "MERGED" and gate.status(app) == "NEW"
