"""An operator's promote in every kind of pipeline, as Zuul documents it: in an independent pipeline the promoted
change's queue goes first (processed first, its node requests ahead of its project's other changes) and nothing
restarts; in a dependent one several queues may be promoted at once. Over real wires: ZooKeeper, the Gerrit
simulator over SSH, the merger, the operator's request through ZooKeeper."""

from __future__ import annotations

from gatekeeper.config.model import PRECEDENCE_ORDER
from tests.functional.gate_harness import GateHarness
from tests.functional.test_gate_positions import gate_requests


def test_promote_in_an_independent_pipeline_puts_the_change_first_without_restarting_anything(
        gate: GateHarness) -> None:
    normal = PRECEDENCE_ORDER["normal"]
    gate.executor.hold = True
    a, b, c = gate.change("org/a"), gate.change("org/a"), gate.change("org/b")
    gate.settle()
    # each project's changes ask for nodes in the order they came; another project's first change is first too
    assert gate_requests(gate, "check") == [("1,1", "unit", 1, [normal, 0]), ("2,1", "unit", 1, [normal, 1]),
                                            ("3,1", "unit", 1, [normal, 0])]
    assert gate.management("promote", "check", changes=["2,1"]) == ""
    gate.settle()
    assert gate.gate_queue("check") == ["2,1", "1,1", "3,1"]
    assert [r.attempt for r in gate.executor.held()] == [1, 1, 1]  # nothing was cancelled or restarted
    # the builds asked for from now on (here: retries after lost nodes) have B's nodes before A's
    gate.executor.release("unit", a.number, "NODE_FAILURE")
    gate.executor.release("unit", b.number, "NODE_FAILURE")
    gate.settle()
    assert gate_requests(gate, "check") == [("1,1", "unit", 2, [normal, 1]), ("2,1", "unit", 2, [normal, 0]),
                                            ("3,1", "unit", 1, [normal, 0])]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.ci_votes(x).get("Verified") for x in (a, b, c)] == [1, 1, 1]


def test_promote_in_a_dependent_pipeline_reorders_each_queue_it_names(gate: GateHarness) -> None:
    a, b, c, d = gate.change("org/a"), gate.change("org/a"), gate.change("org/c"), gate.change("org/c")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c, d)
    gate.settle()
    assert gate.management("promote", "gate", changes=["2,1", "4,1"]) == ""
    gate.settle()
    assert gate.gate_queue() == ["2,1", "1,1", "4,1", "3,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    gate.assert_history(("unit", "SUCCESS", "2,1 1,1"), ("unit", "SUCCESS", "4,1 3,1"))
    assert gate.merge_order().index(2) < gate.merge_order().index(1)
    assert gate.merge_order().index(4) < gate.merge_order().index(3)
