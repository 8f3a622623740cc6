"""Zuul's documented build results and job selection, second round, over real wires: a timed-out job, retries for
the infrastructure, the report line's format, job dependencies, a job's branch and irrelevant-files matchers, and a
change with no job to run. Each docstring names the Zuul page, test or source the expectation comes from."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

JOBS = """jobs:
  - name: unit
  - name: integration
    attempts: 2
  - name: build
  - name: test
    dependencies: build
  - name: stable-only
    branches: ^stable/
  - name: code
    irrelevant-files: '^docs/'
"""

# org/c checks with build -> test, a stable-only job and a job docs-only changes skip.
LAYOUT = GATE_LAYOUT.replace("jobs:\n  - name: unit\n  - name: integration\n    attempts: 2\n", JOBS, 1).replace(
    "queue: other\n    pipelines: {check: [unit], gate: [unit]}",
    "queue: other\n    pipelines: {check: [build, test, stable-only, code], gate: [unit]}", 1)

LINE = r"^- {job} https://logs\.example\.com/\S+/ : {result} in \d+s"  # Zuul's "- name url : RESULT in Xs"


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert "dependencies: build" in LAYOUT and "[build, test, stable-only, code]" in LAYOUT
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def job_line(report: str, job: str) -> str:
    (line,) = [line for line in report.splitlines() if line.startswith(f"- {job} ")]
    return line


def check_jobs(gate: GateHarness, change) -> list[tuple[str, str]]:
    return sorted((r.job, r.result) for r in gate.executor.history if r.pipeline == "check" and r.change == change)


def test_a_timed_out_job_fails_the_change_and_is_reported_timed_out(gate: GateHarness) -> None:
    """Zuul's job doc (`timeout`: "the job is aborted and reported as TIMED_OUT"), a result that is not SUCCESS so
    the change fails: in check Verified -1; in the gate Verified -2 and the change is not merged. The report line is
    Zuul's "- unit <log url> : TIMED_OUT in Xs" (reporter _formatItemReportJobs)."""
    gate.executor.fail("unit", 1, "TIMED_OUT", "TIMED_OUT")
    a = gate.change("org/b")
    gate.settle()
    assert gate.ci_votes(a) == {"Verified": -1}
    failure = gate.reports(a, "check")[-1]
    assert failure.startswith("Build failed (check pipeline).")
    assert re.match(LINE.format(job="unit", result="TIMED_OUT"), job_line(failure, "unit")), failure
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "NEW" and gate.ci_votes(a) == {"Verified": -2}
    assert gate.history("gate") == [("unit", "TIMED_OUT", "1,1")]


def test_the_report_lists_each_job_in_zuuls_line_format(gate: GateHarness) -> None:
    """Zuul's reporter (_formatItemReportJobs: '- %s%s : %s%s%s%s' of name, url, result, error, elapsed, voting):
    each job of a successful gate item on a line of its own, in the order the project lists them."""
    a = gate.change("org/a")
    gate.settle()
    gate.approve(a)
    gate.settle()
    success = gate.reports(a)[-2] if gate.reports(a)[-1].startswith("Change has been successfully merged") \
        else gate.reports(a)[-1]
    assert success.startswith("Build succeeded (gate pipeline).")
    lines = [line for line in success.splitlines() if line.startswith("- ")]
    assert [line.split()[1] for line in lines] == ["unit", "integration"]
    for job, line in zip(("unit", "integration"), lines, strict=True):
        assert re.fullmatch(LINE.format(job=job, result="SUCCESS"), line), line


def test_a_node_failure_is_retried_and_a_change_that_then_passes_is_reported_as_a_plain_success(
        gate: GateHarness) -> None:
    """Zuul's job doc (`attempts`: a job that fails for the infrastructure is retried up to attempts times): the
    integration build loses its node once, runs again and passes; the change merges with Verified +2, its report
    names the job's last build only, a success, and nothing about the retry is the change's fault."""
    gate.executor.fail("integration", 1, "NODE_FAILURE")
    a = gate.change("org/a")
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED" and gate.ci_votes(a) == {"Verified": 2}
    assert [(r.result, r.attempt) for r in gate.executor.records("integration") if r.pipeline == "gate"] == [
        ("NODE_FAILURE", 1), ("SUCCESS", 2)]
    success = [r for r in gate.reports(a) if r.startswith("Build succeeded")][-1]
    assert re.match(LINE.format(job="integration", result="SUCCESS"), job_line(success, "integration")), success
    assert "NODE_FAILURE" not in success


