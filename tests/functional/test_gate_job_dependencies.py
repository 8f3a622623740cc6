"""Zuul's job dependencies over real wires: a job starts only once the jobs it depends on succeeded; when one of them
fails the job never runs and is reported SKIPPED, and the change fails for the job that failed; a soft dependency on
a job that does not run for the change is ignored; a gate reset runs the jobs again in their order. Real ZooKeeper,
the Gerrit simulator over SSH, the merger and git."""

from __future__ import annotations

import time

import pytest

from gatekeeper.history.db import HistoryDB
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.web.status import pipeline_status
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

JOBS = """jobs:
  - name: unit
  - name: integration
    attempts: 2
    dependencies: unit
  - name: image
    files: '^images/'
  - name: deploy
    dependencies: [{name: image, soft: true}]
  - name: docs
    voting: false
  - name: publish
    dependencies: [docs]
  - name: announce
    dependencies: publish
  - name: package
    dependencies: image
"""
LAYOUT = (GATE_LAYOUT
          .replace("jobs:\n  - name: unit\n  - name: integration\n    attempts: 2\n", JOBS, 1)
          .replace("pipelines: {check: [unit], gate: [unit, integration]}",
                   "pipelines: {check: [unit, integration], gate: [unit, integration]}", 1)
          .replace("  - name: org/c\n    queue: other\n    pipelines: {check: [unit], gate: [unit]}",
                   "  - name: org/c\n    queue: other\n    pipelines: {check: [unit], gate: [unit, image, deploy]}", 1)
          .replace("  - name: org/b\n    queue: integrated\n    pipelines: {check: [unit], gate: [unit]}",
                   "  - name: org/b\n    queue: integrated\n    pipelines: {check: [unit], gate: [unit, docs, publish, "
                   "announce]}", 1)
          .replace("  - name: org/s\n    queue: small\n    pipelines: {gate: [unit]}",
                   "  - name: org/s\n    queue: small\n    pipelines: {gate: [image, package]}", 1))


@pytest.fixture
def gate_layout() -> str:
    assert LAYOUT.count("dependencies:") == 5 and "check: [unit, integration]" in LAYOUT
    assert "deploy]}" in LAYOUT and "announce]}" in LAYOUT and "[image, package]" in LAYOUT
    return LAYOUT


def held(gate: GateHarness, pipeline: str = "gate") -> list[tuple[str, str]]:
    return sorted((r.job, r.changes) for r in gate.executor.held() if r.pipeline == pipeline)


def requested(gate: GateHarness, job: str) -> list[str]:
    """The speculative states of every gate build of `job` an executor was asked for (aborted ones too)."""
    return [r.changes for r in [*gate.executor.history, *gate.executor.held()] if r.job == job and r.pipeline == "gate"]


def test_a_job_starts_only_once_the_job_it_depends_on_succeeded(gate: GateHarness) -> None:
    """A approved; only unit is asked for; unit succeeds, then integration is; both succeed and A merges."""
    a = gate.change("org/a", "A")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    assert held(gate) == [("unit", "1,1")]
    gate.executor.release("unit", a.number)
    gate.settle()
    assert held(gate) == [("integration", "1,1")]
    assert gate.status(a) == "NEW"
    gate.executor.release("integration", a.number)
    gate.settle()
    assert gate.status(a) == "MERGED"
    assert [(job, result) for job, result, _ in gate.history("gate")] == [("unit", "SUCCESS"),
                                                                            ("integration", "SUCCESS")]


def test_a_failed_dependency_skips_its_dependent_and_the_change_fails_for_it(gate: GateHarness,
                                                                              tmp_path) -> None:
    """A's unit fails: integration is never asked for, the report lists it SKIPPED, A gets -2 for unit's failure,
    and the history records the skipped build."""
    db = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    recorder = HistoryRecorder(gate.zk, db).start()
    try:
        a = gate.change("org/a", "A")
        gate.settle()
        gate.executor.fail("unit", a.number)
        gate.approve(a)
        gate.settle()
        assert gate.status(a) == "NEW"
        assert gate.ci_votes(a).get("Verified") == -2
        assert requested(gate, "integration") == []
        gate.assert_history(("unit", "FAILURE", "1,1"))
        (report,) = [r for r in gate.reports(a) if r.startswith("Build failed")]
        lines = report.splitlines()
        assert any(line.startswith("- unit ") and ": FAILURE" in line for line in lines), report
        assert "- integration integration : SKIPPED\n  its dependency unit: FAILURE\n" in report + "\n", report
        wait_for(lambda: db.builds(job="integration", pipeline="gate"), timeout=20,
                 what="the skipped build to be recorded")
        (skipped,) = db.builds(job="integration", pipeline="gate")
        assert (skipped.result, skipped.pipeline, skipped.change) == ("SKIPPED", "gate", a.number)
    finally:
        recorder.stop()
        db.close()


