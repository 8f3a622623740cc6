"""The pipeline managers' rules as their users see them, on the in-process gate of test_scheduler_manager (a fake
Gerrit, merger and executor): which changes are tested on what, what is reported with which words, what an operator
is told. Each checks an outcome a wrong decision in gatekeeper/scheduler/manager.py would change, and none repeats
a scenario the real-harness gate tests (tests/functional/test_gate*.py) check: these are what only a direct look at
the managers shows (request fields, answers applied once, refusal texts, operator answers). tools/mutation-check runs
them against the manager's mutants.
"""

from __future__ import annotations

import itertools

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.manager import PipelineManager, job_params
from gatekeeper.zk.builds import BuildResult
from gatekeeper.zk.management import Action, ManagementRequest, NotFound
from gatekeeper.zk.merges import MergeResult
from tests.layouts import GATE_LAYOUT
from tests.unit.test_scheduler_manager import Gate


@pytest.fixture
def gate() -> Gate:
    return Gate()


def approved(g: Gate, *changes: Change) -> None:
    """Give the changes the votes the gate requires, without the event that would enqueue them."""
    for change in changes:
        g.source.changes[change.number].approvals = [
            {"label": "Code-Review", "value": 2, "by": "core"}, {"label": "Approved", "value": 1, "by": "core"}]


def runs_of(g: Gate, job: str = "unit") -> list[tuple[str, str]]:
    return [(changes, result) for name, result, changes in g.history if name == job]


# -- the gate's rule ------------------------------------------------------------------------------------------------
def test_a_build_lost_to_its_node_is_retried_elsewhere_and_then_given_up_with_both_attempts_said(gate: Gate) -> None:
    a = gate.change("org/a")
    gate.hold = True
    gate.approve(a)
    gate.settle()
    [first] = [r for r in gate.backend.builds.values() if r.job == "integration"]
    assert (first.attempt, first.attempts, first.avoid_providers) == (1, 2, [])
    assert first.priority == [gate.layout.pipelines["gate"].priority, 0]
    del gate.backend.builds[first.id]
    manager = gate.manager("gate")
    assert manager.apply_build_result(BuildResult(id=first.id, pipeline="gate", item=first.item, job="integration",
                                                  result="NODE_FAILURE", node={"provider": "cloud-a"}))
    [second] = [r for r in gate.backend.builds.values() if r.job == "integration"]
    assert (second.attempt, second.avoid_providers) == (2, ["cloud-a"])
    del gate.backend.builds[second.id]
    assert gate.manager("gate").apply_build_result(BuildResult(
        id=second.id, pipeline="gate", item=second.item, job="integration", result="NODE_FAILURE",
        message="node vanished", log_url="https://logs/x", start_time=100.0, end_time=130.0))
    assert not gate.manager("gate").apply_build_result(BuildResult(
        id=second.id, pipeline="gate", item=second.item, job="integration", result="SUCCESS"))  # once only
    gate.hold = False
    gate.settle()
    [report] = gate.reported(a, "infra-failure") or gate.reported(a, "failure")
    assert "NODE_FAILURE on 2 attempts: node vanished" in report.message
    assert not gate.merged()


def test_a_merger_error_is_asked_again_and_after_three_the_change_is_reported_without_a_vote(gate: Gate) -> None:
    a = gate.change("org/b")
    gate.approve(a)
    for attempt in range(1, 4):
        [request] = gate.backend.merges
        gate.backend.merges.clear()
        assert gate.manager("gate").apply_merge_result(MergeResult(
            id=request.id, item=request.item, pipeline="gate", ok=False, conflict=False, message="disk full"))
        if attempt < 3:
            assert not gate.manager("gate").apply_merge_result(MergeResult(
                id=request.id, item=request.item, pipeline="gate", ok=True))  # an answer to a request given up
        gate.process()
        assert len(gate.backend.merges) == (1 if attempt < 3 else 0)
    assert not gate.reported(a, "merge-conflict") and not gate.reported(a, "failure")
    [report] = gate.reported(a, "infra-failure")  # the merger's outage is not the change's fault
    assert report.labels == {} and "The merger failed 3 times: disk full" in report.message


