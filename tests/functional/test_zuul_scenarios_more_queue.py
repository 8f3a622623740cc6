"""Zuul's documented gate behaviour, second round, over real wires: an operator's dequeue, enqueue and promote in the
gate, a Depends-On across shared queues, two changes needing one, and an approval while check still runs. Each
docstring names the Zuul page, test or source the expectation comes from."""

from __future__ import annotations

from tests.functional.gate_harness import GateHarness


def held_changes(gate: GateHarness, pipeline: str = "gate") -> list[str]:
    return sorted(r.changes for r in gate.executor.held() if r.pipeline == pipeline)


def test_an_operator_dequeue_in_the_middle_restarts_those_behind_and_gives_no_vote(gate: GateHarness) -> None:
    """Zuul's client doc (`zuul-client dequeue`) and pipeline doc (dequeue reporters: "an item is removed from the
    pipeline ... by an operator"): A, B, C approved; B dequeued; C restarts on A alone; B is told through the dequeue
    reporter, which votes nothing here; A and C merge."""
    a, b, c = (gate.change("org/b", name) for name in ("A", "B", "C"))
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert held_changes(gate) == ["1,1", "1,1 2,1", "1,1 2,1 3,1"]
    assert gate.management("dequeue", "gate", change="2,1") == ""
    gate.settle()
    assert gate.gate_queue() == ["1,1", "3,1"]
    assert held_changes(gate) == ["1,1", "1,1 3,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "NEW", "MERGED"]
    assert gate.merge_order() == [1, 3]
    assert gate.reports(b)[-1] == "This change was removed from the gate queue.\n\nRemoved because an operator " \
                                  "dequeued it."
    assert gate.ci_votes(b).get("Verified", 0) == 0
    assert not any(changes.endswith("2,1") for _, _, changes in gate.history("gate"))


def test_an_operator_dequeue_of_the_head_moves_the_next_change_onto_the_branch(gate: GateHarness) -> None:
    """Zuul's manager removes a dequeued item and cancels its builds (removeItem -> cancelJobs); the item behind,
    built on it, is reset onto the branch (nearest non-failing item: none ahead)."""
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert gate.management("dequeue", "gate", change="1,1") == ""
    gate.settle()
    assert held_changes(gate) == ["2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]


def test_an_operator_enqueue_of_an_unapproved_change_into_the_gate_is_refused_naming_the_requirement(
        gate: GateHarness) -> None:
    """Zuul's `zuul-client enqueue` skips the pipeline's requirements (addChange ignore_requirements); gatekeeper
    checks them and says which one the change misses (docs/zuul-compatibility.md, a difference kept on purpose)."""
    gate.change("org/b", "A")
    gate.settle()
    error = gate.management("enqueue", "gate", change="1,1")
    assert error.startswith("change 1,1 cannot enter gate: ") and "Code-Review" in error, error
    gate.settle()
    assert gate.gate_queue() == [] and gate.history("gate") == []


def test_promote_moves_a_change_to_the_head_and_restarts_the_others_behind_it(gate: GateHarness) -> None:
    """Zuul's client doc (`zuul-client promote`: "the changes will be moved to the head of the queue ... all
    builds for changes in the queue are restarted") and test_promote: A, B, C approved; C promoted; C runs alone at
    the head, A on C and B on C A; they merge C, A, B."""
    a, b, c = (gate.change("org/b", name) for name in ("A", "B", "C"))
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate.management("promote", "gate", changes=["3,1"]) == ""
    gate.settle()
    assert gate.gate_queue() == ["3,1", "1,1", "2,1"]
    assert held_changes(gate) == ["3,1", "3,1 1,1", "3,1 1,1 2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.merge_order() == [3, 1, 2]
    gate.assert_history(("unit", "SUCCESS", "3,1"), ("unit", "SUCCESS", "3,1 1,1"),
                        ("unit", "SUCCESS", "3,1 1,1 2,1"))


def test_a_depends_on_to_another_shared_queue_is_reported_through_the_failure_reporters(gate: GateHarness) -> None:
    """Zuul's dependent manager (checkForChangesNeededBy: "Change 1 in project org/c does not share a change queue
    with 2 in project org/a", then addChange -> _reportNonEnqueuedItem with the failure actions); Zuul's gating doc:
    "the first will be required to merge before the second is enqueued". B (org/a) Depends-On A (org/c)."""
    a = gate.change("org/c", "A")
    b = gate.change("org/a", "B", depends_on=(a,))
    gate.settle()
    gate.approve(b)
    gate.settle()
    assert gate.gate_queue() == [] and gate.status(b) == "NEW"
    assert gate.reports(b)[-1].startswith("Build failed (gate pipeline).\n\nWarning:\n  Change 1 in project org/c "
                                          "does not share a change queue with 2 in project org/a\n\nChange 2,1 "
                                          "cannot enter gate: it depends on change 1,1 in org/c, which is not in the "
                                          "same change queue"), gate.reports(b)[-1]
    assert gate.ci_votes(b) == {"Verified": -2}


def test_a_depends_on_to_another_shared_queue_is_refused_until_the_needed_change_merged(gate: GateHarness) -> None:
    """Zuul's gating doc ("If changes with CRD do not share a change queue then Zuul is unable to enqueue them
    together, and the first will be required to merge before the second is enqueued"): B (org/a) Depends-On A
    (org/c); B approved is refused, saying so; once A merged in its own queue, B approved anew merges."""
    a = gate.change("org/c", "A")
    b = gate.change("org/a", "B", depends_on=(a,))
    gate.settle()
    gate.approve(b)
    gate.settle()
    assert gate.gate_queue() == [] and gate.status(b) == "NEW"
    refusal = gate.reports(b)[-1]
    assert "\n\nChange 2,1 cannot enter gate: it depends on change 1,1 in org/c, which is not in the same change " \
        "queue" in refusal, refusal
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED" and gate.status(b) == "NEW"
    gate.sim.review(b, "rita", labels={"Approved": 0})  # a trigger takes a vote that changed, as Gerrit sends it
    gate.approve(b)
    gate.settle()
    assert gate.status(b) == "MERGED"


def test_two_changes_needing_one_wait_behind_it_and_leave_with_it_when_it_fails(gate: GateHarness) -> None:
    """Zuul's gating doc (cross-project dependencies: "If tests for B fail, both B and A will be removed from the
    pipeline") and test_crd_gate: B and C (org/a) Depends-On A (org/b); approved before A, they wait; A approved
    enters first, B and C behind it; A fails; B and C leave without being tested on their own, nothing merges."""
    a = gate.change("org/b", "A")
    b = gate.change("org/a", "B", depends_on=(a,))
    c = gate.change("org/a", "C", depends_on=(a,))
    gate.settle()
    gate.approve(b, c)
    gate.settle()
    assert gate.gate_queue() == []
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1", "3,1"]
    assert gate.executor.release("unit", a.number, "FAILURE") == 1
    gate.settle()
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["NEW", "NEW", "NEW"]
    assert gate.gate_queue() == []
    assert gate.ci_votes(a) == {"Verified": -2}
    assert not [h for h in gate.history("gate") if h[2] in ("2,1", "3,1", "1,1 3,1")]  # never tested without A
    for dependent in (b, c):
        assert "1,1" in gate.reports(dependent)[-1]


def test_a_change_approved_while_its_check_runs_enters_the_gate_and_its_check_stops(gate: GateHarness) -> None:
    """Zuul's gate pipeline requires only the approvals its `require` names (no Verified here), and `supercedes`
    (pipeline doc) removes the change from check when it enters the gate: A's check build is still running when A
    is approved; A is gated at once, its check build is cancelled, and A merges without a check vote."""
    gate.executor.hold = True
    a = gate.change("org/b", "A")
    gate.settle()
    assert held_changes(gate, "check") == ["1,1"]
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == ["1,1"] and gate.gate_queue("check") == []
    assert held_changes(gate, "check") == [] and held_changes(gate) == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(a) == "MERGED" and gate.ci_votes(a) == {"Verified": 2}
    assert gate.history("check") == []
    assert not [r for r in gate.reports(a, "check") if "(check pipeline)" in r]
