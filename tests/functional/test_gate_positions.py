"""Builds ask for nodes in the gate's order: each build request carries its pipeline's precedence and its item's
position in the queue (the head first), a retried build keeps its item's place, and a change that enters a check
queue of its own is at its head. Over real wires: ZooKeeper, the Gerrit simulator over SSH, the merger."""

from __future__ import annotations

from gatekeeper.config.model import PRECEDENCE_ORDER
from tests.functional.gate_harness import GateHarness


def gate_requests(gate: GateHarness, pipeline: str = "gate") -> list[tuple[str, str, int, list[int]]]:
    return sorted((r.changes, r.job, r.attempt, list(r.priority)) for r in gate.executor.held()
                  if r.pipeline == pipeline)


def test_build_requests_carry_the_queue_position_of_their_item(gate: GateHarness) -> None:
    high, normal = PRECEDENCE_ORDER["high"], PRECEDENCE_ORDER["normal"]
    a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate_requests(gate) == [
        ("1,1", "integration", 1, [high, 0]), ("1,1", "unit", 1, [high, 0]),
        ("1,1 2,1", "unit", 1, [high, 1]),
        ("1,1 2,1 3,1", "integration", 1, [high, 2]), ("1,1 2,1 3,1", "unit", 1, [high, 2])]
    # B's node vanished: its retry keeps B's place behind A
    gate.executor.release("unit", b.number, "NODE_FAILURE")
    gate.settle()
    assert ("1,1 2,1", "unit", 2, [high, 1]) in gate_requests(gate)
    # a new change in check has a queue of its own: it is at its head
    d = gate.change("org/b")
    gate.settle()
    assert gate_requests(gate, "check") == [("4,1", "unit", 1, [normal, 0])]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3 and gate.status(d) == "NEW"
