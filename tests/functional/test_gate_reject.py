"""A pipeline's `reject` approvals and approval filters by value list and voter, as Zuul's layouts write them,
over the real wires (Gerrit simulator over SSH, real ZooKeeper, merger, scheduler)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

REMOVED = "This change was removed from the gate queue.\n\n"

# The gate refuses a change that a core reviewer vetoed (-2) or that a CI account voted Verified -1 or -2 on, and
# takes Code-Review +2 only from rita.
LAYOUT = GATE_LAYOUT.replace(
    "      approval: [{Code-Review: 2}, {Approved: 1}]\n",
    "      approval: [{Code-Review: 2, username: ^rita$}, {Approved: 1}]\n"
    "    reject:\n"
    "      approval: [{Code-Review: -2}, {Verified: [-1, -2], username: ^ci$}]\n",
)


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert LAYOUT != GATE_LAYOUT, "the test layout no longer has the gate's requirements to extend"
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def test_a_vetoed_change_does_not_enter_the_gate_and_its_neighbour_merges(gate: GateHarness) -> None:
    a, b = gate.change("org/a"), gate.change("org/a")
    gate.settle()
    gate.sim.review(a, "jane", labels={"Code-Review": -2})
    gate.approve(a, b)
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    assert gate.reports(a) == []
    gate.assert_history(("unit", "SUCCESS", "2,1"), ("integration", "SUCCESS", "2,1"))


def test_a_veto_while_in_the_gate_removes_the_change_and_says_why(gate: GateHarness) -> None:
    a, b = gate.change("org/a"), gate.change("org/b")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1"]
    gate.sim.review(a, "jane", labels={"Code-Review": -2})
    gate.settle()
    assert gate.gate_queue() == ["2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    reports = gate.reports(a)
    assert len(reports) == 2 and reports[1].startswith(
        "This change is unable to merge due to a missing merge requirement.\n\nIt has Code-Review: -2.")
    assert gate.ci_votes(a) == {"Verified": -2}  # as Zuul: through the failure reporters


def test_approval_filters_match_the_voter_and_any_value_of_a_list(gate: GateHarness) -> None:
    """Code-Review +2 from jane does not count (the gate takes it from rita only); a CI account's Verified -1
    keeps a change out, the same vote from a person does not."""
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/b")
    gate.settle()
    gate.sim.review(a, "jane", labels={"Code-Review": 2, "Approved": 1})
    gate.sim.review(b, "ci", labels={"Verified": -1})
    gate.sim.review(c, "jane", labels={"Verified": -1})
    gate.approve(b, c)
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["NEW", "NEW", "MERGED"]
    assert gate.reports(a) == []
    assert gate.reports(b) == ["Patch Set 1: Verified-1"]  # the CI account's own vote, posted above
