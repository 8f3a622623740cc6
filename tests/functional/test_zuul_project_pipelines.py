"""A project's pipelines in Zuul's spelling over real wires (the Gerrit simulator over SSH, ZooKeeper, the merger,
the scheduler's build requests): `check: {jobs: [...]}`, a job given with what this project's pipeline changes of it
(Zuul's project-pipeline job variant: non-voting here, a shorter timeout), and the queue named in a pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

PROJECTS = """projects:
  - name: org/a
    queue: integrated
    check:
      jobs:
        - unit
        - integration:
            voting: false
            timeout: 120
            vars: {mode: quick}
    gate:
      jobs: [unit, integration]
  - name: org/b
    check:
      jobs: [unit]
    gate:
      queue: integrated
      jobs: [unit]
"""

LAYOUT = GATE_LAYOUT[:GATE_LAYOUT.index("projects:")] + PROJECTS


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def test_a_project_pipeline_changes_a_job_for_itself_only(gate: GateHarness) -> None:
    gate.executor.fail("integration", 1, "FAILURE", "FAILURE")
    a = gate.change("org/a")
    gate.settle()
    [check] = [gate.executor.requests[r.id] for r in gate.executor.records("integration") if r.pipeline == "check"]
    assert (check.params["timeout"], check.params["vars"], check.params["voting"]) == (120, {"mode": "quick"}, False)
    assert gate.ci_votes(a) == {"Verified": 1}  # its failure does not count here
    [report] = [r for r in gate.reports(a, "check") if r.startswith("Build succeeded")]
    assert any(line.startswith("- integration ") and line.endswith("(non-voting)") for line in report.splitlines())

    b = gate.change("org/b")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert sorted((r.job, r.changes) for r in gate.executor.held()) == [
        ("integration", "1,1"), ("unit", "1,1"), ("unit", "1,1 2,1")]  # B shares A's queue
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    # in the gate integration votes, with the job's own timeout; B shares A's queue (named in its gate pipeline)
    [voting] = [gate.executor.requests[r.id] for r in gate.executor.records("integration") if r.pipeline == "gate"]
    assert (voting.params["timeout"], voting.params["voting"]) == (3600, True)
    assert gate.status(a) == "NEW" and gate.ci_votes(a) == {"Verified": -2}
    assert gate.status(b) == "MERGED"
    assert ("unit", "SUCCESS", "2,1") in gate.history("gate")  # restarted without A


@pytest.mark.parametrize(("projects", "message"), [
    ("  - name: org/a\n    check:\n      jobs:\n        - frozen: {voting: false}\n",
     'zuul.yaml:13: project "org/a" pipeline check: job "frozen" is final: a project pipeline cannot change it'),
    ("  - name: org/a\n    check:\n      jobs:\n        - unit: {voting: maybe}\n",
     "zuul.yaml:13: projects[0] (org/a).check.jobs[0].unit.voting: expected true or false, got a string 'maybe'"),
    ("  - name: org/a\n    pipelines: {check: [unit]}\n    check:\n      jobs: [unit]\n",
     'zuul.yaml:12: project "org/a": pipeline check is given twice: under pipelines and as check'),
    ("  - name: org/a\n    chek:\n      jobs: [unit]\n",
     'zuul.yaml:11: project "org/a": undefined pipeline "chek" (defined: check)'),
    ("  - name: org/a\n    check:\n      queue: nope\n      jobs: [unit]\n",
     'zuul.yaml:12: project "org/a": undefined queue "nope" (defined: none)'),
    ("  - name: org/a\n    merge_mode: cherry-pick\n",
     'zuul.yaml:11: projects[0] (org/a): unknown key "merge_mode"'),
    ("  - name: org/a\n    templates: [python-jobs]\n",
     "zuul.yaml:11: projects[0] (org/a).templates: project templates are not supported: list the template's jobs "
     "in each of the project's pipelines"),
    ("  - name: org/a\n    vars: {python: '3.11'}\n",
     "zuul.yaml:11: projects[0] (org/a).vars: a project's vars are not supported: give them in its pipelines' "
     "jobs, like {unit: {vars: {...}}}"),
    ("  - name: org/a\n    default-branch: main\n",
     "zuul.yaml:11: projects[0] (org/a).default-branch: a project's default branch is not used here: a job's "
     "branches match each change's own branch"),
    ("  - name: org/a\n    check: [unit]\n",
     "zuul.yaml:11: projects[0] (org/a).check: unknown key, or pipeline check's jobs given as a list: write check: "
     "{jobs: [...]}, or the list under pipelines"),
])
def test_zuul_spelled_project_mistakes_are_sentences_naming_file_and_line(projects: str, message: str) -> None:
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.config.yamlfile import ConfigErrors

    text = ("pipelines:\n  - name: check\n    manager: independent\n"
            "    trigger: {gerrit: [{event: patchset-created}]}\n"
            "jobs:\n  - name: unit\n  - name: frozen\n    final: true\nprojects:\n" + projects)
    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"zuul.yaml": text}, connections={"gerrit"})
    assert [str(e) for e in caught.value.errors] == [message]


ZUUL_FORMAT = r"""
- pipeline:
    name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    success:
      gerrit:
        Verified: 1
    failure:
      gerrit:
        Verified: -1
