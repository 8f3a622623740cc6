"""Zuul's `supercedent` pipeline manager over real wires (Gerrit simulator over SSH, real ZooKeeper, merger,
scheduler): one queue per project and branch, whose head runs and is never cancelled, and where a newer item replaces
the one waiting behind it, without a report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.scheduler.timer import PipelineTimer
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.functional.test_periodic_pipeline import START, Clock, fire
from tests.functional.test_post_pipeline import push, recorded
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

PROMOTE = r"""
  - name: promote
    manager: supercedent
    precedence: low
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/.*$
        - event: comment-added
          comment: (?im)^\s*promote\s*$
    success: {gerrit: {labels: {}, message: Promoted.}}
    failure: {gerrit: {labels: {}, message: Promotion failed.}}
    dequeue: {gerrit: {message: Removed from promote.}}
queues:"""

LAYOUT = GATE_LAYOUT.replace("\nqueues:", PROMOTE, 1).replace(
    "  - name: unit\n", "  - name: unit\n  - name: publish\n", 1).replace(
    "pipelines: {check: [unit], gate: [unit, integration]}",
    "pipelines: {check: [unit], gate: [unit, integration], promote: [publish]}", 1).replace(
    "pipelines: {check: [unit], gate: [unit]}", "pipelines: {check: [unit], gate: [unit], promote: [publish]}").replace(
    "    supercedes: check\n", "    supercedes: [check, promote]\n", 1)


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def running(gate: GateHarness) -> list[str]:
    """The changes (keys) of the promote builds running now."""
    return sorted(r.changes for r in gate.executor.held() if r.pipeline == "promote")


def push_to(gate: GateHarness, tmp_path: Path, branch: str, text: str) -> str:
    """Rita pushes one commit straight to `branch` (each push from a clone of its own); returns its sha."""
    where = tmp_path / text
    where.mkdir()
    return push(gate, where, branch, text)


def ref_key(sha: str, branch: str = "master") -> str:
    return f"org/a:refs/heads/{branch}@{sha[:12]}"


def test_newest_ref_update_replaces_the_waiting_one_and_the_running_one_finishes_across_a_restart(
        gate: GateHarness, tmp_path: Path) -> None:
    """Three pushes to master while the first one's jobs run: the third replaces the second, which never runs; a
    push to stable/1 has its own queue and runs at once. The scheduler is killed meanwhile: the new one reads the
    queues back, the first push's build is not cancelled, and the third runs once it is done."""
    gate.executor.hold = True
    first = push_to(gate, tmp_path, "master", "one")
    wait_for(lambda: running(gate) == [ref_key(first)], 30, "the first push's build")
    second = push_to(gate, tmp_path, "master", "two")
    gate.settle()
    assert gate.gate_queue("promote") == [ref_key(first), ref_key(second)]
    third = push_to(gate, tmp_path, "master", "three")
    stable = push_to(gate, tmp_path, "stable/1", "elsewhere")
    gate.settle()
    assert running(gate) == sorted([ref_key(first), ref_key(stable, "stable/1")])
    assert sorted(gate.gate_queue("promote")) == sorted([ref_key(first), ref_key(third), ref_key(stable, "stable/1")])

    gate.kill_scheduler(gate.schedulers[0])
    gate.start_scheduler()
    gate.settle()
    assert running(gate) == sorted([ref_key(first), ref_key(stable, "stable/1")])

    gate.executor.release()
    wait_for(lambda: running(gate) == [ref_key(third)], 30, "the newest push's turn")
    gate.executor.release()
    gate.settle()
    assert sorted(gate.history("promote")) == sorted([
        ("publish", "SUCCESS", ref_key(first)), ("publish", "SUCCESS", ref_key(stable, "stable/1")),
        ("publish", "SUCCESS", ref_key(third))])
    assert gate.gate_queue("promote") == []
    buildsets = [r for r in recorded(gate, "promote") if "job" not in r]
    assert sorted(r["newrev"] for r in buildsets) == sorted([first, third, stable])  # the second: not one