def test_a_soft_dependency_on_a_job_the_change_does_not_run_is_ignored(gate: GateHarness) -> None:
    """C touches no image file: image does not run, and deploy starts at once. D does touch one: deploy waits for
    image, as for a hard dependency."""
    c = gate.change("org/c", "C", files={"setup.py": "x = 1\n"})
    d = gate.change("org/c", "D", files={"images/base.txt": "debian\n"})
    gate.settle()
    gate.executor.hold = True
    gate.approve(c)
    gate.settle()
    assert held(gate) == [("deploy", "1,1"), ("unit", "1,1")]
    gate.executor.release()
    gate.settle()
    assert gate.status(c) == "MERGED"

    gate.approve(d)
    gate.settle()
    assert held(gate) == [("image", "2,1"), ("unit", "2,1")]
    gate.executor.release("image", d.number)
    gate.settle()
    assert held(gate) == [("deploy", "2,1"), ("unit", "2,1")]
    gate.executor.release()
    gate.settle()
    assert gate.status(d) == "MERGED"


def test_a_gate_reset_runs_the_jobs_of_the_item_behind_again_in_their_order(gate: GateHarness) -> None:
    """A and B approved; both pass unit and run integration; A's integration fails. B restarts without A: unit
    first, integration only after it; B merges, A gets -2."""
    a = gate.change("org/a", "A")
    b = gate.change("org/a", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert held(gate) == [("unit", "1,1"), ("unit", "1,1 2,1")]
    gate.executor.release("unit")
    gate.settle()
    assert held(gate) == [("integration", "1,1"), ("integration", "1,1 2,1")]

    gate.executor.release("integration", a.number, "FAILURE")
    gate.settle()
    assert held(gate) == [("unit", "2,1")]  # B's integration was cancelled, and waits for unit again
    gate.executor.release("unit", b.number)
    gate.settle()
    assert held(gate) == [("integration", "2,1")]
    gate.executor.release()
    gate.settle()
    assert [gate.status(a), gate.status(b)] == ["NEW", "MERGED"]
    assert gate.ci_votes(a).get("Verified") == -2
    assert requested(gate, "integration") == ["1,1", "1,1 2,1", "2,1"]
    gate.assert_history(("unit", "SUCCESS", "2,1"), ("integration", "SUCCESS", "2,1"),
                        ("integration", "FAILURE", "1,1"))


def test_an_independent_pipeline_runs_a_job_after_the_job_it_depends_on(gate: GateHarness) -> None:
    """In check, a new change to org/a runs unit, then integration; Verified +1 once both succeed."""
    gate.executor.hold = True
    a = gate.change("org/a", "A")
    gate.settle()
    assert held(gate, "check") == [("unit", "1,1")]
    gate.executor.release("unit", a.number)
    gate.settle()
    assert held(gate, "check") == [("integration", "1,1")]
    assert gate.ci_votes(a).get("Verified", 0) == 0
    gate.executor.release()
    gate.settle()
    assert gate.ci_votes(a).get("Verified") == 1
    assert [(job, result) for job, result, _ in gate.history("check")] == [("unit", "SUCCESS"),
                                                                             ("integration", "SUCCESS")]


def test_a_failed_non_voting_job_skips_what_depends_on_it_and_the_change_still_merges(gate: GateHarness) -> None:
    """B's non-voting docs fails: publish, which depends on it, and announce, which depends on publish, are
    SKIPPED and never asked for; the status page does not call B failing for them; nothing voting failed, so B
    merges once unit passes."""
    b = gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(b)
    gate.settle()
    assert held(gate) == [("docs", "1,1"), ("unit", "1,1")]
    gate.executor.release("docs", b.number, "FAILURE")
    gate.settle()
    assert held(gate) == [("unit", "1,1")]
    status = pipeline_status("gate", "dependent", "", gate.schedulers[0].load_state("gate"), time.time(),
                             lambda project, job: None, str, str)
    (item,) = [i for q in status["queues"] for i in q["items"]]
    assert {j["name"]: j["result"] for j in item["jobs"]} == {"unit": None, "docs": "FAILURE", "publish": "SKIPPED",
                                                              "announce": "SKIPPED"}
    assert (item["failing"], item["failing_reasons"]) == (False, [])
    gate.executor.release()
    gate.settle()
    assert gate.status(b) == "MERGED"
    assert requested(gate, "publish") == requested(gate, "announce") == []
    (report,) = [r for r in gate.reports(b) if r.startswith("Build succeeded")]
    lines = report.splitlines()
    assert "- publish publish : SKIPPED\n  its dependency docs: FAILURE\n" in report + "\n", report
    assert "- announce announce : SKIPPED\n  its dependency publish: SKIPPED\n" in report + "\n", report
    assert any(line.startswith("- docs ") and line.endswith("(non-voting)") for line in lines), report


def test_a_job_whose_hard_dependency_does_not_run_is_skipped_and_a_change_with_nothing_run_fails(
        gate: GateHarness) -> None:
    """org/s runs image (only for changes to images/) and package, which depends on image. S touches no image
    file: package is SKIPPED naming image, nothing was tested, and S fails (as Zuul fails it); T touches an image
    file: image then package run, and T merges."""
    s = gate.change("org/s", "S", files={"setup.py": "x = 1\n"})
    t = gate.change("org/s", "T", files={"images/base.txt": "debian\n"})
    gate.settle()
    gate.approve(s)
    gate.settle()
    assert gate.status(s) == "NEW"
    assert gate.ci_votes(s).get("Verified") == -2
    assert requested(gate, "package") == []
    (report,) = [r for r in gate.reports(s) if r.startswith("Build failed")]
    assert "- package package : SKIPPED\n  its dependency image does not run for this change" in report

    gate.approve(t)
    gate.settle()
    assert gate.status(t) == "MERGED"
    assert gate.history("gate") == [("image", "SUCCESS", "2,1"), ("package", "SUCCESS", "2,1")]


def test_a_new_layout_decides_again_the_jobs_skipped_for_their_dependencies(gate: GateHarness) -> None:
    """A and B approved; B's unit fails, so its integration is SKIPPED while A still runs. The layout then drops
    unit from org/a and integration's dependency on it: B's integration now runs (it is no longer skipped, nor
    does it count as a result), and A and B merge on integration alone."""
    a = gate.change("org/a", "A")
    b = gate.change("org/a", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.executor.release("unit", b.number, "FAILURE")
    gate.settle()
    assert held(gate) == [("unit", "1,1")]
    assert requested(gate, "integration") == []

    text = gate.layout_path.read_text()
    new = text.replace("    attempts: 2\n    dependencies: unit\n", "    attempts: 2\n", 1).replace(
        "gate: [unit, integration]}", "gate: [integration]}", 1)
    assert new.count("dependencies:") == 4 and "check: [unit, integration], gate: [integration]}" in new
    gate.layout_path.write_text(new)
    assert gate.schedulers[0].reload() == ""
    gate.settle()
    assert held(gate) == [("integration", "1,1"), ("integration", "1,1 2,1")]
    gate.executor.release()
    gate.settle()
    assert [gate.status(a), gate.status(b)] == ["MERGED", "MERGED"]


def test_a_dependency_retried_for_the_infrastructure_is_waited_for_not_skipped(gate: GateHarness) -> None:
    """A's unit loses its node once: it is retried, integration waits for the retry and runs after it; A merges."""
    a = gate.change("org/a", "A")
    gate.settle()
    gate.executor.fail("unit", a.number, "NODE_FAILURE")
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED"
    assert gate.history("gate") == [("unit", "NODE_FAILURE", "1,1"), ("unit", "SUCCESS", "1,1"),
                                    ("integration", "SUCCESS", "1,1")]


def test_a_hard_dependency_that_does_not_run_runs_none_of_the_changes_jobs(tmp_path, zk_factory) -> None:
    """As Zuul documents: org/s runs image (only for images/), package (which depends on image) and unit. S touches no
    image file: Zuul runs no job at all and reports the error, so unit is not run either, and S fails."""
    layout = LAYOUT.replace("[image, package]", "[image, package, unit]")
    harness = GateHarness(tmp_path, zk_factory, layout_text=layout)
    try:
        s = harness.change("org/s", "S", files={"setup.py": "x = 1\n"})
        harness.settle()
        harness.approve(s)
        harness.settle()
        assert harness.status(s) == "NEW" and harness.ci_votes(s).get("Verified") == -2
        assert requested(harness, "package") == requested(harness, "unit") == []
        (report,) = [r for r in harness.reports(s) if r.startswith("Build failed")]
        assert "- package package : SKIPPED\n  its dependency image does not run for this change" in report, report
        assert ("- unit unit : SKIPPED\n  no job runs: job package depends on job image, which does not run for "
                "this change") in report, report
    finally:
        harness.stop()
