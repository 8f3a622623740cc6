"""The pipeline managers' rules that only an in-process run shows: a fake Gerrit, merger and executor around them.

The gate's scenarios (ordering, resets, failures, conflicts, windows, dequeues, promote, retries) are told once,
over real wires, in tests/functional/test_gate.py; these cover what those cannot see or do not set up.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.models.pipeline import Change, PipelineState
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.zk.builds import BuildRequest, BuildResult
from gatekeeper.zk.management import Action, ManagementRequest, NotFound
from gatekeeper.zk.merges import MergeRequest, MergeResult
from tests.layouts import GATE_LAYOUT

LAYOUT = GATE_LAYOUT


class FakeSource:
    def __init__(self) -> None:
        self.changes: dict[int, Change] = {}

    def get_change(self, number: int) -> Change | None:
        c = self.changes.get(number)
        return Change.from_dict(c.to_dict()) if c else None

    def git_url(self, project: str) -> str:
        return f"ssh://gerrit/{project}"


@dataclass
class FakeBackend:
    merges: list[MergeRequest] = field(default_factory=list)
    builds: dict[str, BuildRequest] = field(default_factory=dict)  # running, by id
    cancelled: list[str] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    refuse_submit: set[int] = field(default_factory=set)
    ledger: dict[str, ReportOutcome] = field(default_factory=dict)  # key -> outcome: asked again, not resent
    history: list = field(default_factory=list)

    def record_history(self, event) -> None:
        self.history.append(event)

    def request_merge(self, request: MergeRequest) -> None:
        self.merges.append(request)

    def request_build(self, request: BuildRequest) -> None:
        self.builds[request.id] = request

    def cancel_build(self, build_id: str) -> None:
        if self.builds.pop(build_id, None):
            self.cancelled.append(build_id)

    def report(self, report: Report) -> ReportOutcome:
        if report.key in self.ledger:  # as the report ledger does: a known report is answered, never resent
            return self.ledger[report.key]
        self.reports.append(report)
        outcome = ReportOutcome()
        if report.submit and report.change.number in self.refuse_submit:
            outcome = ReportOutcome(False, "blocked by Verified")
        self.ledger[report.key] = outcome
        return outcome


class Gate:
    """Gerrit, merger and executor as dictionaries; `settle()` runs everything until nothing moves."""

    def __init__(self) -> None:
        self.layout = parse_layout({"layout.yaml": LAYOUT})
        self.source = FakeSource()
        self.backend = FakeBackend()
        self.states = {name: PipelineState(name) for name in self.layout.pipelines}
        self.numbers = itertools.count(1)
        self.conflicts: set[int] = set()  # change numbers that do not merge
        self.failing: dict[tuple[str, int], list[str]] = {}  # (job, change number) -> results to give, in turn
        self.hold = False
        self.history: list[tuple[str, str, str]] = []
        self.merge_count = 0

    # -- Gerrit ---------------------------------------------------------------------------------------------------
    def change(self, project: str = "org/a", needs: tuple[str, ...] = ()) -> Change:
        n = next(self.numbers)
        c = Change(project=project, number=n, patchset=1, current_patchset=1, ref=f"refs/changes/{n:02d}/{n}/1",
                   subject=f"change {n}", needs=list(needs))
        self.source.changes[n] = c
        return c

    def event(self, type_: str, change: Change, **kw) -> None:
        event = TriggerEvent(type=type_, project=change.project, branch="master", change=change.number,
                             patchset=self.source.changes[change.number].patchset, **kw)
        for name, _state in self.states.items():
            self.manager(name).apply_trigger(event)

    def approve(self, *changes: Change) -> None:
        for change in changes:
            self.source.changes[change.number].approvals = [
                {"label": "Code-Review", "value": 2, "by": "core"}, {"label": "Approved", "value": 1, "by": "core"}]
            self.event("comment-added", change, approvals=[{"label": "Approved", "value": 1}])
            self.process()

    def manager(self, name: str) -> PipelineManager:
        return PipelineManager(self.layout, self.layout.pipelines[name], self.states[name], self.backend,
                               self.source)

    def process(self) -> None:
        for name in self.states:
            self.manager(name).process()

    # -- merger and executor --------------------------------------------------------------------------------------
    def settle(self) -> None:
        for _ in range(200):
            self.process()
            moved = False
            while self.backend.merges:
                req = self.backend.merges.pop(0)
                self.merge_count += 1
                number = req.changes[0]["number"]
                ok = number not in self.conflicts
                result = MergeResult(id=req.id, item=req.item, pipeline=req.pipeline, ok=ok, conflict=not ok,
                                     message="" if ok else f"{number},1 conflicts in README",
                                     repo_state={"branches": {}, "steps": [*((req.base or {}).get("steps", [])),
                                                                          number]})
                self.manager(req.pipeline).apply_merge_result(result)
                moved = True
            if not self.hold:
                for req in list(self.backend.builds.values()):
                    self.finish(req)
                    moved = True
            if not moved:
                return
        raise AssertionError("the gate did not settle")

    def finish(self, req: BuildRequest, result: str | None = None) -> None:
        del self.backend.builds[req.id]
        turns = self.failing.get((req.job, req.change["number"]))
        outcome = result or (turns.pop(0) if turns else "SUCCESS")
        self.history.append((req.job, outcome, req.changes))
        self.manager(req.pipeline).apply_build_result(
            BuildResult(id=req.id, pipeline=req.pipeline, item=req.item, job=req.job, result=outcome,
                        log_url=f"https://logs/{req.id[:6]}", start_time=100.0, end_time=161.0))

    # -- reading back ---------------------------------------------------------------------------------------------
    def reported(self, change: Change, action: str | None = None) -> list[Report]:
        return [r for r in self.backend.reports if r.change.number == change.number
                and (action is None or r.action == action)]

    def merged(self) -> list[str]:
        return [r.change.key for r in self.backend.reports if r.action == "success" and r.submit
                and r.change.number not in self.backend.refuse_submit]

    def queue(self, pipeline: str = "gate", name: str = "integrated") -> list[str]:
        state = self.states[pipeline]
        q = state.queues.get(name)
        return [state.items[i].key for i in q.items] if q else []


@pytest.fixture
def gate() -> Gate:
    return Gate()


def test_approving_a_change_enqueues_the_approved_change_it_needs_first(gate: Gate) -> None:
    gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.source.changes[1].approvals = [{"label": "Code-Review", "value": 2}, {"label": "Approved", "value": 1}]
    gate.approve(b)
    assert gate.queue() == ["1,1", "2,1"]
    gate.settle()
    assert gate.merged() == ["1,1", "2,1"]


def test_depends_on_an_unapproved_change_is_refused(gate: Gate) -> None:
    gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.approve(b)
    assert "depends on change 1,1, which cannot enter gate: it does not have Code-Review: +2" in \
        gate.reported(b, "refused")[0].message


def test_management_requests_are_validated(gate: Gate) -> None:
    gate.change()
    m = gate.manager("gate")
    with pytest.raises(NotFound, match="^no change 5,1 in gate$"):
        m.manage(ManagementRequest(Action.DEQUEUE, "gate", change="5,1"))
    with pytest.raises(NotFound, match="^no change 5,1 in gate$"):
        m.manage(ManagementRequest(Action.PROMOTE, "gate", changes=["5,1"]))
    assert m.manage(ManagementRequest(Action.ENQUEUE, "gate", change="1,1")) == \
        "change 1,1 cannot enter gate: it does not have Code-Review: +2"
    with pytest.raises(NotFound, match="^no change 9 in Gerrit$"):
        m.manage(ManagementRequest(Action.ENQUEUE, "gate", change="9,1"))


def test_every_attempt_and_every_reported_buildset_goes_to_build_history(gate: Gate) -> None:
    a, b = gate.change(), gate.change()
    gate.failing[("integration", 1)] = ["NODE_FAILURE", "NODE_FAILURE"]
    gate.approve(a, b)
    gate.settle()
    builds = [e for e in gate.backend.history if type(e).__name__ == "BuildEvent"]
    integration_a = [(e.attempt, e.result, e.final) for e in builds if e.job == "integration" and e.change == 1
                     and e.result != "ABORTED"]
    assert (1, "NODE_FAILURE", False) in integration_a and (2, "RETRY_LIMIT", True) in integration_a
    assert all(e.pipeline == "gate" and e.project == "org/a" for e in builds)
    sets = {(e.change, e.result) for e in gate.backend.history if type(e).__name__ == "BuildsetEvent"}
    assert sets == {(1, "INFRA_FAILURE"), (2, "SUCCESS")}


def test_a_success_whose_submit_gerrit_refused_is_recorded_as_a_merge_failure(gate: Gate) -> None:
    """Zuul's reportItem: a success not merged is reported as such, then its buildset's result is MERGE_FAILURE."""
    a, b = gate.change(), gate.change()
    gate.backend.refuse_submit.add(a.number)
    gate.approve(a, b)
    gate.settle()
    sets = {(e.change, e.result) for e in gate.backend.history if type(e).__name__ == "BuildsetEvent"}
    assert sets == {(1, "MERGE_FAILURE"), (2, "SUCCESS")}
    assert gate.merged() == [b.key]
    assert "could not be merged: blocked by Verified" in gate.reported(a, "submit-refused")[0].message


def test_state_survives_a_round_trip_through_its_records(gate: Gate) -> None:
    from gatekeeper.models.pipeline import Item

    a = gate.change()
    gate.hold = True
    gate.approve(a)
    gate.settle()
    item = next(iter(gate.states["gate"].items.values()))
    again = Item.from_dict(item.to_dict())
    assert again == item and again.builds["unit"].job == "unit"


def test_an_items_merge_is_asked_for_while_the_one_ahead_is_pending_naming_that_request(gate: Gate) -> None:
    a, b, c = gate.change(), gate.change(), gate.change()
    gate.approve(a, b, c)  # no merge has answered yet
    first, second, third = gate.backend.merges
    assert (first.base, first.after) == (None, "")
    assert (second.base, second.after, third.after) == (None, first.id, second.id)
    assert [gate.states["gate"].items[r.item].changes for r in (first, second, third)] == \
        ["1,1", "1,1 2,1", "1,1 2,1 3,1"]
    gate.settle()
    assert gate.merged() == ["1,1", "2,1", "3,1"]
    # Once the item ahead is merged, the next request carries its state itself.
    d, e = gate.change(), gate.change()
    gate.hold = True
    gate.approve(d)
    gate.settle()  # d is merged, its builds run
    gate.approve(e)
    ahead = gate.states["gate"].find("4,1")
    assert (gate.backend.merges[-1].after, gate.backend.merges[-1].base) == ("", ahead.repo_state)