def test_a_superseded_change_leaves_without_a_report_and_a_dequeue_leaves_the_running_head_alone(
        gate: GateHarness) -> None:
    """A1, A2, A3 (org/a, master) and B (org/b) are promoted in turn: A1 and B run at once; A3 replaces A2, which
    hears nothing although dequeues are reported. An operator dequeues A3: it is told, and A1 runs on to its
    report."""
    a1, a2, a3, b = gate.change("org/a"), gate.change("org/a"), gate.change("org/a"), gate.change("org/b")
    gate.settle()
    gate.executor.hold = True
    for change in (a1, a2, a3, b):
        gate.comment(change, "promote")
        gate.settle()
    assert running(gate) == ["1,1", "4,1"]
    assert gate.gate_queue("promote") == ["1,1", "3,1", "4,1"]
    assert not [m for m in gate.ci_messages(a2) if "promote" in m.lower()]

    assert gate.management("dequeue", "promote", change="3,1") == ""
    gate.settle()
    assert any("Removed from promote." in m for m in gate.ci_messages(a3))
    assert gate.gate_queue("promote") == ["1,1", "4,1"]
    assert running(gate) == ["1,1", "4,1"]
    gate.executor.release()
    gate.settle()
    assert sorted(gate.history("promote")) == [("publish", "SUCCESS", "1,1"), ("publish", "SUCCESS", "4,1")]
    assert any("Promoted." in m for m in gate.ci_messages(a1)) and any("Promoted." in m for m in gate.ci_messages(b))
    assert not [m for m in gate.ci_messages(a2) if "promote" in m.lower()]


def test_a_change_leaving_a_supercedent_queue_for_a_pipeline_superseding_it_leaves_the_others_there(
        gate: GateHarness) -> None:
    """The gate supercedes promote: A1 runs in promote, A2 waits behind it; A2 is approved and leaves promote for the
    gate, and A1 (in the same queue, but not A2's) runs on to its report."""
    a1, a2 = gate.change("org/a"), gate.change("org/a")
    gate.settle()
    gate.executor.hold = True
    for change in (a1, a2):
        gate.comment(change, "promote")
        gate.settle()
    assert gate.gate_queue("promote") == ["1,1", "2,1"]
    gate.approve(a2)
    gate.settle()
    assert gate.gate_queue("promote") == ["1,1"] and gate.gate_queue("gate") == ["2,1"]
    assert running(gate) == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(a2) == "MERGED"
    merged = ref_key(gate.sim.branch_tip("org/a", "master"))  # A2's merge updated master: promote runs on it too
    assert sorted(gate.history("promote")) == [("publish", "SUCCESS", "1,1"), ("publish", "SUCCESS", merged)]
    assert any("Promoted." in m for m in gate.ci_messages(a1))


def test_a_supercedent_periodic_pipeline_runs_the_newest_branch_tip_after_the_running_one(
        tmp_path: Path, zk_factory: Callable[..., ZKClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """A timer fires while the previous fire's job still runs: the fires pile up as one waiting item, the newest
    branch tip (a periodic pipeline that falls behind runs the latest state once, not every state in turn)."""
    clock = Clock(START)
    monkeypatch.setattr(PipelineTimer, "clock", staticmethod(clock))
    text = LAYOUT.replace("""      gerrit:
        - event: ref-updated
          ref: ^refs/heads/.*$
        - event: comment-added
          comment: (?im)^\\s*promote\\s*$
""", """      timer:
        - time: '* * * * * *'
""", 1)
    assert text != LAYOUT
    gate = GateHarness(tmp_path, zk_factory, layout_text=text)
    try:
        gate.executor.hold = True
        wait_for(lambda: gate.schedulers[0].timer.looked_at == START, 30, "the timer to look at the clock")
        tips = []
        for n in range(3):
            if n:
                tips.append(push_to(gate, tmp_path, "master", f"tip{n}"))
            else:
                tips.append(gate.sim.branch_tip("org/a", "master"))
            fire(gate, clock, START + 0.5 + n, START + 0.5 + n)
            gate.settle()
        queued = [k for k in gate.gate_queue("promote") if k.startswith("org/a:")]
        assert queued == [ref_key(tips[0]), ref_key(tips[2])]
        assert [k for k in running(gate) if k.startswith("org/a:")] == [ref_key(tips[0])]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [c for _, _, c in gate.history("promote") if c.startswith("org/a:")] == [
            ref_key(tips[0]), ref_key(tips[2])]
    finally:
        gate.stop()
