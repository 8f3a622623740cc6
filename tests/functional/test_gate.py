"""Gate scenarios over real wires: ZooKeeper, the Gerrit simulator over SSH, the merger, the test executor."""

from __future__ import annotations

import re

import pytest

from gatekeeper.zk.management import MalformedRequest
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for


def test_three_approved_changes_merge_in_order(gate: GateHarness) -> None:
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.settle()
    gate.approve(a, b, c)
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1 3,1"), ("integration", "SUCCESS", "1,1 2,1 3,1"))
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3
    assert gate.ci_votes(a) == {"Verified": 2}
    assert gate.branch_log("org/a")[:2] == ['Merge "Change 3"', 'Merge "Change 1"'] or \
        "Change 3" in gate.branch_log("org/a")[0]


def gate_messages(gate: GateHarness, change, pipeline: str = "gate") -> list[str]:
    """CI's messages on a change from one pipeline, without the "Patch Set N: votes" preamble."""
    other = "check" if pipeline == "gate" else "gate"
    texts = [m.split("\n\n", 1)[1] if "\n\n" in m else m for m in gate.ci_messages(change)]
    return [t for t in texts if f"({other} pipeline)" not in t and f"Starting {other} jobs." not in t]


def test_failure_at_head_restarts_the_changes_behind_without_it(gate: GateHarness) -> None:
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert sorted((r.job, r.changes) for r in gate.executor.held()) == [
        ("integration", "1,1"), ("integration", "1,1 2,1 3,1"), ("unit", "1,1"), ("unit", "1,1 2,1"),
        ("unit", "1,1 2,1 3,1")]
    gate.executor.release("unit", a.number, "FAILURE")  # A fails: B and C restart without A
    gate.settle()
    assert sorted(r.changes for r in gate.executor.held()) == ["1,1", "2,1", "2,1 3,1", "2,1 3,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "FAILURE", "1,1"), ("integration", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1"),
                        ("unit", "SUCCESS", "2,1 3,1"), ("integration", "SUCCESS", "2,1 3,1"))
    assert [gate.status(x) for x in (a, b, c)] == ["NEW", "MERGED", "MERGED"]
    assert gate.ci_votes(a) == {"Verified": -2}
    failure = gate_messages(gate, a)[-1]
    assert failure.startswith("Build failed (gate pipeline).")
    assert "- unit https://logs.example.com/" in failure and re.search(r": FAILURE in \d+s\n", failure)
    assert "- integration https://logs.example.com/" in failure and ": SUCCESS in " in failure


def test_failure_in_the_middle_is_reported_only_when_it_reaches_the_head(gate: GateHarness) -> None:
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.executor.release("unit", b.number, "FAILURE")
    gate.settle()
    assert gate_messages(gate, b) == ["Starting gate jobs."]  # A, ahead of it, is still running
    assert ("unit", "1,1 3,1") in [(r.job, r.changes) for r in gate.executor.held()]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "FAILURE", "1,1 2,1"), ("unit", "SUCCESS", "1,1 3,1"))
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "NEW", "MERGED"]
    assert gate.ci_votes(b) == {"Verified": -2}


def test_two_failures_at_head_are_both_reported_and_the_rest_merges(gate: GateHarness) -> None:
    a, b, c, d = (gate.change("org/b") for _ in range(4))
    gate.executor.hold = True
    gate.approve(a, b, c, d)
    gate.settle()
    gate.executor.release("unit", a.number, "FAILURE")
    gate.settle()
    gate.executor.release("unit", b.number, "FAILURE")
    gate.settle()
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "FAILURE", "1,1"), ("unit", "FAILURE", "2,1"), ("unit", "SUCCESS", "3,1 4,1"))
    assert [gate.status(x) for x in (a, b, c, d)] == ["NEW", "NEW", "MERGED", "MERGED"]
    assert gate.ci_votes(a) == gate.ci_votes(b) == {"Verified": -2}


def test_changes_that_depend_on_a_failed_change_are_dequeued_saying_why(gate: GateHarness) -> None:
    a = gate.change("org/a")
    b = gate.change("org/a", parent=a)
    c = gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.executor.release("unit", a.number, "FAILURE")
    gate.settle()
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate_messages(gate, b)[-1].startswith("This change depends on a change that failed to merge.\n\n"
                                                 "It depends on change 1,1, which failed (unit: FAILURE).")
    assert gate.ci_votes(b) == {"Verified": -2}
    gate.assert_history(("unit", "SUCCESS", "3,1"))
    assert [gate.status(x) for x in (a, b, c)] == ["NEW", "NEW", "MERGED"]