def test_in_check_a_needed_change_the_merger_keeps_failing_on_gives_no_vote(gate: Gate) -> None:
    """B needs A; check tests B on A. The merger cannot merge A (an error, not a conflict): B is reported, once,
    without a vote, told that the merger failed on the change it needs."""
    gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.event("patchset-created", b)
    gate.process()
    while gate.backend.merges:  # each answer seen by a pass before the next: A's third error before B's
        req = gate.backend.merges.pop(0)
        assert req.pipeline == "check" and (req.changes[0]["number"] == 1 or req.after)  # B's waits on A's
        gate.manager("check").apply_merge_result(MergeResult(id=req.id, item=req.item, pipeline="check",
                                                              message="disk full"))
        gate.process()
    assert not gate.reported(b, "merge-conflict")
    [report] = gate.reported(b, "infra-failure")
    assert report.pipeline == "check" and report.labels == {}
    assert "Change 1,1, which this change needs: The merger failed 3 times: disk full" in report.message


# -- what may enter -------------------------------------------------------------------------------------------------
def test_changes_that_cannot_enter_the_gate_are_refused_with_the_reason(gate: Gate) -> None:
    gate.change("org/b")  # 1: never approved
    gone = gate.change("org/b")  # 2: abandoned
    gate.source.changes[gone.number].status = "ABANDONED"
    old = gate.change("org/b")  # 3: patch set 2 is current
    gate.source.changes[old.number].patchset = gate.source.changes[old.number].current_patchset = 2
    gate.source.changes[old.number].ref = "refs/changes/03/3/2"
    elsewhere = gate.change("org/c")  # 4: in the queue "other"
    approved(gate, elsewhere)
    cases = [
        (gate.change("org/b", needs=("2,1",)), "it depends on change 2,1, which is abandoned"),
        (gate.change("org/b", needs=("3,1",)), "it depends on 3,1, an outdated patch set of change 3"),
        (gate.change("org/b", needs=("99,1",)), "it depends on change 99,1, which cannot be found"),
        (gate.change("org/b", needs=("4,1",)), 'it depends on change 4,1 in org/c, which is not in the same change '
                                               'queue ("other", not "integrated")'),
        (gate.change("org/b", needs=("1,1",)), "it depends on change 1,1, which cannot enter gate: it does not "
                                               "have Code-Review: +2"),
    ]
    for change, reason in cases:
        gate.approve(change)
        [refused] = gate.reported(change, "refused")
        if "same change queue" in reason:  # as Zuul: its warning through the failure reporters, their vote
            assert refused.labels == {"Verified": -2}
            assert refused.message == (f"Build failed (gate pipeline).\n\nWarning:\n  Change 4 in project org/c does "
                                       f"not share a change queue with {change.number} in project org/b\n\nChange "
                                       f"{change.key} cannot enter gate: {reason}"), refused.message
        else:  # Zuul gives no report for these: a message, no vote
            assert refused.labels == {} and refused.message == f"Change {change.key} cannot enter gate: {reason}"
    assert gate.queue() == []


def test_an_event_processed_again_after_a_crash_reports_its_refusal_once(gate: Gate) -> None:
    """The refusal of an event is keyed by the event, not by when it was processed: a replay of the same event
    (a scheduler that died before it took the event off its queue) is not told to Gerrit a second time."""
    gate.change("org/b")  # 1: not approved
    b = gate.change("org/b", needs=("1,1",))
    approved(gate, b)
    event = TriggerEvent(id="0000000042", type="comment-added", project="org/b", branch="master", change=b.number,
                         patchset=1, approvals=[{"label": "Approved", "value": 1}])
    ticks = itertools.count(1000)
    for _ in range(2):
        PipelineManager(gate.layout, gate.layout.pipelines["gate"], gate.states["gate"], gate.backend, gate.source,
                        clock=lambda: float(next(ticks))).apply_trigger(event)
    assert [r.message for r in gate.reported(b, "refused")] == [
        "Change 2,1 cannot enter gate: it depends on change 1,1, which cannot enter gate: it does not have "
        "Code-Review: +2"]


def test_a_change_of_a_project_without_gate_jobs_is_not_enqueued(gate: Gate) -> None:
    m = gate.manager("gate")
    change = gate.change("org/none")
    approved(gate, change)
    assert m.enqueue(gate.source.get_change(change.number)) == "project org/none has no jobs in pipeline gate"
    a = gate.change("org/b")
    gate.approve(a)
    assert gate.manager("gate").enqueue(gate.source.get_change(a.number)) == "change 2,1 is already in gate"