- pipeline:
    name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - Approved: 1
    require:
      gerrit:
        approval:
          - Code-Review: 2
    success:
      gerrit:
        Verified: 2
        submit: true
    failure:
      gerrit:
        Verified: -2
- queue:
    name: integrated
- job:
    name: base
    abstract: true
    timeout: 1800
- job:
    name: unit
    parent: base
    required-projects:
      - name: org/b
- project:
    name: org/a
    queue: integrated
    check:
      jobs:
        - unit
    gate:
      jobs:
        - unit
"""


def test_a_zuul_spelled_project_may_describe_itself() -> None:
    from gatekeeper.config.layout import parse_layout

    text = ZUUL_FORMAT.replace("    name: org/a\n", "    name: org/a\n    description: The A service.\n", 1)
    assert parse_layout({"zuul.yaml": text}, connections={"gerrit"}).projects["org/a"].pipelines == {
        "check": ("unit",), "gate": ("unit",)}


def test_a_layout_file_in_zuuls_format_gates_a_change(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    """Zuul's file format (a list of `- pipeline:`, `- queue:`, `- job:`, `- project:` objects) runs as ours."""
    gate = GateHarness(tmp_path, zk_factory, layout_text=ZUUL_FORMAT)
    try:
        a = gate.change("org/a")
        gate.settle()
        assert gate.ci_votes(a) == {"Verified": 1}
        gate.approve(a)
        gate.settle()
        assert gate.status(a) == "MERGED" and gate.ci_votes(a) == {"Verified": 2}
        requests = [gate.executor.requests[r.id] for r in gate.executor.records("unit")]
        assert [r.params["timeout"] for r in requests] == [1800] * 2
        assert all(sorted(r.repo_state["branches"]) == ["org/a", "org/b"] for r in requests)  # its required project
    finally:
        gate.stop()


def test_zuul_format_objects_we_do_not_have_are_named_with_their_line() -> None:
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.config.yamlfile import ConfigErrors

    text = ZUUL_FORMAT + "- project-template:\n    name: python-jobs\n- semaphore:\n    name: one\n- 3\n" + (
        "- job:\n    name: pinned\n    required-projects: [{name: org/b, override-checkout: stable/1}]\n"
        "- job:\n    name: nameless\n    required-projects: ''\n")
    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"zuul.yaml": text}, connections={"gerrit"})
    assert [str(e) for e in caught.value.errors] == [
        "zuul.yaml:53: item 7: project-template is not supported: list the template's jobs in each project's "
        "pipelines",
        "zuul.yaml:55: item 8: semaphore is not supported: jobs are not limited by semaphores here",
        "zuul.yaml:57: item 9: expected one configuration object, like - pipeline: {...} or - job: {...}",
        "zuul.yaml:60: jobs[2] (pinned).required-projects[0] (org/b).override-checkout: override-checkout is not "
        "supported: a required project is checked out at the change's branch (or its default branch when it has "
        "none)",
        "zuul.yaml:63: jobs[3] (nameless).required-projects: expected a project name, or a mapping like "
        "{name: org/project}, got a string ''"]
