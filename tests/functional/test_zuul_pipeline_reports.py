"""A layout in Zuul's own spelling of pipelines runs as Zuul documents it, over real wires (the Gerrit simulator over
SSH, ZooKeeper, the merger on real git): `require`/`reject` under the source's connection name, an approval filter
as one mapping, Gerrit reporters with their labels as keys, the `<action>-message` texts and the footer, the
enqueue and no-jobs reporters, and a merge conflict reported through the failure reporters where the pipeline has
no merge-conflict reporters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

ZUUL_LAYOUT = r"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
    require:
      gerrit:
        open: true
        current-patchset: true
    enqueue:
      gerrit: {}
    start:
      gerrit:
        Verified: 0
    success:
      gerrit:
        Verified: 1
    failure:
      gerrit:
        Verified: -1
    no-jobs:
      gerrit: {}
    enqueue-message: Enqueued in {pipeline.name}.
    start-message: Starting {pipeline.name} jobs.
    success-message: Build succeeded.
    failure-message: Build failed.
    no-jobs-message: No jobs run for this change in {pipeline.name}.
    footer-message: 'Questions? Ask in #infra.'
  - name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
          approval:
            - Approved: 1
    require:
      gerrit:
        open: true
        current-patchset: true
        approval:
          Code-Review: 2
    reject:
      gerrit:
        approval:
          - Verified: [-1, -2]
    success:
      gerrit:
        Verified: 2
        submit: true
    failure:
      gerrit:
        Verified: -2
    success-message: Build succeeded (gate pipeline).
    failure-message: Build failed (gate pipeline).
    footer-message: 'Questions? Ask in #infra.'
queues:
  - name: integrated
jobs:
  - name: unit
  - name: stable-only
    branches: stable/.*
projects:
  - name: org/a
    queue: integrated
    pipelines: {check: [unit], gate: [unit]}
  - name: org/b
    queue: integrated
    pipelines: {check: [stable-only], gate: [unit]}
"""


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=ZUUL_LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def texts(gate: GateHarness, change) -> list[str]:
    """CI's messages on a change, without Gerrit's "Patch Set N: votes" line."""
    return [m.split("\n\n", 1)[1] if "\n\n" in m else m for m in gate.ci_messages(change)]


def test_a_layout_in_zuuls_spelling_votes_and_says_what_zuul_would(gate: GateHarness) -> None:
    a = gate.change("org/a", files={"README": "from a\n"})
    b = gate.change("org/b")
    gate.settle()
    enqueued, started, succeeded = texts(gate, a)
    assert (enqueued, started) == ("Enqueued in check.", "Starting check jobs.")
    assert succeeded.startswith("Build succeeded.\n\n- unit ") and succeeded.endswith("\n\nQuestions? Ask in #infra.")
    assert gate.ci_votes(a) == {"Verified": 1}
    assert texts(gate, b) == ["No jobs run for this change in check."]  # its project is in check: no job matches

    c = gate.change("org/a", files={"README": "from c\n"})  # conflicts with A once A merged
    gate.settle()
    gate.approve(a, c)
    gate.settle()
    assert [gate.status(x) for x in (a, c)] == ["MERGED", "NEW"]
    # no merge-conflict reporter: the failure reporters say it, with Zuul's merge-conflict text and the footer
    assert gate.ci_votes(c) == {"Verified": -2}
    conflict = texts(gate, c)[-1]
    assert conflict.startswith("Merge failed.\n\n") and conflict.endswith("\n\nQuestions? Ask in #infra.")
    assert "Build failed" not in conflict

    d = gate.change("org/a")
    gate.settle()
    gate.sim.review(d, "rita", labels={"Verified": -1})  # the reject under gerrit keeps it out of the gate
    gate.approve(d)
    gate.settle()
    assert gate.status(d) == "NEW" and gate.gate_queue() == []