def test_cross_project_depends_on_in_one_queue_merges_in_dependency_order(gate: GateHarness) -> None:
    lib = gate.change("org/b", "Add API")
    app = gate.change("org/a", "Use API", depends_on=(lib,))
    gate.approve(lib, app)
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))
    assert gate.status(lib) == gate.status(app) == "MERGED"


def test_depends_on_a_change_in_another_queue_is_refused_with_a_clear_message(gate: GateHarness) -> None:
    other = gate.change("org/c", "Elsewhere")
    app = gate.change("org/a", "Needs elsewhere", depends_on=(other,))
    gate.approve(other, app)
    gate.settle()
    refusal = gate_messages(gate, app)[-1]
    assert refusal == ("Build failed (gate pipeline).\n\nWarning:\n  Change 1 in project org/c does not share a "
                       "change queue with 2 in project org/a\n\nChange 2,1 cannot enter gate: it depends on change "
                       '1,1 in org/c, which is not in the same change queue ("other", not "integrated")')
    assert gate.ci_votes(app) == {"Verified": -2}  # as Zuul's _reportNonEnqueuedItem: the failure reporters
    assert gate.status(other) == "MERGED" and gate.status(app) == "NEW"


def test_merge_conflict_in_the_middle_is_reported_as_such_and_skipped(gate: GateHarness) -> None:
    a = gate.change("org/a", files={"README": "from a\n"})
    b = gate.change("org/a", files={"README": "from b\n"})
    c = gate.change("org/a", files={"c.txt": "c\n"})
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate_messages(gate, b) == []  # its merge failed: it never started
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "NEW", "MERGED"]
    assert gate.ci_votes(b) == {"Verified": -2}
    assert len(gate_messages(gate, b)) == 1  # one report for one outcome: no start, no log links
    conflict = gate_messages(gate, b)[-1]
    assert "https://" not in conflict
    assert conflict.startswith("This change could not be merged onto the changes ahead of it.")
    assert "2,1" in conflict and "org/a" in conflict
    gate.assert_history(("unit", "SUCCESS", "1,1 3,1"))
    assert not any(changes.endswith("2,1") for _, _, changes in gate.history() if changes != "1,1 2,1")


def test_new_patch_set_on_an_item_ahead_dequeues_it_and_resets_those_behind(gate: GateHarness) -> None:
    a, b = gate.change("org/a"), gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.sim.create_patchset(a, files={"more.txt": "v2\n"})
    gate.settle()
    assert "Removed because a new patch set (1,2) was uploaded." in gate_messages(gate, a)[-1]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "2,1"))
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]


def test_abandoned_change_leaves_the_gate_and_the_rest_merges(gate: GateHarness) -> None:
    a, b = gate.change("org/a"), gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.sim.abandon(a, "jane", "not needed")
    gate.settle()
    assert gate.gate_queue() == ["2,1"]
    assert gate_messages(gate, a) == ["Starting gate jobs."]  # whoever abandoned it needs no message
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "2,1"))
    assert gate.status(b) == "MERGED"


def test_removed_approval_dequeues_the_change(gate: GateHarness) -> None:
    a, b = gate.change("org/a"), gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.sim.delete_vote(a, "rita", "Approved")
    gate.settle()
    assert gate_messages(gate, a)[-1].startswith("This change is unable to merge due to a missing merge requirement."
                                                 "\n\nIt does not have Approved: +1.")
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    gate.assert_history(("unit", "SUCCESS", "2,1"))


def test_window_halves_on_a_failure_and_grows_with_each_merge(gate: GateHarness) -> None:
    changes = [gate.change("org/s") for _ in range(4)]
    gate.executor.hold = True
    gate.approve(*changes)
    gate.settle()
    assert sorted(r.changes for r in gate.executor.held()) == ["1,1", "1,1 2,1"]  # window 2
    gate.executor.release("unit", 1, "FAILURE")
    gate.settle()
    assert [r.changes for r in gate.executor.held()] == ["2,1"]  # halved to its floor, 1
    assert gate.gate_queue() == ["2,1", "3,1", "4,1"]
    gate.executor.release("unit", 2)
    gate.settle()
    assert sorted(r.changes for r in gate.executor.held()) == ["3,1", "3,1 4,1"]  # grown to 2
    gate.executor.release()
    gate.settle()
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 4
    assert [gate.status(c) for c in changes] == ["NEW", "MERGED", "MERGED", "MERGED"]