# -- events on queued changes ---------------------------------------------------------------------------------------
def test_check_tests_a_change_on_what_it_needs_and_reports_their_conflict_as_its_own(gate: Gate) -> None:
    a = gate.change("org/b")
    b = gate.change("org/b", needs=("1,1",))
    gate.event("patchset-created", b)
    gate.settle()
    assert ("1,1 2,1", "SUCCESS") in runs_of(gate)
    [success] = gate.reported(b, "success")
    assert success.labels == {"Verified": 1} and not gate.reported(a)
    c = gate.change("org/b")
    d = gate.change("org/b", needs=(c.key,))
    gate.conflicts.add(c.number)
    gate.event("patchset-created", d)
    gate.settle()
    [conflict] = gate.reported(d, "merge-conflict")
    assert f"Change {c.key}, which this change needs: {c.key} conflicts in README" in conflict.message
    assert gate.states["check"].queues == {}


# -- operators ------------------------------------------------------------------------------------------------------
def test_an_operator_promotes_changes_to_the_head_and_is_told_what_cannot_be_promoted(gate: Gate) -> None:
    a, b, c = gate.change("org/b"), gate.change("org/b"), gate.change("org/b", needs=("2,1",))
    other = gate.change("org/c")
    gate.hold = True
    gate.approve(a, b, c, other)
    gate.settle()
    m = gate.manager("gate")
    promote = lambda *keys: m.manage(ManagementRequest(Action.PROMOTE, "gate", changes=list(keys)))  # noqa: E731
    assert promote() == "promote needs at least one change"
    assert promote("3,1") == "change 3,1 needs 2,1, which would be behind it"
    with pytest.raises(NotFound, match="no change 9,1 in gate"):
        promote("9,1")
    assert gate.queue() == ["1,1", "2,1", "3,1"]
    assert promote("2,1", "3,1") == ""
    assert gate.queue() == ["2,1", "3,1", "1,1"]
    gate.hold = False
    gate.settle()
    assert [key for key in gate.merged() if key != "4,1"] == ["2,1", "3,1", "1,1"]
    assert ("2,1", "SUCCESS") in runs_of(gate) and ("2,1 3,1 1,1", "SUCCESS") in runs_of(gate)


def test_an_operator_dequeues_a_change_which_is_told_and_those_behind_restart(gate: Gate) -> None:
    a, b = gate.change("org/b"), gate.change("org/b")
    gate.hold = True
    gate.approve(a, b)
    gate.settle()
    assert gate.manager("gate").manage(ManagementRequest(Action.DEQUEUE, "gate", change="1,1")) == ""
    [dequeued] = gate.reported(a, "dequeue")
    assert "Removed because an operator dequeued it." in dequeued.message
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["2,1"] and ("2,1", "SUCCESS") in runs_of(gate)
    c = gate.change("org/b")
    gate.event("patchset-created", c)
    gate.process()
    assert gate.manager("check").manage(ManagementRequest(Action.DEQUEUE, "check", change="3,1")) == ""
    gate.process()
    assert gate.states["check"].queues == {} and not gate.reported(c, "dequeue")


def test_an_operator_enqueues_only_a_current_approved_change_given_as_number_comma_patch_set(gate: Gate) -> None:
    a = gate.change("org/b")
    m = gate.manager("gate")
    enqueue = lambda key: m.manage(ManagementRequest(Action.ENQUEUE, "gate", change=key))  # noqa: E731
    assert enqueue("one") == '"one" is not a change (expected NUMBER,PATCHSET such as 5,1)'
    assert enqueue("1,2") == "change 1,2 is not current (the current patch set is 1,1)"
    approved(gate, a)
    m = gate.manager("gate")  # a manager looks a change up once per pass
    assert enqueue("1,1") == ""
    assert gate.queue() == ["1,1"]
    assert enqueue("1,1") == "change 1,1 is already in gate"