def test_a_new_layout_changes_the_jobs_of_an_item_that_only_reported_its_enqueue(gate: GateHarness) -> None:
    gate.executor.hold = True
    a = gate.change("org/a")
    gate.settle()
    assert texts(gate, a) == ["Enqueued in check.", "Starting check jobs."]
    assert [r.job for r in gate.executor.held()] == ["unit"]
    text = gate.layout_path.read_text().replace("  - name: unit\n", "  - name: unit\n  - name: lint\n", 1)
    gate.layout_path.write_text(text.replace("pipelines: {check: [unit], gate: [unit]}",
                                             "pipelines: {check: [unit, lint], gate: [unit]}", 1))
    assert gate.schedulers[0].reload() == ""
    gate.settle()
    assert sorted(r.job for r in gate.executor.held()) == ["lint", "unit"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert sorted(gate.history("check")) == [("lint", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1")]


@pytest.mark.parametrize(("pipeline", "message"), [
    ("  - name: p\n    manager: independent\n    require: {gerritt: {open: true}}\n",
     'require names unknown connection "gerritt" (known: gerrit)'),
    ("  - name: p\n    manager: independent\n    success: {gerrit: {Verified: yes please}}\n",
     "expected a vote (an integer) for label Verified, or one of labels, message, submit, tag"),
    ("  - name: p\n    manager: independent\n    failure: {gerrit: {comment: false}}\n",
     "comment is not supported: every report carries a message"),
    ("  - name: p\n    manager: independent\n    merge-failure: {gerrit: {Verified: -1}}\n"
     "    merge-conflict: {gerrit: {Verified: -1}}\n",
     "merge-failure is Zuul's older name of merge-conflict, which this pipeline also gives"),
    ("  - name: p\n    manager: dependent\n    disable-after-consecutive-failures: 3\n",
     "a dependent pipeline cannot be disabled: it merges the changes that succeed"),
])
def test_zuul_spellings_that_cannot_work_get_a_sentence_naming_the_place(pipeline: str, message: str) -> None:
    text = "pipelines:\n" + pipeline + "    trigger: {gerrit: [{event: patchset-created}]}\n"
    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"layout.yaml": text}, connections={"gerrit"})
    assert message in str(caught.value), str(caught.value)
    assert "layout.yaml:" in str(caught.value)


def test_every_mistake_of_one_gerrit_reporter_is_listed() -> None:
    text = ("pipelines:\n  - name: p\n    manager: independent\n    success: {gerrit: {message: 3, Verified: x}}\n"
            "    trigger: {gerrit: [{event: patchset-created}]}\n")
    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"layout.yaml": text}, connections={"gerrit"})
    assert sorted(str(e) for e in caught.value.errors) == [
        "layout.yaml:4: pipelines[0] (p).success.gerrit.Verified: expected a vote (an integer) for label Verified, or "
        "one of labels, message, submit, tag, got a string 'x'",
        "layout.yaml:4: pipelines[0] (p).success.gerrit.message: expected a string, got an integer 3"]


DISABLING = GATE_LAYOUT.replace(
    "    merge-conflict: {gerrit: {labels: {Verified: -1}, message: This change could not be merged.}}\n",
    "    merge-conflict: {gerrit: {labels: {Verified: -1}, message: This change could not be merged.}}\n"
    "    disable-after-consecutive-failures: 2\n"
    "    disabled: {gerrit: {message: Check is disabled after failures in a row; results are not voted on.}}\n", 1)


def check_status(gate: GateHarness) -> dict:
    """The status document's entry of the check pipeline, from its state in ZooKeeper."""
    from gatekeeper.web.status import is_disabled, pipeline_status

    scheduler = gate.schedulers[-1]
    state = scheduler.load_state("check")
    return pipeline_status("check", "independent", "", state, time.time(), lambda project, job: None, str, str,
                           disabled=is_disabled(state, scheduler.layout, "check"))


