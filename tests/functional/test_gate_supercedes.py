"""Zuul's pipeline attributes `supercedes`, `dequeue-on-new-patchset` and the window's increase and decrease types,
over the real wires (Gerrit simulator over SSH, real ZooKeeper, merger, scheduler)."""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

CHECK_SUCCESS = "Build succeeded (check pipeline)."
SUPERCEDES = "    supercedes: check\n"


def layout_with(old: str, new: str, text: str = GATE_LAYOUT) -> str:
    changed = text.replace(old, new, 1)
    assert changed != text, f"the shared layout no longer has {old!r} to replace"
    return changed


def held(gate: GateHarness) -> list[tuple[str, str, str]]:
    return sorted((r.pipeline, r.job, r.changes) for r in gate.executor.held())


def check_results(gate: GateHarness, change) -> list[str]:
    """The first line of each of check's result reports on `change`."""
    return [m.split("\n")[0] for m in gate.reports(change, "check") if "(check pipeline)" in m]


def test_without_supercedes_an_approved_change_stays_in_check_and_gets_checks_report(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """A is being checked when it is approved: with no pipeline superseding check, A enters the gate and keeps its
    place in check; its check job runs to the end and check reports, then the gate merges it."""
    gate = GateHarness(tmp_path, zk_factory, layout_text=layout_with(SUPERCEDES, ""))
    try:
        a = gate.change("org/a")
        gate.executor.hold = True
        gate.settle()
        gate.approve(a)
        gate.settle()
        assert held(gate) == [("check", "unit", "1,1"), ("gate", "integration", "1,1"), ("gate", "unit", "1,1")]
        assert gate.gate_queue("check") == ["1,1"] and gate.gate_queue("gate") == ["1,1"]
        assert gate.executor.release(pipeline="check") == 1
        gate.settle()
        assert check_results(gate, a) == [CHECK_SUCCESS]
        assert gate.gate_queue("check") == []
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert gate.history("check") == [("unit", "SUCCESS", "1,1")]
        assert gate.status(a) == "MERGED"
    finally:
        gate.stop()


def test_with_supercedes_check_an_approved_change_leaves_check_without_a_report(gate: GateHarness) -> None:
    """The shared layout's gate supercedes check: A's check job is cancelled when A enters the gate, and check says
    nothing more about A."""
    a = gate.change("org/a")
    gate.executor.hold = True
    gate.settle()
    assert held(gate) == [("check", "unit", "1,1")]
    gate.approve(a)
    gate.settle()
    assert held(gate) == [("gate", "integration", "1,1"), ("gate", "unit", "1,1")]
    assert gate.gate_queue("check") == [] and gate.gate_queue("gate") == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.history("check") == []
    assert check_results(gate, a) == []
    assert gate.status(a) == "MERGED"


def test_a_pipeline_superseding_an_independent_one_of_any_name_takes_the_change(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """An independent `experimental` pipeline run on a "check experimental" comment supercedes check: a change in
    check leaves it for experimental (any manager on either side, named by the layout)."""
    experimental = """  - name: experimental
    manager: independent
    supercedes: [check]
    trigger:
      gerrit:
        - event: comment-added
          comment: (?im)^\\s*check experimental\\s*$
    success: {gerrit: {labels: {}, message: Experimental jobs succeeded.}}
  - name: gate
"""
    text = layout_with("  - name: gate\n", experimental).replace(
        "pipelines: {check: [unit], gate: [unit, integration]}",
        "pipelines: {check: [unit], gate: [unit, integration], experimental: [integration]}", 1)
    gate = GateHarness(tmp_path, zk_factory, layout_text=text)
    try:
        a = gate.change("org/a")
        gate.executor.hold = True
        gate.settle()
        gate.comment(a, "check experimental")
        gate.settle()
        assert held(gate) == [("experimental", "integration", "1,1")]
        assert gate.gate_queue("check") == []
        gate.executor.release()
        gate.settle()
        assert gate.history("check") == []
        assert any("Experimental jobs succeeded." in m for m in gate.ci_messages(a))
    finally:
        gate.stop()


def test_dequeue_on_new_patchset_false_lets_the_old_patch_set_finish_and_report(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """Check keeps old patch sets: A,1 is being checked when A,2 is uploaded; A,2 enters check beside it, and both
    run to their reports."""
    text = layout_with("    require: {open: true, current-patchset: true}\n",
                       "    require: {open: true, current-patchset: true}\n    dequeue-on-new-patchset: false\n")
    gate = GateHarness(tmp_path, zk_factory, layout_text=text)
    try:
        a = gate.change("org/a")
        gate.executor.hold = True
        gate.settle()
        gate.sim.create_patchset(a, files={"more.txt": "v2\n"})
        gate.settle()
        assert held(gate) == [("check", "unit", "1,1"), ("check", "unit", "1,2")]
        assert sorted(gate.gate_queue("check")) == ["1,1", "1,2"]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert sorted(gate.history("check")) == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,2")]
        assert check_results(gate, a) == [CHECK_SUCCESS, CHECK_SUCCESS]
        assert gate.ci_votes(a) == {"Verified": 1}  # given on 1,2 only: Gerrit takes no vote on an outdated one
        assert gate.gate_queue("check") == []
    finally:
        gate.stop()


def test_by_default_a_new_patch_set_removes_the_old_one_from_check(gate: GateHarness) -> None:
    a = gate.change("org/a")
    gate.executor.hold = True
    gate.settle()
    gate.sim.create_patchset(a, files={"more.txt": "v2\n"})
    gate.settle()
    assert held(gate) == [("check", "unit", "1,2")]
    assert gate.gate_queue("check") == ["1,2"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,2")]
    assert check_results(gate, a) == [CHECK_SUCCESS]


def test_a_queue_window_grows_exponentially_and_shrinks_linearly_as_configured(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """The small queue starts 3 wide; A fails at its head (3 - 1 = 2, where halving would keep 3 with a factor of 1),
    then B merges (2 * 3 = 6, where adding would make 5)."""
    text = layout_with("    window: {initial: 2, floor: 1, increase: 1, decrease-factor: 2}\n",
                       "    window: {initial: 3, floor: 1, ceiling: 10, increase: 3, increase-type: exponential,\n"
                       "             decrease-factor: 1, decrease-type: linear}\n")
    gate = GateHarness(tmp_path, zk_factory, layout_text=text)
    try:
        a, b = gate.change("org/s"), gate.change("org/s")
        gate.settle()
        gate.executor.fail("unit", a.number)
        gate.executor.hold = True
        gate.approve(a, b)
        gate.settle()
        assert gate.schedulers[0].load_state("gate").queues["small"].window == 3
        gate.executor.release("unit", a.number)
        gate.settle()
        assert gate.schedulers[0].load_state("gate").queues["small"].window == 2
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
        assert gate.schedulers[0].load_state("gate").queues["small"].window == 6
    finally:
        gate.stop()