# -- what an executor is given --------------------------------------------------------------------------------------
def test_a_build_request_carries_the_whole_job_definition() -> None:
    layout = parse_layout({"layout.yaml": """
pipelines:
  - name: check
    manager: independent
    trigger: {gerrit: [{event: patchset-created}]}
jobs:
  - name: full
    run: [setup.sh, test.sh]
    timeout: 1200
    vars: {LEVEL: deep}
    collect: [logs/*.txt]
    voting: false
    attempts: 3
    required-projects: [org/lib]
projects:
  - name: org/a
    pipelines: {check: [full]}
"""})
    params = job_params(layout.jobs["full"])
    assert params["run"] == ["setup.sh", "test.sh"] and params["timeout"] == 1200
    assert params["vars"] == {"LEVEL": "deep"} and params["collect"] == ["logs/*.txt"]
    assert params["label"] == "" and params["voting"] is False
    assert params["required_projects"] == ["org/lib"]
    assert set(params) == {"run", "timeout", "vars", "collect", "devstack", "required_projects", "label", "voting",
                           "hold_hours", "variant"}
    assert set(params["devstack"]) == {"localrc", "local_conf"}


def test_an_event_for_a_change_gerrit_does_not_know_changes_nothing(gate: Gate) -> None:
    m = gate.manager("gate")
    m.apply_trigger(TriggerEvent(type="comment-added", project="org/b", branch="master", change=42, patchset=1,
                                 approvals=[{"label": "Approved", "value": 1}]))
    assert gate.states["gate"].items == {} and gate.backend.reports == []


# -- what the merger and the executors are asked for ----------------------------------------------------------------
LAYOUT_WITH_PROJECTS = GATE_LAYOUT.replace("""  - name: integration
    attempts: 2""", """  - name: integration
    attempts: 2
    required-projects: [org/lib, org/a]""").replace("""  - name: org/a
    queue: integrated""", """  - name: org/a
    queue: integrated
    merge-mode: cherry-pick""") + """  - name: org/lib
    pipelines: {}
"""


def test_merge_and_build_requests_carry_urls_merge_mode_required_projects_state_and_priority() -> None:
    g = Gate()
    g.layout = parse_layout({"layout.yaml": LAYOUT_WITH_PROJECTS})
    a, b = g.change("org/a"), g.change("org/b")
    g.hold = True
    g.approve(a, b)
    first, second = g.backend.merges[:2]
    [spec] = first.changes
    assert (spec["project"], spec["url"], spec["merge_mode"]) == ("org/a", "ssh://gerrit/org/a", "cherry-pick")
    assert first.projects == [{"project": "org/lib", "branch": "master", "url": "ssh://gerrit/org/lib"}]
    assert second.changes[0]["merge_mode"] == "merge-resolve" and second.projects == []
    assert first.created > 0
    g.settle()
    builds = {(r.change["number"], r.job): r for r in g.backend.builds.values()}
    a_item, b_item = g.states["gate"].find("1,1"), g.states["gate"].find("2,1")
    integration = builds[(1, "integration")]
    assert integration.change["url"] == "ssh://gerrit/org/a" and integration.change["merge_mode"] == "cherry-pick"
    assert integration.repo_state == a_item.repo_state and integration.repo_state is not None
    assert integration.params["required_projects"] == ["org/lib", "org/a"] and integration.attempts == 2
    assert builds[(2, "unit")].repo_state == b_item.repo_state != a_item.repo_state
    priority = g.layout.pipelines["gate"].priority
    assert [builds[(1, "unit")].priority, builds[(2, "unit")].priority] == [[priority, 0], [priority, 1]]
    assert builds[(2, "unit")].created > 0 and builds[(2, "unit")].label == ""


def test_each_change_is_told_once_that_its_jobs_start_before_its_verdict(gate: Gate) -> None:
    a, b = gate.change("org/b"), gate.change("org/b")
    gate.approve(a, b)
    gate.settle()
    for change in (a, b):
        assert [r.action for r in gate.reported(change)] == ["start", "success"]
        assert gate.reported(change, "start")[0].message.startswith("Starting gate jobs.")


def test_the_builds_of_changes_behind_a_failure_are_cancelled_when_they_restart(gate: Gate) -> None:
    a, b, c = gate.change("org/b"), gate.change("org/b"), gate.change("org/b")
    gate.hold = True
    gate.approve(a, b, c)
    gate.settle()
    running = {r.change["number"]: r.id for r in gate.backend.builds.values()}
    [a_unit] = [r for r in gate.backend.builds.values() if r.change["number"] == 1]
    gate.finish(a_unit, "FAILURE")
    gate.process()
    assert sorted(gate.backend.cancelled) == sorted([running[2], running[3]])
    restarted = sorted(r.changes for r in gate.backend.builds.values())
    assert restarted == [] or all(not c.startswith("1,1") for c in restarted)


