"""A new layout reaches the items already queued, as Zuul's reconfiguration does: each live item runs the jobs the
new layout gives it. A removed job's build is cancelled and its result no longer counts, an added job starts, and
an item left with no job leaves the pipeline saying why. Real ZooKeeper, Gerrit simulator, merger and git."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

A_JOBS = "  - name: org/a\n    queue: integrated\n    pipelines: {check: [unit], gate: [unit, integration]}\n"
B_JOBS = "  - name: org/b\n    queue: integrated\n    pipelines: {check: [unit], gate: [unit]}\n"


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert A_JOBS in GATE_LAYOUT and B_JOBS in GATE_LAYOUT
    harness = GateHarness(tmp_path, zk_factory)
    try:
        yield harness
    finally:
        harness.stop()


def reconfigure(gate: GateHarness, old: str, new: str) -> None:
    """Edit the layout file and reload it, as an operator's `gatekeeper reload` does."""
    text = gate.layout_path.read_text()
    assert old in text, old
    gate.layout_path.write_text(text.replace(old, new, 1))
    assert gate.schedulers[0].reload() == ""


def held(gate: GateHarness) -> list[tuple[str, str]]:
    return sorted((r.job, r.changes) for r in gate.executor.held())


def test_a_job_removed_from_the_layout_is_cancelled_and_no_longer_counts(gate: GateHarness) -> None:
    """A (org/a: unit, integration) and B behind it are running; integration is removed from org/a's gate. Its
    build is cancelled, A's failure of it no longer matters, and both merge on unit alone."""
    a = gate.change("org/a", "A")
    b = gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert held(gate) == [("integration", "1,1"), ("unit", "1,1"), ("unit", "1,1 2,1")]

    reconfigure(gate, A_JOBS, A_JOBS.replace("gate: [unit, integration]", "gate: [unit]"))
    gate.settle()
    assert held(gate) == [("unit", "1,1"), ("unit", "1,1 2,1")]  # the integration build was cancelled
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(c) for c in (a, b)] == ["MERGED", "MERGED"]
    report = next(m for m in gate.reports(a) if m.startswith("Build succeeded"))
    assert "unit" in report and "integration" not in report, report


def test_a_job_added_to_the_layout_starts_for_the_queued_items(gate: GateHarness) -> None:
    """B (org/b: unit) is running; integration is added to org/b's gate: it starts for B, and B merges after both."""
    b = gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(b)
    gate.settle()
    assert held(gate) == [("unit", "1,1")]

    reconfigure(gate, B_JOBS, B_JOBS.replace("gate: [unit]", "gate: [unit, integration]"))
    gate.settle()
    assert held(gate) == [("integration", "1,1"), ("unit", "1,1")]
    gate.executor.release("unit", b.number)
    gate.settle()
    assert gate.status(b) == "NEW"  # still waiting for the job it gained
    gate.executor.release()
    gate.settle()
    assert gate.status(b) == "MERGED"
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("integration", "SUCCESS", "1,1"))


def test_an_item_whose_project_no_longer_has_jobs_in_the_pipeline_leaves_saying_why(gate: GateHarness) -> None:
    """org/b's gate jobs are all removed while B runs behind A: B's build is cancelled and B leaves the gate with
    a message; A goes on and merges."""
    a = gate.change("org/a", "A")
    b = gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()

    reconfigure(gate, B_JOBS, B_JOBS.replace("gate: [unit]", "gate: []"))
    gate.settle()
    assert gate.gate_queue() == ["1,1"]
    assert held(gate) == [("integration", "1,1"), ("unit", "1,1")]  # A's builds go on: nothing ahead changed
    assert gate.reports(b)[-1] == ("This change was removed from the gate queue.\n\nRemoved because the layout no "
                                   "longer runs any job for org/b in gate.")
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(c) for c in (a, b)] == ["MERGED", "NEW"]
