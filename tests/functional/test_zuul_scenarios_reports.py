"""Zuul's report text and the window after a refused submit, scenario by scenario, over real wires (the Gerrit
simulator over SSH, ZooKeeper, the merger on git): what a Zuul user's tooling reads in a report (the "Build
succeeded (check pipeline)." header, one "- job URL : RESULT in 1m 02s" line per job, "(non-voting)", SKIPPED jobs,
the footer after the results, the message tag) and what the gate does when Gerrit refuses a submit. Each docstring
names the Zuul source the expectation comes from."""

from __future__ import annotations

import re

import pytest

from gatekeeper.gerrit.source import GerritReporter
from gatekeeper.history.db import HistoryDB
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.models.interfaces import Report
from gatekeeper.models.pipeline import Build, Change
from gatekeeper.scheduler.reports import ItemReports
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

# The job line as the Gerrit plugin zuul-results-summary parses Zuul's reports (its resultRe), and as a line of
# Zuul's _formatItemReportJobs: '- %s%s : %s%s%s%s' % (name + ' ', url or name, result, error, elapsed, voting).
PLUGIN_LINE = re.compile(r"^- (?P<job>[^ ]+) (?P<link>https?://[^ ]+) : (?P<result>[^ ]+)( in (?P<time>.*))?")
ZUUL_LINE = re.compile(r"^- (?P<job>[^ ]+) (?P<url>[^ ]+) : (?P<result>[A-Z_]+)"
                       r"(?P<elapsed> in (\d+h \d\dm \d\ds|\d+m \d\ds|\d+s))?(?P<voting> \(non-voting\))?$")
FOOTER = "Questions? Ask in #infra."
CHECK_CONFLICT = "    merge-conflict: {gerrit: {labels: {Verified: -1}, message: This change could not be merged.}}\n"

LAYOUT = (GATE_LAYOUT
          .replace("    dequeue: {gerrit: {message: This change was removed from the gate queue.}}\n",
                   "    dequeue: {gerrit: {message: This change was removed from the gate queue.}}\n"
                   f"    footer-message: '{FOOTER}'\n", 1)
          .replace(CHECK_CONFLICT, CHECK_CONFLICT + f"    footer-message: '{FOOTER}'\n", 1)
          .replace("jobs:\n  - name: unit\n", "jobs:\n  - name: unit\n  - name: lint\n    voting: false\n"
                   "  - name: docs\n    dependencies: unit\n", 1)
          .replace("pipelines: {check: [unit], gate: [unit]}\n  - name: org/c",
                   "pipelines: {check: [unit, lint, docs], gate: [unit, docs]}\n  - name: org/c", 1))


@pytest.fixture
def gate_layout() -> str:
    assert LAYOUT.count(FOOTER) == 2 and "check: [unit, lint, docs]" in LAYOUT
    return LAYOUT


def job_lines(report: str) -> dict[str, str]:
    """The report's job lines by job (gatekeeper's indented lines under a failed job are not job lines)."""
    return {line.split(" ")[1]: line for line in report.splitlines() if line.startswith("- ")}


def test_a_check_report_has_zuuls_header_job_lines_non_voting_mark_and_footer(gate: GateHarness) -> None:
    """reporter/__init__.py _formatItemReportSuccess and _formatItemReportJobs: the pipeline's success-message,
    then one line per job "- lint https://... : FAILURE in 0s (non-voting)" that the zuul-results-summary plugin
    parses (job, link, result, time), then _formatItemReport's footer-message as the last paragraph."""
    a = gate.change("org/b")
    gate.executor.fail("lint", a.number)
    gate.settle()
    report = [r for r in gate.reports(a, "check") if r.startswith("Build")][-1]
    assert report.splitlines()[0] == "Build succeeded (check pipeline)."
    assert report.endswith("\n\n" + FOOTER)
    lines = job_lines(report)
    assert list(lines) == ["unit", "lint", "docs"]  # the project's order, as Zuul's job graph lists them
    for job, result in (("unit", "SUCCESS"), ("lint", "FAILURE"), ("docs", "SUCCESS")):
        parsed = PLUGIN_LINE.match(lines[job])
        assert parsed and (parsed["job"], parsed["result"]) == (job, result), lines[job]
        assert ZUUL_LINE.match(lines[job])["elapsed"], lines[job]  # " in 0s"
    assert lines["lint"].endswith(" (non-voting)") and not lines["unit"].endswith(" (non-voting)")
    assert gate.ci_votes(a) == {"Verified": 1}


def test_a_gate_failure_report_lists_a_skipped_job_in_zuuls_line_form(gate: GateHarness) -> None:
    """_formatItemReportFailure: "Build failed (gate pipeline).", the job lines, the footer. docs depends on unit,
    which fails: docs never runs and is listed SKIPPED. Zuul writes the job's name where a build has no URL
    (_getItemReportJobsFields: "url = url or job.name", since Gerrit-side parsers need one word there), so every job
    line reads "- job url : RESULT"."""
    a = gate.change("org/b")
    gate.settle()
    gate.executor.fail("unit", a.number)
    gate.approve(a)
    gate.settle()
    report = [r for r in gate.reports(a) if r.startswith("Build failed")][-1]
    assert report.splitlines()[0] == "Build failed (gate pipeline)."
    assert report.endswith("\n\n" + FOOTER)
    lines = job_lines(report)
    assert PLUGIN_LINE.match(lines["unit"])["result"] == "FAILURE"
    skipped = ZUUL_LINE.match(lines["docs"])
    assert skipped and (skipped["url"], skipped["result"]) == ("docs", "SKIPPED"), lines["docs"]
    assert gate.ci_votes(a) == {"Verified": -2}