def test_a_change_whose_dependency_an_operator_dequeued_leaves_saying_it_is_no_longer_ahead(gate: Gate) -> None:
    a = gate.change("org/b")
    b = gate.change("org/b", needs=("1,1",))
    gate.hold = True
    gate.approve(a, b)
    gate.settle()
    assert gate.manager("gate").manage(ManagementRequest(Action.DEQUEUE, "gate", change="1,1")) == ""
    gate.process()
    [dequeued] = gate.reported(b, "failure")
    assert "It depends on change 1,1, which is no longer ahead of it in the queue." in dequeued.message


def test_a_dependent_is_told_every_voting_job_that_failed_ahead_of_it(gate: Gate) -> None:
    """A's unit and integration jobs both fail before a pass sees either (two results in one batch): B, which needs
    A, leaves naming both (the real gate cannot promise both results arrive before a pass)."""
    a = gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.hold = True
    gate.approve(a, b)
    gate.settle()
    for request in [r for r in gate.backend.builds.values() if r.change["number"] == 1]:
        gate.finish(request, "FAILURE")
    gate.process()
    [dequeued] = gate.reported(b, "failure")
    assert "It depends on change 1,1, which failed (unit: FAILURE, integration: FAILURE)." in dequeued.message


def test_a_layout_that_adds_a_requirement_takes_out_the_changes_that_no_longer_meet_it(gate: Gate) -> None:
    a = gate.change("org/b")
    gate.hold = True
    gate.approve(a)
    gate.settle()
    assert gate.queue() == ["1,1"]
    gate.layout = parse_layout({"layout.yaml": GATE_LAYOUT.replace(
        "approval: [{Code-Review: 2}, {Approved: 1}]", "approval: [{Code-Review: 2}, {Approved: 1}, {Verified: 1}]")})
    gate.process()
    assert gate.queue() == []
    assert gate.reported(a, "failure")


def test_a_change_abandoned_while_in_check_takes_its_queue_out_and_its_builds_are_cancelled(gate: Gate) -> None:
    gate.change("org/b")
    b = gate.change("org/b", needs=("1,1",))
    gate.hold = True
    gate.event("patchset-created", b)
    gate.settle()
    assert gate.queue("check", "org/b 2,1") == ["1,1", "2,1"]
    running = [r.id for r in gate.backend.builds.values()]
    assert running
    gate.source.changes[b.number].status = "ABANDONED"
    gate.event("comment-added", b)
    gate.process()
    assert gate.states["check"].queues == {} and gate.states["check"].items == {}
    assert sorted(gate.backend.cancelled) == sorted(running)


def test_a_retried_build_keeps_its_changes_place_in_the_queue_as_its_node_priority(gate: Gate) -> None:
    a1, a2 = gate.change("org/a"), gate.change("org/a")
    gate.hold = True
    gate.approve(a1, a2)
    gate.settle()
    [first] = [r for r in gate.backend.builds.values() if r.job == "integration" and r.change["number"] == 2]
    assert first.priority[1] == 1
    del gate.backend.builds[first.id]
    gate.manager("gate").apply_build_result(BuildResult(id=first.id, pipeline="gate", item=first.item,
                                                        job="integration", result="NODE_FAILURE"))
    [again] = [r for r in gate.backend.builds.values() if r.job == "integration" and r.change["number"] == 2]
    assert (again.attempt, again.priority) == (2, [gate.layout.pipelines["gate"].priority, 1])
    assert again.avoid_providers == [], "no node, so no provider to avoid"


def test_a_dependent_of_a_change_lost_to_the_infrastructure_leaves_without_a_vote(gate: Gate) -> None:
    """A's integration build is lost to the infrastructure on every attempt: A gets no vote, and neither does B,
    which needs A: B is told why through the dequeue reporter, not the failure reporters."""
    a = gate.change("org/a")
    b = gate.change("org/b", needs=("1,1",))
    gate.failing[("integration", 1)] = ["NODE_FAILURE", "NODE_FAILURE"]
    gate.approve(a, b)
    gate.settle()
    assert gate.queue() == []
    assert gate.reported(a, "infra-failure") and not gate.reported(a, "failure")
    assert not gate.reported(b, "failure")
    [dequeued] = gate.reported(b, "dequeue")
    assert "Removed because it depends on change 1,1, which could not be tested because of an infrastructure " \
        "failure" in dequeued.message
    assert dequeued.labels == {}
