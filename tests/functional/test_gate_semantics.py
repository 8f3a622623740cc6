"""Gate semantics as Zuul's users expect them, over the real wires: causes kept through any depth of dependency,
dequeue reports per reason, approved dependents that follow what they need, infrastructure failures that are
never the change's fault."""

from __future__ import annotations

import re
from collections.abc import Callable

from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.merges import MergeRequest, MergeResult
from tests.functional.gate_harness import LAYOUT, PROJECTS, GateHarness

REMOVED = "This change was removed from the gate queue.\n\n"
NEEDING = "This change depends on a change that failed to merge.\n\n"


def test_every_dependent_is_told_the_root_cause_through_any_depth(gate: GateHarness) -> None:
    """A, B (needs A), C (needs B), D (needs C) and E approved; A's unit test fails: B, C and D leave the gate,
    each told that 1,1 failed and how; E merges without them."""
    a = gate.change("org/a")
    b = gate.change("org/a", parent=a)
    c = gate.change("org/a", parent=b)
    d = gate.change("org/b", depends_on=(c,))
    e = gate.change("org/b")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c, d, e)
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1", "3,1", "4,1", "5,1"]
    gate.executor.release("unit", a.number, "FAILURE")
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1", "3,1", "4,1", "5,1"]  # B, C, D wait for A's report (as Zuul's)
    gate.executor.release(change=a.number)
    gate.settle()
    cause = "which failed (unit: FAILURE)."
    assert gate.reports(b)[1].startswith(NEEDING + f"It depends on change 1,1, {cause}")
    assert gate.reports(c)[1].startswith(NEEDING + f"It depends on change 2,1, which depends on change 1,1, {cause}")
    assert gate.reports(d)[1].startswith(NEEDING + "It depends on change 3,1, which depends on change 2,1, which "
                                         f"depends on change 1,1, {cause}")
    assert all(len(gate.reports(x)) == 2 and gate.ci_votes(x) == {"Verified": -2} for x in (b, c, d))
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c, d, e)] == ["NEW", "NEW", "NEW", "NEW", "MERGED"]
    gate.assert_history(("unit", "FAILURE", "1,1"), ("unit", "SUCCESS", "5,1"))
    assert gate.reports(a)[-1].startswith("Build failed (gate pipeline).")


def test_dependents_of_a_merge_conflict_are_told_it_was_a_conflict(gate: GateHarness) -> None:
    """X and A change README differently; B needs A. X, A, B approved: A conflicts with X; B leaves saying so."""
    x = gate.change("org/a", files={"README": "from x\n"})
    a = gate.change("org/a", files={"README": "from a\n"})
    b = gate.change("org/a", parent=a, files={"b.txt": "b\n"})
    gate.settle()
    gate.executor.hold = True
    gate.approve(x, a, b)
    gate.settle()
    assert gate.reports(b) == []  # it waits for A's report: X may yet fail, and A merge
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.reports(b) == [NEEDING + "It depends on change 2,1, which could not be merged onto the changes ahead "
                               "of it."]
    assert gate.ci_votes(b) == {"Verified": -2}
    assert [gate.status(c) for c in (x, a, b)] == ["MERGED", "NEW", "NEW"]
    assert len(gate.reports(a)) == 1 and gate.reports(a)[0].startswith("This change could not be merged")


def test_dequeue_reports_by_default_explain_all_but_an_abandon(gate: GateHarness) -> None:
    """Abandoned: silent. Lost approval (with the failure vote, as Zuul), new patch set, operator dequeue: each
    explained once."""
    a, b, c, d, e = (gate.change("org/b") for _ in range(5))
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c, d, e)
    gate.settle()
    gate.sim.abandon(a, "jane", "not needed")
    gate.sim.delete_vote(b, "rita", "Approved")
    gate.sim.create_patchset(c, files={"more.txt": "v2\n"})
    gate.settle()
    assert gate.management("dequeue", "gate", change="4,1") == ""
    gate.settle()
    assert gate.gate_queue() == ["5,1"]
    assert gate.reports(a) == ["Starting gate jobs."]
    assert gate.reports(b)[1].startswith("This change is unable to merge due to a missing merge requirement.\n\n"
                                         "It does not have Approved: +1.")
    assert gate.reports(c)[1:] == [REMOVED + "Removed because a new patch set (3,2) was uploaded."]
    assert gate.reports(d)[1:] == [REMOVED + "Removed because an operator dequeued it."]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(e) == "MERGED"


