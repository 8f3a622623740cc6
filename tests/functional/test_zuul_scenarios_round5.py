"""Zuul's documented behaviour, fifth round: a change merged by a person while it is in the gate, post-review jobs,
and pipeline requirements in check and gate. Each docstring names the Zuul source or doc the expectation comes
from."""

from __future__ import annotations

import pytest

from gatekeeper.sim.gerrit import Change
from tests.functional.gate_harness import GateHarness


def held_changes(gate: GateHarness) -> list[str]:
    return sorted(r.changes for r in gate.executor.held())


def submitted_by_a_person(gate: GateHarness, change: Change) -> None:
    """Rita, a core, overrides the CI's vote and submits the change herself in Gerrit."""
    gate.sim.review(change, "rita", labels={"Verified": 2})
    gate.sim.submit(change, "rita")


def test_the_changes_behind_a_change_a_person_submits_in_the_gate_keep_their_builds_and_merge(
        gate: GateHarness) -> None:
    """Zuul's manager (_processOneItem): an item whose item ahead merged is not reset (item_ahead_merged), and a
    change-merged event dequeues nothing (scheduler: only patchset-created and change-abandoned do). A, B approved;
    Rita submits A in Gerrit; B's build on 1,1 2,1 is not restarted, and B merges; A gets no failure vote."""
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert held_changes(gate) == ["1,1", "1,1 2,1"]
    submitted_by_a_person(gate, a)
    gate.settle()
    assert "1,1 2,1" in held_changes(gate)  # B's build goes on
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
    assert gate.history("gate")[-1] == ("unit", "SUCCESS", "1,1 2,1")
    assert ("unit", "SUCCESS", "2,1") not in gate.history("gate")
    assert gate.ci_votes(a) == {} and gate.ci_votes(b) == {"Verified": 2}
    assert not any(r.startswith("Build failed") for r in gate.reports(a))


@pytest.mark.xfail(strict=True, reason="gatekeeper removes a gated change merged by a person at once, told through "
                                       "the dequeue reporter; Zuul keeps the item until its jobs end and reports it "
                                       "through the success reporters")
def test_a_change_a_person_submits_in_the_gate_finishes_its_jobs_and_is_reported_a_success(
        gate: GateHarness) -> None:
    """Zuul's manager: the item stays (isChangeReadyToBeEnqueued asks canMerge, which a merged change's CLOSED
    submit record passes), its jobs run to the end, and reportItem reports it with the success actions and counts
    it merged (source.isMerged)."""
    a = gate.change("org/b", "A")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    submitted_by_a_person(gate, a)
    gate.settle()
    assert held_changes(gate) == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.history("gate") == [("unit", "SUCCESS", "1,1")]
    assert gate.reports(a)[-1].startswith("Build succeeded (gate pipeline).")
