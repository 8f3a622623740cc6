"""Zuul's `window: 0` over real wires (the Gerrit simulator over SSH, ZooKeeper, the merger): a dependent pipeline
without a window tests every change of its queue at once, and a failure does not shrink it to a window."""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

# A finite window (whatever its size) would shrink to 1 on the first failure: only no window keeps testing them all.
LAYOUT = GATE_LAYOUT.replace("    window: {initial: 20, floor: 3, increase: 1, decrease-factor: 2}\n",
                             "    window: 0\n    window-floor: 1\n    window-decrease-factor: 100\n", 1)


def test_a_gate_without_a_window_tests_every_change_at_once_even_after_a_failure(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    assert "window: 0\n" in LAYOUT
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


def test_a_new_layout_that_gives_a_windowless_queue_a_window_starts_it_at_its_initial_size(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    gate = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        first = gate.change("org/b")
        gate.settle()
        gate.approve(first)
        gate.settle()
        assert gate.status(first) == "MERGED"
        [queue] = gate.schedulers[0].load_state("gate").queues.values()
        assert queue.window == 0
        gate.layout_path.write_text(gate.layout_path.read_text().replace(
            "    window: 0\n    window-floor: 1\n    window-decrease-factor: 100\n",
            "    window: {initial: 2, floor: 1, increase: 1, decrease-factor: 2}\n", 1))
        assert gate.schedulers[0].reload() == ""
        changes = [gate.change("org/b") for _ in range(4)]
        gate.settle()
        gate.executor.hold = True
        gate.approve(*changes)
        gate.settle()
        assert sorted(r.changes for r in gate.executor.held() if r.pipeline == "gate") == ["2,1", "2,1 3,1"]
        gate.executor.release("unit", 2)
        gate.settle()
        [queue] = gate.schedulers[0].load_state("gate").queues.values()
        assert queue.window == 3  # grown from its initial size on the head's success
        assert sorted(r.changes.split()[-1] for r in gate.executor.held() if r.pipeline == "gate") == [
            "3,1", "4,1", "5,1"]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(c) for c in changes] == ["MERGED"] * 4
    finally:
        gate.stop()