def test_dequeue_reports_per_reason_follow_the_layout(tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    layout = LAYOUT.replace(
        "dequeue: {gerrit: {message: This change was removed from the gate queue.}}",
        "dequeue:\n      gerrit: {message: This change was removed from the gate queue.}\n"
        "      reasons: {abandoned: true, lost-approval: false}")
    assert layout != LAYOUT
    gate = GateHarness(tmp_path, zk_factory, layout)
    try:
        a, b, c = (gate.change("org/b") for _ in range(3))
        gate.settle()
        gate.executor.hold = True
        gate.approve(a, b, c)
        gate.settle()
        gate.sim.abandon(a, "jane", "not needed")
        gate.sim.delete_vote(b, "rita", "Approved")
        gate.settle()
        assert gate.gate_queue() == ["3,1"]
        assert gate.reports(a)[1:] == [REMOVED + "Removed because it was abandoned."]
        assert gate.reports(b) == ["Starting gate jobs."]
    finally:
        gate.stop()


def test_an_infrastructure_failure_is_never_a_negative_vote_and_keeps_the_window(gate: GateHarness) -> None:
    """S1..S4 in the small queue (window 2). S1's unit build is lost to the infrastructure: S1 gets no vote and
    leaves without merging, told it was not its fault; S2.. restart without it; the window does not shrink."""
    changes = [gate.change("org/s") for _ in range(4)]
    gate.settle()
    gate.executor.diagnose("unit", 1, "infrastructure", "node-1 stopped answering SSH during 'run tests'",
                           ({"id": "LP#1", "title": "nodes lost under load", "url": "https://bugs.example.com/1"},))
    gate.executor.hold = True
    gate.approve(*changes)
    gate.settle()
    assert sorted(r.changes for r in gate.executor.held()) == ["1,1", "1,1 2,1"]  # window 2
    gate.executor.release("unit", 1, "FAILURE")
    gate.settle()
    assert sorted(r.changes for r in gate.executor.held()) == ["2,1", "2,1 3,1"]  # still 2 wide
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(c) for c in changes] == ["NEW", "MERGED", "MERGED", "MERGED"]
    assert gate.ci_votes(changes[0]) == {}  # no vote at all
    report = gate.reports(changes[0])[-1]
    assert report.startswith("Build could not be completed because of an infrastructure failure (gate pipeline). "
                             "This is not the change's fault, and no vote is given: a recheck will retry it.")
    assert re.search(r": FAILURE in \d+s\n  FAILURE \(test\)\n  An infrastructure failure, not this change's fault\.\n"
                     r"  node-1 stopped answering SSH during 'run tests'\n"
                     r"  Known bug: LP#1 nodes lost under load https://bugs\.example\.com/1$", report), report
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 5  # grown by each of 3 merges


def test_retries_exhausted_on_node_failures_are_the_infrastructures_not_the_changes(gate: GateHarness) -> None:
    a = gate.change("org/a")
    gate.settle()
    gate.executor.fail("integration", a.number, "NODE_FAILURE", "NODE_FAILURE")
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "NEW" and gate.ci_votes(a) == {}  # no vote at all
    assert [r.attempt for r in gate.executor.records("integration") if r.pipeline == "gate"] == [1, 2]
    report = gate.reports(a)[-1]
    assert report.startswith("Build could not be completed because of an infrastructure failure")
    assert re.search(r": RETRY_LIMIT in \d+s\n", report) and "NODE_FAILURE on 2 attempts" in report