def test_recheck_runs_check_again_but_not_while_the_change_is_running(gate: GateHarness) -> None:
    a = gate.change("org/a")
    gate.settle()
    assert [r.changes for r in gate.executor.records()] == ["1,1"]
    assert gate.ci_votes(a) == {"Verified": 1}
    gate.executor.hold = True
    gate.comment(a, "recheck")
    gate.settle()
    gate.comment(a, "recheck")  # already running in check: ignored
    gate.settle()
    assert len(gate.executor.held()) == 1
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [(r.pipeline, r.result) for r in gate.executor.records()] == [("check", "SUCCESS")] * 2
    assert gate_messages(gate, a, "check").count("Starting check jobs.") == 2


def test_check_tests_a_change_with_the_changes_it_needs_riding_along(gate: GateHarness) -> None:
    a = gate.change("org/a")
    b = gate.change("org/a", parent=a)
    gate.settle()
    assert sorted(r.changes for r in gate.executor.records()) == ["1,1", "1,1 2,1"]
    assert len(gate.executor.records()) == 2  # A rode along with B without being tested or reported again
    assert gate_messages(gate, a, "check").count("Starting check jobs.") == 1
    assert gate.ci_votes(a) == gate.ci_votes(b) == {"Verified": 1}


def test_change_approved_while_in_check_moves_to_the_gate(gate: GateHarness) -> None:
    gate.executor.hold = True
    a = gate.change("org/b")
    gate.settle()
    assert [r.pipeline for r in gate.executor.held()] == ["check"]
    gate.approve(a)
    gate.settle()
    assert [r.pipeline for r in gate.executor.held()] == ["gate"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(a) == "MERGED"


def test_promote_moves_a_change_to_the_head_and_operator_errors_are_clear(gate: GateHarness) -> None:
    a, b, c = gate.change("org/b"), gate.change("org/b"), gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate.management("promote", "gate", changes=["9,1"]) == "no change 9,1 in gate"
    assert gate.management("dequeue", "check", change="1,1") == "no change 1,1 in check"
    assert gate.management("promote", "nope", changes=["1,1"]).startswith("no pipeline 'nope'")
    # a change named twice would be two entries of one item in the queue, which then never moves
    with pytest.raises(MalformedRequest, match='field "changes": 3,1 named more than once'):
        gate.management("promote", "gate", changes=["3,1", "2,1", "3,1"])
    assert gate.management("promote", "gate", changes=["3,1"]) == ""
    gate.settle()
    assert gate.gate_queue() == ["3,1", "1,1", "2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "3,1 1,1 2,1"))
    assert gate.merge_order() == [3, 1, 2]


def test_operator_enqueue_and_dequeue(gate: GateHarness) -> None:
    a, b = gate.change("org/b"), gate.change("org/b")
    gate.settle()
    assert gate.management("enqueue", "gate", change="1,1") == \
        "change 1,1 cannot enter gate: it does not have Code-Review: +2"
    gate.executor.hold = True
    gate.sim.review(a, "rita", labels={"Code-Review": 2, "Approved": 1})
    gate.sim.review(b, "rita", labels={"Code-Review": 2, "Approved": 1})
    gate.settle()
    assert gate.management("dequeue", "gate", change="1,1") == ""
    gate.settle()
    assert gate.gate_queue() == ["2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]


def test_node_failure_is_retried_and_reported_only_at_the_retry_limit(gate: GateHarness) -> None:
    a, b = gate.change("org/a"), gate.change("org/a")
    gate.executor.fail("integration", a.number, "NODE_FAILURE")
    gate.executor.fail("integration", b.number, "NODE_FAILURE", "NODE_FAILURE")
    gate.approve(a)
    gate.settle()
    gate.approve(b)
    gate.settle()
    gate.assert_history(("integration", "NODE_FAILURE", "1,1"), ("integration", "SUCCESS", "1,1"),
                        ("integration", "NODE_FAILURE", "2,1"))
    assert gate.status(a) == "MERGED" and gate.status(b) == "NEW"
    assert [r.attempt for r in gate.executor.records("integration")] == [1, 2, 1, 2]
    failure = gate_messages(gate, b)[-1]
    assert re.search(r": RETRY_LIMIT in \d+s\n", failure) and "NODE_FAILURE on 2 attempts" in failure


def test_refused_submit_is_reported_and_resets_the_changes_behind(gate: GateHarness) -> None:
    a = gate.change("org/a", files={"f.txt": "gated\n"})
    b = gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.push_directly("org/a", {"f.txt": "direct\n"})  # someone bypassed the gate: A no longer merges
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(a) == "NEW" and gate.status(b) == "MERGED"
    assert "passed its gate jobs but could not be merged" in gate_messages(gate, a)[-1]
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1"), ("unit", "SUCCESS", "2,1"))


def test_scheduler_killed_mid_gate_resumes_without_reporting_twice(gate: GateHarness) -> None:
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/b")
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.kill_scheduler(gate.schedulers[0])
    gate.executor.release("unit", a.number)
    gate.executor.release("unit", c.number, "FAILURE")  # results wait in ZooKeeper for the next scheduler
    gate.start_scheduler()
    gate.settle()
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "MERGED", "NEW"]
    for change, verdict in ((a, "Build succeeded"), (b, "Build succeeded"), (c, "Build failed")):
        messages = gate_messages(gate, change)
        assert messages.count("Starting gate jobs.") == 1
        assert sum(m.startswith(verdict) for m in messages) == 1, messages


def test_two_schedulers_share_one_gate_and_one_carries_on_when_the_other_dies(gate: GateHarness) -> None:
    gate.start_scheduler()
    changes = [gate.change("org/b") for _ in range(5)]
    gate.executor.fail("unit", 2, "FAILURE")
    gate.executor.hold = True
    gate.approve(*changes)
    # The gate is processed under its lock by one scheduler at a time: while it works, exactly one holds it.
    holders = wait_for(lambda: [s for s in gate.schedulers if "gate" in s._held], 30,
                       "a scheduler to take the gate's lock")
    assert len(holders) == 1
    busy = holders[0]
    gate.settle()
    gate.kill_scheduler(busy)
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(c) for c in changes] == ["MERGED", "NEW", "MERGED", "MERGED", "MERGED"]
    assert gate.schedulers[0].stats.passes > 0
    for c in changes:
        messages = gate_messages(gate, c)
        assert messages.count("Starting gate jobs.") == 1
        assert sum(m.startswith("Build ") for m in messages) == 1, messages


def test_layout_reload_refuses_a_bad_layout_and_applies_a_good_one(gate: GateHarness) -> None:
    gate.layout_path.write_text(gate.layout_text.replace("manager: dependent", "manager: serial-ish"))
    error = gate.management("reload", None)
    assert "layout.yaml:16: pipelines[1] (gate).manager: unknown manager" in error, error
    good = gate.layout_text.replace("jobs:\n", "jobs:\n  - name: lint\n").replace(
        "  - name: org/b\n    queue: integrated\n    pipelines: {check: [unit], gate: [unit]}",
        "  - name: org/b\n    queue: integrated\n    pipelines: {check: [unit], gate: [unit, lint]}")
    gate.layout_path.write_text(good)
    assert gate.management("reload", None) == ""
    a = gate.change("org/b")
    gate.approve(a)
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("lint", "SUCCESS", "1,1"))
    assert gate.status(a) == "MERGED"
    assert gate.schedulers[0].load_state("gate").queues["integrated"].window == 21  # grown by the merge
    assert gate.management("reload", None) == ""
    assert gate.schedulers[0].load_state("gate").queues["integrated"].window == 21  # kept across the reload


def test_a_depends_on_cycle_is_refused_with_a_clear_message(gate: GateHarness) -> None:
    a = gate.change("org/a", "Needs B", depends_on=(f"{gate.sim.web_url}/c/org/b/+/2",))
    b = gate.change("org/b", "Needs A", depends_on=(a,))
    gate.approve(a, b)
    gate.settle()
    # as Zuul's addChange: its warning through the failure reporters (their vote), in check as in the gate
    assert gate_messages(gate, a)[-1] == ("Build failed (gate pipeline).\n\nWarning:\n  Dependency cycle detected "
                                          "and project org/a doesn't allow circular dependencies\n\nChange 1,1 "
                                          "cannot enter gate: dependency cycle 1,1 -> 2,1 -> 1,1")
    assert gate.gate_queue() == [] and gate.history() == []  # check refused it too
    assert gate.ci_messages(b)[0].endswith("Build failed (check pipeline).\n\nWarning:\n  Dependency cycle detected "
                                           "and project org/b doesn't allow circular dependencies\n\nChange 2,1 "
                                           "cannot enter check: dependency cycle 2,1 -> 1,1 -> 2,1")
    assert gate.ci_votes(a) == gate.ci_votes(b) == {"Verified": -2}