def test_every_report_is_tagged_as_zuuls_are(gate: GateHarness) -> None:
    """gerritconnection.py review_ssh/review_http: --tag autogenerated:zuul:<pipeline name> on every review (the
    tag Gerrit's UI hides bots' messages by, and the zuul-results-summary plugin and CI dashboards look for); a
    reporter's own `tag` wins."""
    a = gate.change("org/a", files={"f.txt": "gated\n"})
    gate.settle()
    tags = {m.tag for m in gate.sim.change(a).messages if m.author.username == "ci"}
    assert tags == {"autogenerated:zuul:check"}
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    gate.push_directly("org/a", {"f.txt": "direct\n"})  # the gate's submit is refused: a report of its own
    gate.executor.release()
    gate.settle()
    ours = [m for m in gate.sim.change(a).messages if m.author.username == "ci"]
    assert {m.tag for m in ours} == {"autogenerated:zuul:check", "autogenerated:zuul:gate"}
    refused = [m for m in ours if "could not be merged" in m.message]
    assert refused and all(m.tag == "autogenerated:zuul:gate" for m in refused), [m.message for m in ours]


def test_a_reporters_own_tag_wins_over_zuuls() -> None:
    sent: list[str | None] = []

    class Connection:
        def review(self, *args, tag=None, **kwargs) -> None:
            sent.append(tag)

    reporter = GerritReporter(Connection())
    change = Change(project="org/a", number=1, patchset=1)
    reporter.report(Report("check", change, "success", "Build succeeded.", {"Verified": 1}, tag="team-ci"))
    reporter.report(Report("check", change, "success", "Build succeeded.", {"Verified": 1}))
    assert sent == ["team-ci", "autogenerated:zuul:check"]


@pytest.mark.parametrize(("seconds", "elapsed"), [
    (5.9, " in 5s"), (62.7, " in 1m 02s"), (3725.5, " in 1h 02m 05s"), (60.0, " in 1m 00s")])
def test_a_jobs_duration_is_written_as_zuul_writes_it(seconds: float, elapsed: str) -> None:
    """_getItemReportJobsFields: dt = int(end - start) (whole seconds, cut), then "%dh %02dm %02ds", "%dm %02ds"
    or "%ds"."""
    build = Build(job="unit", result="SUCCESS", log_url="https://logs.example.com/1/", start_time=1000.0,
                  end_time=1000.0 + seconds)
    assert ItemReports._job_line(build) == f"- unit https://logs.example.com/1/ : SUCCESS{elapsed}"



def test_what_went_wrong_follows_the_job_line_where_zuuls_parsers_do_not_look() -> None:
    """_formatItemReportJobs: '- %s%s : %s%s%s%s' with the elapsed time (" in 5s") right after the result and
    "(non-voting)" last, which the results-summary plugin reads; Zuul's own error text is short and rare, gatekeeper's
    (which step failed, the summary) goes on the indented lines below."""
    build = Build(job="unit", result="TIMED_OUT", log_url="https://logs.example.com/1/", start_time=1000.0,
                  end_time=1005.2, message="the job ran past its timeout of 5 seconds", voting=False)
    lines = ItemReports._job_line(build).splitlines()
    assert lines[:2] == ["- unit https://logs.example.com/1/ : TIMED_OUT in 5s (non-voting)",
                         "  the job ran past its timeout of 5 seconds"]
    assert ZUUL_LINE.match(lines[0])["elapsed"] == " in 5s"


def test_a_submit_gerrit_refuses_drops_the_change_retests_the_one_behind_and_keeps_the_window(
        gate: GateHarness, tmp_path) -> None:
    """manager/__init__.py reportItem: A's jobs pass but Gerrit refuses its submit (the branch moved under it);
    the item is dequeued (MergeFailure), B behind it is tested again without A and merges, and the window is only
    decreased "if not succeeded" (A's tests succeeded): the small queue's window of 2 stays 2, then grows to 3 with
    B's merge."""
    a = gate.change("org/s", files={"f.txt": "gated\n"})
    b = gate.change("org/s")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.push_directly("org/s", {"f.txt": "direct\n"})  # someone bypassed the gate: A no longer merges
    gate.executor.release("unit", a.number)
    gate.settle()
    assert gate.status(a) == "NEW"
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 2
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(b) == "MERGED"
    assert [r.changes for r in gate.executor.history if r.result == "ABORTED"] == ["1,1 2,1"]  # B's run on A
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1"))
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 3
    assert "passed its gate jobs but could not be merged" in gate.reports(a)[-1]
    # the build history, through ZooKeeper's history queue: A's buildset is a MERGE_FAILURE, as Zuul records it
    db = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    recorder = HistoryRecorder(gate.zk, db).start()
    try:
        sets = wait_for(lambda: (found := {(r.change, r.result) for r in db.buildsets(pipeline="gate")})
                        >= {(a.number, "MERGE_FAILURE"), (b.number, "SUCCESS")} and found, 20, "the buildsets")
        assert (a.number, "MERGE_FAILURE") in sets
    finally:
        recorder.stop()
        db.close()


def test_a_change_gerrit_would_refuse_to_submit_for_a_label_nobody_gave_never_enters_the_gate(
        gate: GateHarness) -> None:
    """manager/dependent.py isChangeReadyToBeEnqueued: "Change %s can not merge" when source.canMerge(change,
    getSubmitAllowNeeds()) is false; the Gerrit reporter's allow-needs are its own labels (Verified here). org/s
    also needs Legal +1 to submit, which nobody gave A: A stays out of the gate, untested."""
    project = gate.sim.project("org/s")
    project.labels["Legal"], project.submit_rule["Legal"] = (0, 1), 1
    a = gate.change("org/s")
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == [] and gate.status(a) == "NEW"
    assert gate.history("gate") == [] and gate.reports(a) == []
