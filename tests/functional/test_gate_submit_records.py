"""Gerrit's submit records decide whether a change may enter the gate, as Zuul's dependent manager decides it
(gerritconnection.canMerge: the labels a NOT_READY record gives as NEED or REJECT must all be labels the gate's
success reporter votes on), over the real wires (the Gerrit simulator over SSH, ZooKeeper, the merger on git).
The check pipeline (independent) is not concerned."""

from __future__ import annotations

from tests.functional.gate_harness import GateHarness


def needs_legal(gate: GateHarness, project: str) -> None:
    """`project`'s submit rule also needs Legal +1, a label no reporter of the layout votes on."""
    gerrit_project = gate.sim.project(project)
    gerrit_project.labels["Legal"], gerrit_project.submit_rule["Legal"] = (0, 1), 1


def test_a_change_lacking_only_the_gates_own_verified_vote_enters_and_merges(gate: GateHarness) -> None:
    """Gerrit says NOT_READY, Verified NEED: the gate's success report votes Verified +2, so the change enters."""
    a = gate.change("org/b")
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED"
    gate.assert_history(("unit", "SUCCESS", "1,1"))


def test_a_change_the_gate_failed_enters_again_though_its_verified_minus_2_is_a_veto(gate: GateHarness) -> None:
    """The gate's failure votes Verified -2, which Gerrit's submit record gives as REJECT; Verified is the gate's
    own label, so (as in Zuul: "it may be our own rejection") the change enters again when approved again."""
    a = gate.change("org/b")
    gate.settle()
    gate.executor.fail("unit", a.number)  # its next unit build fails, the one after succeeds
    gate.approve(a)
    gate.settle()
    assert gate.ci_votes(a) == {"Verified": -2} and gate.status(a) == "NEW"
    gate.sim.review(a, "rita", message="Approved again.", labels={"Approved": 1})
    gate.settle()
    assert gate.status(a) == "MERGED"


def test_a_change_with_a_code_review_veto_never_enters_the_gate_though_approved(gate: GateHarness) -> None:
    """Jane's Code-Review -2 is a REJECT in the submit record; rita's +2 and Approved +1 meet the gate's requirements,
    but no gate report can lift the veto: the change is not enqueued, not tested, and nothing is reported on it."""
    a, b = gate.change("org/b"), gate.change("org/b")
    gate.settle()
    gate.sim.review(a, "jane", labels={"Code-Review": -2})
    gate.approve(a, b)
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    assert gate.reports(a) == [] and ("unit", "SUCCESS", "1,1") not in gate.history("gate")


def test_the_check_pipeline_tests_a_change_gerrit_could_not_submit_and_keeps_it_when_it_is_approved(
        gate: GateHarness) -> None:
    """The gate supercedes check, but a change the gate does not take stays in check (Zuul leaves the superseded
    pipelines only once the change entered the superseding one)."""
    needs_legal(gate, "org/b")
    gate.executor.hold = True
    a = gate.change("org/b")
    gate.settle()
    assert gate.gate_queue("check") == ["1,1"]
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue("check") == ["1,1"] and gate.gate_queue() == []
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")] and gate.ci_votes(a) == {"Verified": 1}


def test_operator_enqueue_says_which_label_gerrit_lacks(gate: GateHarness) -> None:
    """Zuul's enqueue skips the pipeline's requirements but not canMerge; gatekeeper's says what is missing."""
    needs_legal(gate, "org/s")
    a, b = gate.change("org/s"), gate.change("org/b")
    gate.settle()
    gate.approve(a)
    gate.sim.review(b, "jane", labels={"Code-Review": -2})
    gate.sim.review(b, "rita", labels={"Code-Review": 2, "Approved": 1})  # b meets the gate's requirements
    gate.settle()
    assert gate.management("enqueue", "gate", change="1,1") == \
        "change 1,1 cannot enter gate: Gerrit would not submit it: it needs Legal"
    assert gate.management("enqueue", "gate", change="2,1") == \
        "change 2,1 cannot enter gate: Gerrit would not submit it: Code-Review has a blocking vote"
    # Legal +1's comment-added carries a's Approved +1 too: the gate's trigger enqueues it now, as Zuul's would
    gate.sim.review(a, "rita", labels={"Legal": 1})
    gate.settle()
    assert gate.status(a) == "MERGED"


def test_a_change_needing_one_gerrit_could_not_submit_is_told_and_follows_it_once_it_can(gate: GateHarness) -> None:
    """B needs A (its git parent); A lacks Legal. A stays out silently (Zuul's canMerge), B is told why it cannot
    enter (gatekeeper's sentence, no vote: Zuul's getMissingNeededChanges aborts without a report). Once A has
    Legal +1, it enters and B follows it."""
    needs_legal(gate, "org/s")
    a = gate.change("org/s")
    b = gate.change("org/s", parent=a)
    gate.settle()
    gate.sim.review(b, "rita", labels={"Legal": 1})
    gate.approve(a, b)
    gate.settle()
    assert gate.gate_queue() == [] and gate.reports(a) == []
    assert gate.reports(b) == ["Change 2,1 cannot enter gate: it depends on change 1,1, which cannot enter gate: "
                               "Gerrit would not submit it: it needs Legal"]
    assert gate.ci_votes(b) == {}
    gate.sim.review(a, "rita", labels={"Legal": 1})  # its comment-added carries Approved +1: a enters
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))