def test_a_pipeline_disabled_after_failures_in_a_row_reports_to_its_disabled_reporters_until_a_new_layout(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    gate = GateHarness(tmp_path, zk_factory, layout_text=DISABLING)
    try:
        a, b = gate.change("org/a"), gate.change("org/b")
        gate.executor.fail("unit", a.number)
        gate.executor.fail("unit", b.number)
        gate.settle()
        assert [gate.ci_votes(x) for x in (a, b)] == [{"Verified": -1}] * 2
        assert check_status(gate)["disabled"] is True  # two in a row: disabled, before any further report
        c = gate.change("org/a")  # a third item: it would pass, but the pipeline is disabled now
        gate.settle()
        assert gate.ran("unit", "SUCCESS", "3,1")
        assert gate.ci_votes(c) == {}
        [said] = texts(gate, c)  # no start report either
        assert said.startswith("Check is disabled after failures in a row; results are not voted on.\n\n- unit ")
        # it stays disabled across a scheduler's restart (the state is in ZooKeeper)
        gate.kill_scheduler(gate.schedulers[0])
        gate.start_scheduler()
        d = gate.change("org/a")
        gate.settle()
        assert gate.ci_votes(d) == {} and texts(gate, d)[0].startswith("Check is disabled")
        assert check_status(gate)["disabled"] is True  # the status page says so
        # a new layout enables it again
        gate.layout_path.write_text(gate.layout_path.read_text().replace("consecutive-failures: 2", "consecutive-"
                                                                         "failures: 3"))
        assert gate.schedulers[-1].reload() == ""
        assert check_status(gate)["disabled"] is False  # enabled by the new layout at once, not at the next report
        e = gate.change("org/a")
        gate.settle()
        assert gate.ci_votes(e) == {"Verified": 1}
        assert texts(gate, e) == ["Starting check jobs.", texts(gate, e)[1]]
        assert texts(gate, e)[1].startswith("Build succeeded (check pipeline).")
        assert check_status(gate)["disabled"] is False
    finally:
        gate.stop()


def test_a_merge_conflict_is_no_failure_in_a_row_that_disables_a_pipeline(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    gate = GateHarness(tmp_path, zk_factory, layout_text=DISABLING)
    try:
        a, c = gate.change("org/a", files={"README": "from a\n"}), gate.change("org/a", files={"README": "from c\n"})
        gate.settle()
        gate.approve(a)
        gate.settle()
        assert gate.status(a) == "MERGED"
        b = gate.change("org/b")
        gate.executor.fail("unit", b.number)
        gate.settle()
        assert gate.ci_votes(b) == {"Verified": -1}  # one failure
        gate.comment(c, "recheck")
        gate.settle()
        assert texts(gate, c)[-1].startswith("This change could not be merged.")  # a conflict: not counted
        d = gate.change("org/a")
        gate.settle()
        assert gate.ci_votes(d) == {"Verified": 1}
        assert texts(gate, d)[-1].startswith("Build succeeded (check pipeline).")
    finally:
        gate.stop()


def test_a_disabled_pipeline_tells_a_change_without_jobs_through_its_disabled_reporters(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    layout = ZUUL_LAYOUT.replace("    no-jobs:\n", "    disable-after-consecutive-failures: 1\n"
                                 "    disabled: {gerrit: {message: Check is disabled.}}\n    no-jobs:\n", 1)
    gate = GateHarness(tmp_path, zk_factory, layout_text=layout)
    try:
        a = gate.change("org/a")
        gate.executor.fail("unit", a.number)
        gate.settle()
        assert gate.ci_votes(a) == {"Verified": -1}
        b = gate.change("org/b")  # no job of org/b runs on master
        gate.settle()
        assert texts(gate, b) == ["Check is disabled.\n\nQuestions? Ask in #infra."]
    finally:
        gate.stop()


def test_an_independent_pipeline_ignoring_dependencies_tests_each_change_alone(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    require = "    require: {open: true, current-patchset: true}\n"
    layout = GATE_LAYOUT.replace(require, require + "    ignore-dependencies: true\n", 1)
    gate = GateHarness(tmp_path, zk_factory, layout_text=layout)
    try:
        a = gate.change("org/a")
        gate.settle()
        gate.change("org/a", parent=a)  # B's git parent is A, still open
        gate.settle()
        assert gate.history("check") == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1")]  # not "1,1 2,1"
    finally:
        gate.stop()


TRIGGER_REQUIRE = GATE_LAYOUT.replace(
    "        - event: comment-added\n          comment: (?im)^\\s*recheck\\s*$\n",
    "        - event: comment-added\n          comment: (?im)^\\s*recheck\\s*$\n"
    "          require:\n            approval:\n              - Code-Review: [1, 2]\n"
    "          reject:\n            approval:\n              - Verified: -2\n", 1)


def test_a_triggers_own_require_and_reject_decide_on_the_events_change(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    """Check's recheck comment counts only on a change with a positive review and no Verified -2 (Zuul's trigger
    require and reject): A has no review, B a +1, C a +1 and a Verified -2; each is rechecked, only B runs again."""
    assert "require:\n            approval:" in TRIGGER_REQUIRE
    gate = GateHarness(tmp_path, zk_factory, layout_text=TRIGGER_REQUIRE)
    try:
        a, b, c = gate.change("org/a"), gate.change("org/a"), gate.change("org/a")
        gate.settle()
        gate.sim.review(b, "rita", labels={"Code-Review": 1})
        gate.sim.review(c, "rita", labels={"Code-Review": 1, "Verified": -2})
        for change in (a, b, c):
            gate.comment(change, "recheck")
        gate.settle()
        runs = {key: len([h for h in gate.history("check") if h[2] == key]) for key in ("1,1", "2,1", "3,1")}
        assert runs == {"1,1": 1, "2,1": 2, "3,1": 1}
    finally:
        gate.stop()


def test_a_pipelines_reject_mirrors_its_require(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    """Check rejects work-in-progress changes (Zuul's `reject: {gerrit: {wip: true}}`): W does not enter until it is
    ready for review; a running change marked work in progress leaves."""
    require = "    require: {open: true, current-patchset: true}\n"
    layout = GATE_LAYOUT.replace(require, require + "    reject: {gerrit: {wip: true}}\n", 1)
    gate = GateHarness(tmp_path, zk_factory, layout_text=layout)
    try:
        project = gate.sim.project("org/a")
        tip = gate.sim.branch_tip("org/a")
        sha = project.repo.commit([tip], "Not ready\n\nChange-Id: I0123456789abcdef0123456789abcdef01234567\n",
                                  {"w.txt": "w\n"}, ("Jane Dev", "jane@example.com"))
        w, _ = gate.sim.upload("org/a", sha, uploader="jane", wip=True)  # uploaded as work in progress
        gate.settle()
        assert gate.history("check") == []
        gate.sim.set_wip(w, False, "jane")
        gate.comment(w, "recheck")
        gate.settle()
        assert gate.history("check") == [("unit", "SUCCESS", "1,1")]
        gate.executor.hold = True
        gate.comment(w, "recheck")
        gate.settle()
        assert [r.changes for r in gate.executor.held()] == ["1,1"]
        gate.sim.set_wip(w, True, "jane")
        gate.settle()
        assert gate.gate_queue("check") == [] and gate.executor.held() == []
    finally:
        gate.executor.release()
        gate.stop()
