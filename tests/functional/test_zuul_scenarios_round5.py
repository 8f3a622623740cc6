"""Zuul's documented behaviour, fifth round: a change merged by a person while it is in the gate, a gate requiring
the CI's own vote from check, post-review jobs, and an item a reload leaves without jobs. Each docstring names the
Zuul source or doc the expectation comes from."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gatekeeper.sim.gerrit import Change
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT


def held_changes(gate: GateHarness) -> list[str]:
    return sorted(r.changes for r in gate.executor.held())


def submitted_by_a_person(gate: GateHarness, change: Change) -> None:
    """Rita, a core, overrides the CI's vote and submits the change herself in Gerrit."""
    gate.sim.review(change, "rita", labels={"Verified": 2})
    gate.sim.submit(change, "rita")


def two_gated_and_held(gate: GateHarness) -> tuple[Change, Change]:
    """A and B of org/b approved, their gate builds (A's, and B's on A) held running."""
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert held_changes(gate) == ["1,1", "1,1 2,1"]
    return a, b


def test_the_changes_behind_a_change_a_person_submits_in_the_gate_keep_their_builds_and_merge(
        gate: GateHarness) -> None:
    """Zuul's manager (_processOneItem): an item whose item ahead merged is not reset (item_ahead_merged), and a
    change-merged event dequeues nothing (scheduler: only patchset-created and change-abandoned do). A, B approved;
    Rita submits A in Gerrit; B's build on 1,1 2,1 is not restarted, and B merges; A gets no failure vote."""
    a, b = two_gated_and_held(gate)
    submitted_by_a_person(gate, a)
    gate.settle()
    assert "1,1 2,1" in held_changes(gate)  # B's build goes on
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
    assert gate.history("gate")[-1] == ("unit", "SUCCESS", "1,1 2,1")
    assert ("unit", "SUCCESS", "2,1") not in gate.history("gate")
    assert gate.ci_votes(a) == {} and gate.ci_votes(b) == {"Verified": 2}
    assert not any(r.startswith("Build failed") for r in gate.reports(a))


@pytest.mark.xfail(strict=True, reason="gatekeeper removes a gated change merged by a person at once, told through "
                                       "the dequeue reporter; Zuul keeps the item until its jobs end and reports it "
                                       "through the success reporters")
def test_a_change_a_person_submits_in_the_gate_finishes_its_jobs_and_is_reported_a_success(
        gate: GateHarness) -> None:
    """Zuul's manager: the item stays (isChangeReadyToBeEnqueued asks canMerge, which a merged change's CLOSED
    submit record passes), its jobs run to the end, and reportItem reports it with the success actions and counts
    it merged (source.isMerged)."""
    a = gate.change("org/b", "A")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    submitted_by_a_person(gate, a)
    gate.settle()
    assert held_changes(gate) == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.history("gate") == [("unit", "SUCCESS", "1,1")]
    assert gate.reports(a)[-1].startswith("Build succeeded (gate pipeline).")


# OpenStack's gate as its Zuul layout writes it: a change enters only with the CI's own Verified +1 or +2 from check
# (and the approvals), and the gate's start report sets Verified 0.
CHECKED_FIRST = GATE_LAYOUT.replace(
    "      approval: [{Code-Review: 2}, {Approved: 1}]\n",
    "      approval: [{Code-Review: 2}, {Approved: 1}, {Verified: [1, 2], username: ^ci$}]\n")


