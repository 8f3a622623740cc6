"""The pipeline managers' rules, in-process: a fake Gerrit, a fake merger and a fake executor around them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.scheduler.events import TriggerEvent
from gatekeeper.scheduler.interfaces import Report, ReportOutcome
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.model import Change, PipelineState
from gatekeeper.zk.builds import BuildRequest, BuildResult
from gatekeeper.zk.merges import MergeRequest, MergeResult
from tests.layouts import GATE_LAYOUT

# the shared gate layout, with a window of 3 for the small queue (3 active of 5, halved to 1, grown back)
LAYOUT = GATE_LAYOUT.replace("window: {initial: 2, floor: 1", "window: {initial: 3, floor: 1")


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
    ledger: set[str] = field(default_factory=set)
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
        assert report.key not in self.ledger, f"reported twice: {report.key}"
        self.ledger.add(report.key)
        self.reports.append(report)
        if report.submit and report.change.number in self.refuse_submit:
            return ReportOutcome(False, "blocked by Verified")
        return ReportOutcome()


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

    def upload(self, change: Change) -> None:
        self.event("patchset-created", change)
        self.process()

    def new_patchset(self, change: Change) -> None:
        c = self.source.changes[change.number]
        c.patchset += 1
        c.current_patchset = c.patchset
        c.approvals = []
        self.event("patchset-created", change)

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

    def release(self, job: str, change: Change, result: str = "SUCCESS") -> None:
        for req in list(self.backend.builds.values()):
            if req.job == job and req.change["number"] == change.number:
                self.finish(req, result)
        self.settle()

    # -- reading back ---------------------------------------------------------------------------------------------
    def ran(self, job: str, result: str, changes: str) -> bool:
        return (job, result, changes) in self.history

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


def test_three_approved_changes_are_tested_together_and_merge_in_order(gate: Gate) -> None:
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.approve(a, b, c)
    gate.settle()
    assert gate.merged() == ["1,1", "2,1", "3,1"]
    assert gate.ran("unit", "SUCCESS", "1,1 2,1 3,1")
    assert gate.ran("integration", "SUCCESS", "1,1 2,1 3,1")
    assert gate.merge_count == 3
    assert gate.queue() == []
    assert [r.labels for r in gate.reported(a)] == [{"Verified": 0}, {"Verified": 2}]
    assert "- unit https://logs/" in gate.reported(a, "success")[0].message
    assert ": SUCCESS in 1m 01s" in gate.reported(a, "success")[0].message


def test_failed_change_at_head_resets_items_behind_and_is_reported_at_head(gate: Gate) -> None:
    a, b, c = gate.change(), gate.change(), gate.change()
    gate.failing[("unit", 1)] = ["FAILURE"]
    gate.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.release("unit", a, "FAILURE")  # A fails: B and C restart without A
    gate.hold = False
    gate.settle()
    assert gate.ran("unit", "FAILURE", "1,1")
    assert gate.ran("unit", "SUCCESS", "2,1")
    assert gate.ran("unit", "SUCCESS", "2,1 3,1")
    assert gate.merged() == ["2,1", "3,1"]
    failure = gate.reported(a, "failure")[0]
    assert failure.labels == {"Verified": -2}
    assert "- unit https://logs/" in failure.message and ": FAILURE" in failure.message


def test_failed_change_in_the_middle_waits_for_the_head_before_its_report(gate: Gate) -> None:
    a, b, c = gate.change(), gate.change(), gate.change()
    gate.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.release("unit", b, "FAILURE")
    gate.release("integration", b)
    assert gate.reported(b, "failure") == []  # B is done but A is still running ahead of it
    assert gate.queue() == ["1,1", "2,1", "3,1"]
    gate.hold = False
    gate.settle()
    assert gate.ran("unit", "SUCCESS", "1,1 3,1")
    assert gate.merged() == ["1,1", "3,1"]
    assert len(gate.reported(b, "failure")) == 1


def test_two_failures_at_head_each_reported_and_the_rest_merges(gate: Gate) -> None:
    a, b, c, d = gate.change(), gate.change(), gate.change(), gate.change()
    gate.failing[("unit", 1)] = ["FAILURE"]
    gate.failing[("unit", 2)] = ["FAILURE"]
    gate.approve(a, b, c, d)
    gate.settle()
    assert gate.merged() == ["3,1", "4,1"]
    assert gate.ran("unit", "FAILURE", "1,1")
    assert gate.ran("unit", "FAILURE", "2,1")  # retested without A
    assert gate.ran("unit", "SUCCESS", "3,1 4,1")
    assert len(gate.reported(a, "failure")) == len(gate.reported(b, "failure")) == 1


def test_changes_depending_on_a_failed_change_are_dequeued_with_a_reason(gate: Gate) -> None:
    a = gate.change()
    b = gate.change(needs=("1,1",))
    c = gate.change()
    gate.failing[("unit", 1)] = ["FAILURE"]
    gate.approve(a, b, c)
    gate.settle()
    assert gate.merged() == ["3,1"]
    dequeue = gate.reported(b, "dequeue")[0]
    assert "depends on change 1,1, which failed" in dequeue.message
    assert gate.ran("unit", "SUCCESS", "3,1")


def test_approving_a_change_enqueues_the_approved_change_it_needs_first(gate: Gate) -> None:
    gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.source.changes[1].approvals = [{"label": "Code-Review", "value": 2}, {"label": "Approved", "value": 1}]
    gate.approve(b)
    assert gate.queue() == ["1,1", "2,1"]
    gate.settle()
    assert gate.merged() == ["1,1", "2,1"]


def test_depends_on_across_queues_is_refused_with_a_clear_message(gate: Gate) -> None:
    gate.change("org/c")
    b = gate.change("org/a", needs=("1,1",))
    gate.source.changes[1].approvals = [{"label": "Code-Review", "value": 2}, {"label": "Approved", "value": 1}]
    gate.approve(b)
    assert gate.queue() == []
    refusal = gate.reported(b, "refused")[0].message
    assert "depends on change 1,1 in org/c, which is not in the same change queue" in refusal


def test_depends_on_an_unapproved_change_is_refused(gate: Gate) -> None:
    gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.approve(b)
    assert "depends on change 1,1, which cannot enter gate: it does not have Code-Review: +2" in \
        gate.reported(b, "refused")[0].message


def test_dependency_cycles_are_refused(gate: Gate) -> None:
    a = gate.change("org/a", needs=("2,1",))
    gate.change("org/b", needs=("1,1",))
    gate.source.changes[2].approvals = [{"label": "Code-Review", "value": 2}, {"label": "Approved", "value": 1}]
    gate.approve(a)
    assert gate.queue() == []
    assert "dependency cycle 1,1 -> 2,1 -> 1,1" in gate.reported(a, "refused")[0].message


def test_merge_conflict_in_the_middle_is_reported_at_head_and_skipped(gate: Gate) -> None:
    a, b, c = gate.change(), gate.change(), gate.change()
    gate.conflicts.add(2)
    gate.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate.reported(b, "merge-conflict") == []  # not before it reaches the head
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["1,1", "3,1"]
    conflict = gate.reported(b, "merge-conflict")[0]
    assert conflict.labels == {"Verified": -2} and "2,1 conflicts in README" in conflict.message
    assert gate.ran("unit", "SUCCESS", "1,1 3,1")
    assert not any(changes.endswith("2,1") for _, _, changes in gate.history)


def test_new_patch_set_on_an_item_ahead_dequeues_it_and_resets_those_behind(gate: Gate) -> None:
    a, b = gate.change(), gate.change()
    gate.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.new_patchset(a)
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["2,1"]
    assert gate.ran("unit", "SUCCESS", "2,1")
    assert "a new patch set (1,2) was uploaded" in gate.reported(a, "dequeue")[0].message
    assert len(gate.backend.cancelled) >= 2


def test_abandoned_and_unapproved_changes_leave_the_gate(gate: Gate) -> None:
    a, b, c = gate.change(), gate.change(), gate.change()
    gate.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.source.changes[1].status = "ABANDONED"
    gate.event("change-abandoned", a)
    gate.source.changes[2].approvals = [{"label": "Code-Review", "value": 2}]
    gate.event("vote-deleted", b, approvals=[{"label": "Approved", "value": 0, "old": 1}])
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["3,1"]
    assert "it was abandoned" in gate.reported(a, "dequeue")[0].message
    assert "it does not have Approved: +1" in gate.reported(b, "dequeue")[0].message
    assert gate.ran("unit", "SUCCESS", "3,1")


def test_window_halves_on_failure_down_to_the_floor_and_grows_on_merges(gate: Gate) -> None:
    changes = [gate.change("org/s") for _ in range(5)]
    gate.hold = True
    gate.approve(*changes)
    gate.settle()
    state = gate.states["gate"]
    assert state.queues["small"].window == 3
    assert sorted(b.change["number"] for b in gate.backend.builds.values()) == [1, 2, 3]  # only 3 active
    gate.release("unit", changes[0], "FAILURE")
    assert state.queues["small"].window == 1
    assert sorted(b.change["number"] for b in gate.backend.builds.values()) == [2]
    gate.release("unit", changes[1])
    assert state.queues["small"].window == 2
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["2,1", "3,1", "4,1", "5,1"]
    assert state.queues["small"].window == 5


def test_recheck_reenqueues_only_when_not_already_running(gate: Gate) -> None:
    a = gate.change()
    gate.hold = True
    gate.upload(a)
    gate.settle()
    gate.event("comment-added", a, comment="recheck")
    assert len(gate.backend.builds) == 1  # ignored: already live in check
    gate.hold = False
    gate.settle()
    gate.event("comment-added", a, comment="recheck")
    gate.settle()
    assert [r.action for r in gate.reported(a)] == ["start", "success", "start", "success"]
    assert gate.reported(a, "success")[0].labels == {"Verified": 1}


def test_check_tests_a_change_with_the_changes_it_needs_as_non_live_items(gate: Gate) -> None:
    gate.change()
    b = gate.change(needs=("1,1",))
    gate.upload(b)
    gate.settle()
    assert gate.history == [("unit", "SUCCESS", "1,1 2,1")]
    assert [r.change.key for r in gate.backend.reports] == ["2,1", "2,1"]


def test_a_change_approved_while_in_check_leaves_check_for_the_gate(gate: Gate) -> None:
    a = gate.change()
    gate.hold = True
    gate.upload(a)
    gate.settle()
    gate.approve(a)
    assert gate.states["check"].items == {}
    assert gate.queue() == ["1,1"]


def test_promote_moves_changes_to_the_head(gate: Gate) -> None:
    a, b, c = gate.change(), gate.change(), gate.change()
    gate.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate.manager("gate").manage({"action": "promote", "changes": ["3,1"]}) == ""
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["3,1", "1,1", "2,1"]
    assert gate.ran("unit", "SUCCESS", "3,1 1,1 2,1")


def test_management_requests_are_validated(gate: Gate) -> None:
    gate.change()
    m = gate.manager("gate")
    assert m.manage({"action": "dequeue", "change": "5,1"}) == "no change 5,1 in gate"
    assert m.manage({"action": "promote", "changes": ["5,1"]}) == "no change 5,1 in gate"
    assert m.manage({"action": "enqueue", "change": "1,1"}) == \
        "change 1,1 cannot enter gate: it does not have Code-Review: +2"
    assert m.manage({"action": "enqueue", "change": "9,1"}) == "no change 9 in Gerrit"


def test_node_failure_is_retried_then_reported_as_retry_limit(gate: Gate) -> None:
    a, b = gate.change(), gate.change()
    gate.failing[("integration", 1)] = ["NODE_FAILURE", "NODE_FAILURE"]
    gate.failing[("integration", 2)] = ["NODE_FAILURE"]
    gate.approve(a, b)
    gate.settle()
    assert gate.ran("integration", "NODE_FAILURE", "1,1 2,1")
    assert gate.ran("integration", "SUCCESS", "1,1 2,1") is False
    assert gate.ran("integration", "SUCCESS", "2,1")
    assert gate.merged() == ["2,1"]
    assert ": RETRY_LIMIT in 1m 01s (NODE_FAILURE on 2 attempts)" in gate.reported(a, "failure")[0].message


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
    assert sets == {(1, "FAILURE"), (2, "SUCCESS")}


def test_refused_submit_resets_the_items_behind(gate: Gate) -> None:
    a, b = gate.change(), gate.change()
    gate.backend.refuse_submit.add(1)
    gate.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.release("unit", b)
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["2,1"]
    assert gate.ran("unit", "SUCCESS", "1,1 2,1") and gate.ran("unit", "SUCCESS", "2,1")
    assert "could not be merged: blocked by Verified" in gate.reported(a, "submit-refused")[0].message


def test_state_survives_a_round_trip_through_its_records(gate: Gate) -> None:
    from gatekeeper.scheduler.model import Item

    a = gate.change()
    gate.hold = True
    gate.approve(a)
    gate.settle()
    item = next(iter(gate.states["gate"].items.values()))
    again = Item.from_dict(item.to_dict())
    assert again == item and again.builds["unit"].job == "unit"
