"""Zuul's documented behaviour around the gate, scenario by scenario, over real wires: recheck, the independent check
pipeline, an operator's enqueue of a change that cannot merge, non-voting jobs and a job's `files` matcher. Each
docstring names the Zuul page or test the expectation comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

# org/a also runs `api`, for changes touching nova/ only; org/b also runs a non-voting `lint`.
LAYOUT = GATE_LAYOUT.replace("  - name: unit\n", """  - name: unit
  - name: api
    files: '^nova/'
  - name: lint
    voting: false
""", 1).replace("pipelines: {check: [unit], gate: [unit, integration]}",
                "pipelines: {check: [unit, api], gate: [unit, api]}", 1).replace(
    "queue: integrated\n    pipelines: {check: [unit], gate: [unit]}",
    "queue: integrated\n    pipelines: {check: [unit, lint], gate: [unit, lint]}", 1)


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert LAYOUT.count("api") == 3 and LAYOUT.count("lint") == 3
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def jobs_of(gate: GateHarness, change, pipeline: str) -> list[str]:
    return sorted(r.job for r in gate.executor.history if r.pipeline == pipeline and r.change == change.number)


def test_recheck_after_a_failed_check_runs_check_again_and_votes_anew(gate: GateHarness) -> None:
    """Zuul's check pipeline (trigger comment-added, comment: recheck): a failed check is run again on a recheck
    comment and the new result replaces the vote."""
    gate.executor.fail("unit", 1)
    a = gate.change("org/c")
    gate.settle()
    assert gate.ci_votes(a) == {"Verified": -1}
    gate.comment(a, "recheck")
    gate.settle()
    assert gate.history("check") == [("unit", "FAILURE", "1,1"), ("unit", "SUCCESS", "1,1")]
    assert gate.ci_votes(a) == {"Verified": 1}


def test_a_recheck_comment_by_the_ci_account_runs_check_as_a_trigger_without_a_username_filter_would(
        gate: GateHarness) -> None:
    """Zuul's Gerrit trigger takes a comment-added event whoever wrote it unless its `username` regex says
    otherwise; gatekeeper's trigger does the same (the scheduler's ignore_accounts only skips its own events on a
    change already in the pipeline)."""
    a = gate.change("org/c")
    gate.settle()
    gate.sim.review(a, "ci", message="recheck")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")] * 2


def test_check_tests_two_changes_of_one_project_each_alone_on_the_branch_tip(gate: GateHarness) -> None:
    """Zuul's independent manager puts every change in its own queue: A and B of one project are each tested on the
    branch, not on each other, and A's failure costs B nothing."""
    gate.executor.hold = True
    a, b = gate.change("org/c", "A"), gate.change("org/c", "B")
    gate.settle()
    assert sorted(r.changes for r in gate.executor.held()) == ["1,1", "2,1"]
    gate.executor.release("unit", a.number, "FAILURE")
    gate.settle()
    assert [r.changes for r in gate.executor.held()] == ["2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert sorted(gate.history("check")) == [("unit", "FAILURE", "1,1"), ("unit", "SUCCESS", "2,1")]
    assert (gate.ci_votes(a), gate.ci_votes(b)) == ({"Verified": -1}, {"Verified": 1})


def test_a_change_that_no_longer_merges_on_the_branch_is_reported_by_checks_merge_conflict_reporter(
        gate: GateHarness) -> None:
    """Zuul's pipeline doc, merge-conflict reporters: B, checked fine before A merged, conflicts with the branch
    on its recheck; check says so through its merge-conflict reporter (Verified -1), running no job."""
    a = gate.change("org/c", "A", files={"README": "from a\n"})
    b = gate.change("org/c", "B", files={"README": "from b\n"})
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED" and gate.ci_votes(b) == {"Verified": 1}
    gate.comment(b, "recheck")
    gate.settle()
    assert gate.ci_votes(b) == {"Verified": -1}
    assert gate.reports(b, "check")[-1].startswith("This change could not be merged.")
    assert [changes for _, _, changes in gate.history("check")].count("2,1") == 1


@pytest.mark.parametrize("close", ["merge", "abandon"])
def test_an_operator_enqueue_of_a_closed_change_is_refused_naming_it(gate: GateHarness, close: str) -> None:
    """Zuul's manager never enqueues a merged change (addChange: "Change is already merged") nor, for a gate, one
    that cannot merge; gatekeeper's enqueue says which requirement the change misses (docs/zuul-compatibility.md)."""
    a = gate.change("org/c")
    gate.settle()
    if close == "merge":
        gate.approve(a)
    else:
        gate.sim.abandon(a, "jane", "not needed")
    gate.settle()
    assert gate.status(a) == ("MERGED" if close == "merge" else "ABANDONED")
    runs = len(gate.executor.history)
    for pipeline in ("gate", "check"):
        error = gate.management("enqueue", pipeline, change="1,1")
        assert error.startswith(f"change 1,1 cannot enter {pipeline}: "), error
    gate.settle()
    assert len(gate.executor.history) == runs and gate.gate_queue() == gate.gate_queue("check") == []


def test_a_failing_non_voting_job_leaves_the_vote_and_is_shown_as_non_voting(gate: GateHarness) -> None:
    """Zuul's job doc (voting: false): a non-voting job's failure does not fail the change; the report marks its
    line "(non-voting)". In check the change gets +1, in the gate it merges."""
    gate.executor.fail("lint", 1, "FAILURE", "FAILURE")
    a = gate.change("org/b")
    gate.settle()
    assert gate.ci_votes(a) == {"Verified": 1}
    (check_report,) = [r for r in gate.reports(a, "check") if r.startswith("Build succeeded")]
    (lint_line,) = [line for line in check_report.splitlines() if line.startswith("- lint ")]
    assert ": FAILURE" in lint_line and lint_line.endswith("(non-voting)")
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED" and gate.ci_votes(a) == {"Verified": 2}
    assert ("lint", "FAILURE", "1,1") in gate.history("gate")


def test_a_files_matcher_runs_its_job_only_for_a_change_touching_a_matching_file_in_check_and_gate(
        gate: GateHarness) -> None:
    """Zuul's job doc (files): the job runs only on changes modifying a matching file, judged on the item's own
    change: C, touching only the README, runs no api job in check or in the gate, even tested on A that touches
    nova/."""
    a = gate.change("org/a", "A", files={"nova/api.py": "x = 1\n"})
    c = gate.change("org/a", "C", files={"README": "Read me\n"})
    gate.settle()
    assert (jobs_of(gate, a, "check"), jobs_of(gate, c, "check")) == (["api", "unit"], ["unit"])
    gate.approve(a, c)
    gate.settle()
    assert [gate.status(x) for x in (a, c)] == ["MERGED", "MERGED"]
    assert (jobs_of(gate, a, "gate"), jobs_of(gate, c, "gate")) == (["api", "unit"], ["unit"])
    gate.assert_history(("unit", "SUCCESS", "1,1 2,1"))