def test_a_gate_requiring_the_ci_accounts_verified_vote_takes_only_checked_changes_and_merges_them(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """Zuul's pipeline doc (require approval with username; OpenStack's gate requires `Verified: [1, 2], username:
    zuul` and starts with Verified 0): A passed check and is approved: it is gated and merges, though the gate's
    start vote took the +1 away (Zuul's manager checks only canMerge while the item waits, not the pipeline's
    require); B failed check: approved, it is not gated nor told anything."""
    assert CHECKED_FIRST != GATE_LAYOUT
    gate = GateHarness(tmp_path, zk_factory, layout_text=CHECKED_FIRST)
    try:
        a = gate.change("org/a", "A")
        gate.settle()
        gate.executor.hold = True
        b = gate.change("org/a", "B")
        gate.settle()
        gate.executor.release("unit", b.number, "FAILURE")
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert gate.ci_votes(a) == {"Verified": 1} and gate.ci_votes(b) == {"Verified": -1}
        gate.executor.hold = True
        gate.approve(a, b)
        gate.settle()
        assert gate.gate_queue() == ["1,1"]
        assert "Verified" not in gate.ci_votes(a)  # the gate's start report set it to 0
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(x) for x in (a, b)] == ["MERGED", "NEW"]
        assert sorted(gate.history("gate")) == [("integration", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1")]
        assert gate.reports(b) == []
    finally:
        gate.stop()


# A post-review pipeline beside check: a comment "publish" runs the post-review job `publish` of org/b there.
POST_REVIEW = GATE_LAYOUT.replace("queues:\n", """  - name: publish
    manager: independent
    post-review: true
    trigger: {gerrit: [{event: comment-added, comment: '(?im)^publish$'}]}
    success: {gerrit: {message: Published.}}
    failure: {gerrit: {message: Publishing failed.}}
queues:
""", 1).replace("  - name: integration\n", "  - name: publish-docs\n    post-review: true\n  - name: integration\n", 1)
POST_REVIEW = POST_REVIEW.replace("pipelines: {check: [unit], gate: [unit]}",
                                  "pipelines: {check: [unit], gate: [unit], publish: [publish-docs]}", 1)


def test_a_post_review_job_runs_in_a_post_review_pipeline(tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """Zuul's job doc (post-review: the job may only be used in a pipeline whose post-review is true): org/b's
    publish-docs runs in the post-review pipeline `publish`, and check still runs only unit."""
    assert "publish: [publish-docs]" in POST_REVIEW and "post-review: true\n  - name: integration" in POST_REVIEW
    gate = GateHarness(tmp_path, zk_factory, layout_text=POST_REVIEW)
    try:
        b = gate.change("org/b")
        gate.settle()
        gate.comment(b, "publish")
        gate.settle()
        assert gate.history("publish") == [("publish-docs", "SUCCESS", "1,1")]
        assert gate.history("check") == [("unit", "SUCCESS", "1,1")]
        assert any(m.startswith("Published.") for m in gate.reports(b, "publish"))
    finally:
        gate.stop()


@pytest.mark.xfail(strict=True, reason="gatekeeper refuses a layout that lists a post-review job in a pre-review "
                                       "pipeline; Zuul loads it and reports each item it would run on with 'Unable "
                                       "to freeze job graph: Pre-review pipeline check does not allow post-review "
                                       "job'")
def test_a_post_review_job_listed_in_a_pre_review_pipeline_is_an_error_of_the_item_not_of_the_layout() -> None:
    """Zuul's model (freezeJob raises JobConfigurationError "Pre-review pipeline %s does not allow post-review job
    %s"; the manager's prepareItem sets it as the item's config error): the configuration loads; the mistake is
    reported on the changes it would test."""
    from gatekeeper.config.layout import parse_layout

    text = POST_REVIEW.replace("pipelines: {check: [unit], gate: [unit], publish: [publish-docs]}",
                               "pipelines: {check: [unit, publish-docs], gate: [unit]}")
    assert "check: [unit, publish-docs]" in text
    layout = parse_layout({"layout.yaml": text})
    assert "check" in layout.pipelines


@pytest.mark.xfail(strict=True, reason="an item whose project a reload leaves without jobs in the pipeline is told "
                                       "it was removed through the dequeue reporter; Zuul reports it through the "
                                       "no-jobs reporters, which the gate does not have, so it says nothing")
def test_an_item_a_reload_leaves_without_jobs_leaves_through_the_no_jobs_reporters(gate: GateHarness) -> None:
    """Zuul's reconfiguration re-enqueues each item (reEnqueueItem) and freezes its job graph anew; an item with no
    job left is reported with the pipeline's no-jobs actions (manager _reportItem: "No jobs for change") and leaves.
    B's gate jobs are removed while it runs: B leaves, told nothing more than its start."""
    b = gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(b)
    gate.settle()
    text = gate.layout_path.read_text()
    jobs = "    pipelines: {check: [unit], gate: [unit]}\n"
    assert jobs in text
    gate.layout_path.write_text(text.replace(jobs, "    pipelines: {check: [unit], gate: []}\n", 1))
    assert gate.schedulers[0].reload() == ""
    gate.settle()
    assert gate.gate_queue() == [] and gate.executor.held() == []
    assert gate.reports(b) == ["Starting gate jobs."]


def test_a_new_patch_set_a_person_merged_at_once_removes_the_old_one_and_restarts_those_behind(
        gate: GateHarness) -> None:
    """Zuul's scheduler removes the old patch set's item on the new patch set's event (removeOldVersionsOfChange)
    and the items behind it restart (cancelJobs): they were built on patch set 1, and the branch now holds patch
    set 2. A new patch set of A, merged by Rita before the scheduler reads the event: B does not keep its build on
    1,1, and merges after a build on the branch."""
    a, b = two_gated_and_held(gate)
    gate.sim.create_patchset(a, files={"a2.txt": "v2\n"})
    gate.sim.review(a, "rita", labels={"Code-Review": 2, "Approved": 1, "Verified": 2})
    gate.sim.submit(a, "rita")
    gate.settle()
    assert "1,1 2,1" not in held_changes(gate) and "2,1" in held_changes(gate)
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
    assert ("unit", "SUCCESS", "2,1") in gate.history("gate")