def test_a_merger_that_keeps_failing_is_never_a_negative_vote(gate: GateHarness, monkeypatch) -> None:
    """The merger cannot fetch A from Gerrit (an error, not a conflict). A is asked again, given up after three
    errors in check and in the gate alike, and reported once in each without a vote, told it was not its fault;
    B, approved behind it, restarts on the branch and merges; the window does not shrink."""
    merge = gate.merger.merger.merge
    fetches: list[str] = []

    def fetch_fails_for_a(request: MergeRequest) -> MergeResult:
        if any(spec["number"] == 1 for spec in request.changes):
            fetches.append(request.pipeline)
            raise OSError("fatal: the remote end hung up unexpectedly (git fetch refs/changes/01/1/1)")
        return merge(request)

    monkeypatch.setattr(gate.merger.merger, "merge", fetch_fails_for_a)
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    gate.settle()
    gate.approve(a, b)
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    assert fetches == ["check"] * 3 + ["gate"] * 3
    assert gate.ci_votes(a) == {}  # no vote at all, in check or in the gate
    for pipeline in ("check", "gate"):
        [report] = gate.reports(a, pipeline)  # once, and no start: its merge never succeeded
        assert report.startswith(f"The change could not be merged for testing because the merger failed ({pipeline} "
                                 "pipeline). This is not the change's fault, and no vote is given: a recheck will "
                                 "retry it.\n\nThe merger failed 3 times: merger error: OSError: fatal: the remote "
                                 "end hung up"), report
    assert gate.history("check") == gate.history("gate") == [("unit", "SUCCESS", "2,1")]  # B alone, both times
    assert gate.schedulers[0].load_state("gate").queues["integrated"].window == 21  # grown by B, not shrunk by A


def test_a_change_failure_shows_its_summary_and_known_bugs_under_the_job(gate: GateHarness) -> None:
    a = gate.change("org/b")
    gate.settle()
    gate.executor.fail("unit", a.number, "FAILURE")
    gate.executor.diagnose("unit", a.number, "change", "step 'run tests' failed:\nAssertionError: 1 != 2",
                           ({"id": "BUG-7", "title": "flaky clock test"},))
    gate.approve(a)
    gate.settle()
    assert gate.ci_votes(a) == {"Verified": -2}
    report = gate.reports(a)[-1]
    assert report.startswith("Build failed (gate pipeline).\n\n- unit https://logs.example.com/")
    assert re.search(r": FAILURE in \d+s\n  FAILURE \(test\)\n  step 'run tests' failed:\n"
                     r"  AssertionError: 1 != 2\n  Known bug: BUG-7 flaky clock test$", report), report


def stack(gate: GateHarness, depth: int, project: str = "org/a", below=None) -> list:
    """A stack of changes, each the git child of the one before (the first on `below`, or the branch)."""
    changes = []
    for _ in range(depth):
        changes.append(gate.change(project, parent=changes[-1] if changes else below))
    return changes


def test_a_stack_approved_top_first_gates_when_its_bottom_is_approved(gate: GateHarness) -> None:
    """C needs B needs A. C, then B are approved: each is refused for now; A is approved: A, B and C enter in
    that order in the same pass, are tested together and merge."""
    a, b, c = stack(gate, 3)
    gate.settle()
    gate.executor.hold = True
    gate.approve(c)
    gate.settle()
    gate.approve(b)
    gate.settle()
    assert gate.gate_queue() == []
    assert gate.reports(c) == ["Change 3,1 cannot enter gate: it depends on change 2,1, which cannot enter gate: "
                               "it does not have Code-Review: +2"]
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1", "3,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"),
                        ("unit", "SUCCESS", "1,1 2,1 3,1"))
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3
    assert gate.merge_order() == [1, 2, 3]
    for change in (a, b, c):
        assert gate.reports(change).count("Starting gate jobs.") == 1
        assert sum(m.startswith("Build succeeded") for m in gate.reports(change)) == 1


def test_a_stack_approved_bottom_first_gates(gate: GateHarness) -> None:
    a, b, c = stack(gate, 3)
    gate.settle()
    gate.approve(a, b, c)
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1 3,1"))
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3
    assert gate.merge_order() == [1, 2, 3]