def test_retries_exhausted_are_reported_retry_limit_without_a_vote(gate: GateHarness) -> None:
    """Zuul's job doc (`attempts`, RETRY_LIMIT when they run out); gatekeeper gives the infrastructure's failures
    no vote (docs/zuul-compatibility.md: "never voted on"), so the change keeps no -2 and is not merged; the
    report says it was the infrastructure and that a recheck retries it."""
    gate.executor.fail("integration", 1, "NODE_FAILURE", "NODE_FAILURE")
    a = gate.change("org/a")
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "NEW" and gate.ci_votes(a).get("Verified", 0) == 0
    report = gate.reports(a)[-1]
    assert report.startswith("Build could not be completed because of an infrastructure failure (gate pipeline).")
    assert re.match(LINE.format(job="integration", result="RETRY_LIMIT"), job_line(report, "integration")), report


def test_a_job_waits_for_its_dependency_and_a_failed_dependency_skips_it_and_fails_the_change(
        gate: GateHarness) -> None:
    """Zuul's job doc (`dependencies`: the job runs only after its dependencies succeed; a failed dependency leaves
    the dependent SKIPPED) and test_job_dependencies: A's build runs first, test after it; B's build fails, its test
    never runs, is reported SKIPPED and B gets Verified -1."""
    gate.executor.hold = True
    a = gate.change("org/c", "A")
    gate.settle()
    assert sorted(r.job for r in gate.executor.held()) == ["build", "code"]
    gate.executor.release("build", a.number)
    gate.settle()
    assert sorted(r.job for r in gate.executor.held()) == ["code", "test"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.ci_votes(a) == {"Verified": 1}
    gate.executor.fail("build", 2)
    b = gate.change("org/c", "B")
    gate.settle()
    assert check_jobs(gate, b.number) == [("build", "FAILURE"), ("code", "SUCCESS")]
    assert gate.ci_votes(b) == {"Verified": -1}
    failure = gate.reports(b, "check")[-1]
    assert ": SKIPPED" in job_line(failure, "test") and ": FAILURE" in job_line(failure, "build")


def test_a_stable_only_job_runs_on_stable_changes_and_not_on_master_changes(gate: GateHarness) -> None:
    """Zuul's job doc (`branches`: the job runs only on changes to a matching branch): A to master runs no
    stable-only build, B to stable/1 does."""
    gate.sim.create_branch("org/c", "stable/1")
    a = gate.change("org/c", "A")
    b = gate.sim.create_change("org/c", "B", branch="stable/1", owner="jane")
    gate.settle()
    assert [job for job, _ in check_jobs(gate, a.number)] == ["build", "code", "test"]
    assert [job for job, _ in check_jobs(gate, b.number)] == ["build", "code", "stable-only", "test"]
    assert gate.ci_votes(a) == gate.ci_votes(b) == {"Verified": 1}


def test_a_docs_only_change_skips_a_job_whose_irrelevant_files_cover_it(gate: GateHarness) -> None:
    """Zuul's job doc (`irrelevant-files`: the job is skipped when every file the change touches matches): a
    docs-only change runs no code job; a change touching code and docs runs it."""
    a = gate.change("org/c", "A", files={"docs/index.rst": "Docs\n"})
    b = gate.change("org/c", "B", files={"docs/index.rst": "More\n", "src/main.py": "x = 1\n"})
    gate.settle()
    assert [job for job, _ in check_jobs(gate, a.number)] == ["build", "test"]
    assert [job for job, _ in check_jobs(gate, b.number)] == ["build", "code", "test"]


def test_a_change_to_a_project_without_jobs_in_a_pipeline_is_not_enqueued_nor_told_anything(
        gate: GateHarness) -> None:
    """Zuul's manager does not enqueue an item whose project has no jobs in the pipeline ("No pipeline config for
    item ... not enqueuing"); without a no-jobs reporter Gerrit hears nothing: org/s has no check jobs."""
    a = gate.change("org/s", "A")
    gate.settle()
    assert gate.gate_queue("check") == [] and gate.history() == []
    assert gate.ci_messages(a) == [] and gate.ci_votes(a) == {}


def test_a_change_whose_jobs_all_skip_for_its_files_is_not_enqueued_nor_told_anything(gate: GateHarness) -> None:
    """Zuul's job doc (files matchers decide whether a job runs) and manager (an item with no jobs is not reported
    without a no-jobs reporter): org/b's gate runs `unit` only; with a files matcher that no file of the change
    matches, the approved change is not gated and gets no report."""
    layout = gate.layout_path.read_text().replace(
        "  - name: unit\n", "  - name: unit\n    files: '^src/'\n", 1)
    gate.layout_path.write_text(layout)
    assert gate.management("reload", None) == ""
    a = gate.change("org/b", "A", files={"README": "x\n"})
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == gate.gate_queue("check") == [] and gate.history() == []
    assert gate.ci_messages(a) == [] and gate.status(a) == "NEW"
