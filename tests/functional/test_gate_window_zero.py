"""Zuul's `window: 0` over real wires (the Gerrit simulator over SSH, ZooKeeper, the merger): a dependent pipeline
without a window tests every change of its queue at once, and a failure does not shrink it to a window."""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

LAYOUT = GATE_LAYOUT.replace("    window: {initial: 20, floor: 3, increase: 1, decrease-factor: 2}\n",
                             "    window: 0\n", 1)


def test_a_gate_without_a_window_tests_every_change_at_once_even_after_a_failure(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    assert "window: 0" in LAYOUT
    gate = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        changes = [gate.change("org/b") for _ in range(5)]
        gate.settle()
        gate.executor.hold = True
        gate.approve(*changes)
        gate.settle()
        assert sorted(r.changes for r in gate.executor.held() if r.pipeline == "gate") == [
            "1,1", "1,1 2,1", "1,1 2,1 3,1", "1,1 2,1 3,1 4,1", "1,1 2,1 3,1 4,1 5,1"]
        gate.executor.release("unit", 1, "FAILURE")
        gate.settle()
        [queue] = gate.schedulers[0].load_state("gate").queues.values()
        assert queue.window == 0
        assert sorted(r.changes for r in gate.executor.held() if r.pipeline == "gate") == [
            "2,1", "2,1 3,1", "2,1 3,1 4,1", "2,1 3,1 4,1 5,1"]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(c) for c in changes] == ["NEW"] + ["MERGED"] * 4
    finally:
        gate.stop()