def test_a_stack_approved_apart_gates_whatever_the_timing(gate: GateHarness) -> None:
    """A; then D (needs C needs B needs A), C and B, top first, while A is in the gate; then E needing D across
    projects with Depends-On. Every one enters behind what it needs, and all merge in dependency order."""
    a = gate.change("org/a")
    b, c, d = stack(gate, 3, below=a)
    e = gate.change("org/b", depends_on=(d,))
    gate.settle()
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    gate.approve(e)  # refused for now: D is not approved
    gate.settle()
    gate.approve(d, c)  # refused for now: B is not approved
    gate.settle()
    assert gate.gate_queue() == ["1,1"]
    gate.approve(b)  # B enters behind A, and C, D and E follow it
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1", "3,1", "4,1", "5,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c, d, e)] == ["MERGED"] * 5
    assert gate.merge_order() == [1, 2, 3, 4, 5]
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1 3,1 4,1 5,1"))


def test_independent_queues_are_named_for_people_by_the_change_they_test(gate: GateHarness) -> None:
    gate.executor.hold = True
    a = gate.change("org/a")
    gate.change("org/a", parent=a)
    gate.settle()
    state = gate.schedulers[0].load_state("check")
    assert sorted(state.queues) == ["org/a 1,1", "org/a 2,1"]
    assert [i.key for i in state.queue_items(state.queues["org/a 2,1"])] == ["1,1", "2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.comment(a, "recheck")  # its queue went away with it; a recheck makes it again
    gate.settle()
    assert gate.schedulers[0].load_state("check").queues == {}
    assert gate.reports(a, "check").count("Starting check jobs.") == 2


def test_a_vote_that_changes_nothing_the_gate_looks_at_costs_no_walk_over_the_queue(gate: GateHarness) -> None:
    """A, B, C in the gate; Jane's Code-Review +1 on B is saved with B's item without walking the queue; Rita
    removing B's approval walks it and dequeues B."""
    changes = [gate.change("org/b") for _ in range(3)]
    gate.settle()
    gate.executor.hold = True
    gate.approve(*changes)
    gate.settle()
    scheduler = gate.schedulers[0]
    walks = scheduler.states["gate"].walks
    gate.sim.review(changes[1], "jane", labels={"Code-Review": 1})
    gate.settle()
    stored = gate.schedulers[0].load_state("gate").items
    item = next(i for i in stored.values() if i.key == "2,1")
    assert {"label": "Code-Review", "value": 1, "by": "jane"} in item.change.approvals  # saved
    assert scheduler.states["gate"].walks == walks  # not walked
    gate.sim.delete_vote(changes[1], "rita", "Approved")
    gate.settle()
    assert scheduler.states["gate"].walks > walks
    assert gate.gate_queue() == ["1,1", "3,1"]


def test_a_change_needing_one_in_the_gate_and_one_that_failed_out_of_it_brings_that_one_back_ahead(
        gate: GateHarness) -> None:
    """A fails at the head and leaves the gate; Q, behind it, restarts without it. C, which Depends-On Q and then A,
    is approved: A (still approved) enters again, behind Q and ahead of C, and all three merge."""
    a = gate.change("org/b", "A")
    q = gate.change("org/a", "Q")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, q)
    gate.settle()
    gate.executor.release("unit", a.number, "FAILURE")
    gate.settle()
    assert gate.gate_queue() == ["2,1"]
    c = gate.change("org/b", "C", depends_on=(q, a))
    gate.settle()
    gate.approve(c)
    gate.settle()
    assert gate.gate_queue() == ["2,1", "1,1", "3,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, q, c)] == ["MERGED"] * 3
    gate.assert_history(("unit", "FAILURE", "1,1"), ("unit", "SUCCESS", "2,1 1,1"), ("unit", "SUCCESS", "2,1 1,1 3,1"))


def test_a_dependency_in_a_project_outside_the_layout_is_tested_in_check_and_keeps_the_change_out_of_the_gate(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """org/x has no definition in the layout. A (org/a) Depends-On X (org/x): check tests A on X, merged the default
    way; the gate cannot take X, so A is refused until X merged."""
    gate = GateHarness(tmp_path, zk_factory, projects=(*PROJECTS, "org/x"))
    try:
        x = gate.change("org/x", "X", files={"x.txt": "x\n"})
        a = gate.change("org/a", "A needs X", depends_on=(x,))
        gate.settle()
        gate.assert_history(("unit", "SUCCESS", "1,1 2,1"))
        assert gate.ci_votes(a) == {"Verified": 1}
        assert gate.reports(x, "check") == []
        gate.approve(x, a)
        gate.settle()
        assert gate.gate_queue() == []
        assert gate.reports(a)[-1] == ("Build failed (gate pipeline).\n\nWarning:\n  Change 1 in project org/x does "
                                       "not share a change queue with 2 in project org/a\n\nChange 2,1 cannot enter "
                                       "gate: it "
                                       'depends on change 1,1 in org/x, which is not in the same change queue ("none", '
                                       'not "integrated")')
    finally:
        gate.stop()


def test_a_failing_non_voting_job_neither_fails_the_change_nor_resets_those_behind(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """org/b runs unit and a non-voting lint in the gate. A's lint fails: A still merges with Verified +2, and B,
    tested on A, is not tested again."""
    layout = LAYOUT.replace("  - name: integration\n", "  - name: lint\n    voting: false\n  - name: integration\n",
                            1).replace("queue: integrated\n    pipelines: {check: [unit], gate: [unit]}",
                                       "queue: integrated\n    pipelines: {check: [unit], gate: [unit, lint]}", 1)
    assert layout.count("lint") == 2
    gate = GateHarness(tmp_path, zk_factory, layout)
    try:
        a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
        gate.settle()
        gate.executor.fail("lint", a.number)
        gate.approve(a, b)
        gate.settle()
        assert [gate.status(c) for c in (a, b)] == ["MERGED", "MERGED"]
        assert gate.ci_votes(a) == {"Verified": 2}
        gate.assert_history(("lint", "FAILURE", "1,1"), ("unit", "SUCCESS", "1,1"), ("lint", "SUCCESS", "1,1 2,1"))
        assert [r.changes for r in gate.executor.history if r.pipeline == "gate" and r.change == b.number] == \
            ["1,1 2,1", "1,1 2,1"]
    finally:
        gate.stop()


def test_check_tests_a_change_on_everything_it_needs_when_two_of_its_needs_share_a_dependency(
        gate: GateHarness) -> None:
    """C Depends-On B, A and X, and B is A's child: check tests C on A, B and X, each once, in that order."""
    a = gate.change("org/a", "A")
    b = gate.change("org/a", "B", parent=a)
    x = gate.change("org/b", "X")
    c = gate.change("org/b", "C", depends_on=(b, a, x))
    gate.settle()
    assert [r.changes for r in gate.executor.history if r.pipeline == "check" and r.change == c.number] == \
        ["1,1 2,1 3,1 4,1"]


def test_a_depends_on_naming_no_change_keeps_the_change_out_saying_which(gate: GateHarness) -> None:
    """Check, on the upload, and the gate, on the approval, each tell why the change cannot enter."""
    unknown = "I" + "9" * 40
    a = gate.change("org/b", "Needs a change nobody uploaded", depends_on=(unknown,))
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == [] and gate.status(a) == "NEW"
    assert gate.reports(a) == [f"Change 1,1 cannot enter {pipeline}: its Depends-On {unknown} names no change Gerrit "
                               "knows" for pipeline in ("check", "gate")]


def test_an_operator_enqueues_a_change_into_check_again_and_it_is_tested_again(gate: GateHarness) -> None:
    a = gate.change("org/a")
    gate.settle()
    assert gate.management("enqueue", "check", change="1,1") == ""
    gate.settle()
    assert [r.changes for r in gate.executor.history if r.pipeline == "check"] == ["1,1", "1,1"]
    assert gate.reports(a, "check").count("Starting check jobs.") == 2
