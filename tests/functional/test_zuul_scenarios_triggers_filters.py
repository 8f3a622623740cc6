"""Zuul's documented trigger filters and event handling, third round, over real wires: a trigger's username,
email, approval and branch filters, a restored change, a work-in-progress change and a topic in the gate, and
events about projects or branches the layout gives no jobs. Each docstring names the Zuul page, test or source the
expectation comes from."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

CHECK_TRIGGER = "        - event: patchset-created\n        - event: comment-added\n" \
                "          comment: (?im)^\\s*recheck\\s*$\n"
GATE_TRIGGER = "        - event: comment-added\n          approval: [{Approved: 1}]\n"


def with_check_trigger(trigger: str) -> str:
    assert GATE_LAYOUT.count(CHECK_TRIGGER) == 1
    return GATE_LAYOUT.replace(CHECK_TRIGGER, trigger, 1)


@pytest.fixture
def make(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[Callable[[str], GateHarness]]:
    """A gate harness on the layout given; torn down after the test."""
    made: list[GateHarness] = []

    def start(layout: str) -> GateHarness:
        made.append(GateHarness(tmp_path / str(len(made)), zk_factory, layout_text=layout))
        return made[-1]

    try:
        yield start
    finally:
        for harness in made:
            harness.stop()


# -- username, email, approval ---------------------------------------------------------------------------------------

def test_a_username_filter_takes_a_recheck_from_a_matching_account_only(make) -> None:
    """Zuul's Gerrit trigger doc (`username`: "only match if the event was caused by a user whose username matches
    this regular expression"): with `username: ^jane$` on the recheck trigger, Rita's recheck runs nothing and
    Jane's runs check again."""
    gate = make(with_check_trigger(CHECK_TRIGGER + "          username: ^jane$\n"))
    a = gate.change("org/c")
    gate.settle()
    gate.sim.review(a, "rita", message="recheck")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")]
    gate.comment(a, "recheck")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")] * 2


def test_an_email_filter_takes_an_upload_from_a_matching_account_only(make) -> None:
    """Zuul's Gerrit trigger doc (`email`: "only match if the event was caused by a user whose email matches this
    regular expression"; GerritEventFilter.matches searches `event.account['email']`): Jane's upload is checked,
    Rita's is not."""
    gate = make(with_check_trigger("        - event: patchset-created\n          email: ^jane@example\\.com$\n"))
    gate.change("org/c", "Jane's")
    gate.sim.create_change("org/c", "Rita's", owner="rita")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")]


def test_an_approval_trigger_with_a_username_filter_gates_on_the_named_reviewers_approval_only(make) -> None:
    """Zuul's Gerrit trigger doc (`approval` matches a vote cast with the event; `username` the event's author;
    both must hold): with `username: ^rita$` on the gate's trigger, Jane's Approved +1 gates nothing; Rita's
    does, and the change merges."""
    layout = GATE_LAYOUT.replace(GATE_TRIGGER, GATE_TRIGGER + "          username: ^rita$\n", 1)
    assert layout != GATE_LAYOUT
    gate = make(layout)
    a = gate.change("org/b")
    gate.settle()
    gate.sim.approve(a, "jane")
    gate.settle()
    assert gate.gate_queue() == [] and gate.status(a) == "NEW" and gate.history("gate") == []
    gate.sim.approve(a, "rita")
    gate.settle()
    assert gate.status(a) == "MERGED"
    assert gate.history("gate") == [("unit", "SUCCESS", "1,1")]


# -- branch ----------------------------------------------------------------------------------------------------------

def branch_changes(gate: GateHarness) -> dict[str, int]:
    """A change of org/c on master, stable/1 and feature/stable/1; their numbers by branch."""
    for branch in ("stable/1", "feature/stable/1"):
        gate.sim.create_branch("org/c", branch)
    return {branch: gate.sim.create_change("org/c", branch, branch=branch, owner="jane").number
            for branch in ("master", "stable/1", "feature/stable/1")}


def checked(gate: GateHarness, numbers: dict[str, int]) -> list[str]:
    ran = {r.change for r in gate.executor.history if r.pipeline == "check"}
    return [branch for branch, number in numbers.items() if number in ran]


def test_an_anchored_branch_filter_checks_only_the_branches_it_matches(make) -> None:
    """Zuul's Gerrit trigger doc (`branch`: "only match if the event is for a branch matching this regular
    expression"): `branch: ^stable/.*` checks the stable/1 change, not master's nor feature/stable/1's."""
    gate = make(with_check_trigger("        - event: patchset-created\n          branch: ^stable/.*\n"))
    numbers = branch_changes(gate)
    gate.settle()
    assert checked(gate, numbers) == ["stable/1"]


def test_a_branch_filter_is_matched_at_the_start_of_the_branch_as_zuul_does(make) -> None:
    """Zuul's GerritEventFilter._checkEventBranch (`branch.match(event_branch)`, anchored at the start):
    `branch: stable/.*` without a caret still checks stable/1 only; feature/stable/1 does not match."""
    gate = make(with_check_trigger("        - event: patchset-created\n          branch: stable/.*\n"))
    numbers = branch_changes(gate)
    gate.settle()
    assert checked(gate, numbers) == ["stable/1"]


# -- restored, work in progress, topics ------------------------------------------------------------------------------

def test_a_restored_change_is_checked_again_where_the_layout_triggers_on_change_restored(make) -> None:
    """Zuul's Gerrit trigger doc (event `change-restored`) and the reference layout's check trigger: A is checked,
    abandoned and restored; the restore runs check again and votes anew."""
    gate = make(with_check_trigger(CHECK_TRIGGER + "        - event: change-restored\n"))
    a = gate.change("org/c")
    gate.settle()
    gate.sim.abandon(a, "jane", "later")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")]
    gate.sim.restore(a, "jane", "now")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")] * 2
    assert gate.reports(a, "check").count("Starting check jobs.") == 2
    assert gate.ci_votes(a) == {"Verified": 1}


def test_a_restore_without_a_change_restored_trigger_runs_nothing(gate: GateHarness) -> None:
    """Zuul's pipeline triggers: only the events a layout lists enqueue; the shared layout's check has no
    change-restored trigger."""
    a = gate.change("org/c")
    gate.settle()
    gate.sim.abandon(a, "jane", "later")
    gate.settle()
    gate.sim.restore(a, "jane", "now")
    gate.settle()
    assert gate.history("check") == [("unit", "SUCCESS", "1,1")]


def test_a_work_in_progress_change_approved_does_not_enter_the_gate_nor_is_told_anything(gate: GateHarness) -> None:
    """Zuul's dependent manager enqueues only a change its source can merge (Gerrit: a work-in-progress change
    cannot be submitted) and says nothing when it cannot; gatekeeper's dependent pipeline refuses WIP by default.
    A, marked WIP, is approved: no gate run, no gate report, not merged."""
    a = gate.change("org/b")
    gate.settle()
    gate.sim.set_wip(a, True, "jane")
    gate.settle()
    gate.approve(a)
    gate.settle()
    assert gate.gate_queue() == [] and gate.history("gate") == []
    assert gate.status(a) == "NEW" and gate.reports(a) == []


def test_changes_sharing_a_topic_are_tested_and_gated_independently(gate: GateHarness) -> None:
    """Zuul's queue doc (`dependencies-by-topic`, false by default) and gating doc (dependencies come from git
    parents and Depends-On): A and B share topic "feature"; each is checked alone, and B approved alone is gated
    alone and merges while A stays open."""
    a = gate.sim.create_change("org/b", "A", owner="jane", topic="feature")
    b = gate.sim.create_change("org/b", "B", owner="jane", topic="feature")
    gate.settle()
    assert sorted(gate.history("check")) == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1")]
    gate.approve(b)
    gate.settle()
    assert (gate.status(a), gate.status(b)) == ("NEW", "MERGED")
    assert gate.history("gate") == [("unit", "SUCCESS", "2,1")]


# -- projects and branches without jobs ------------------------------------------------------------------------------

def test_events_for_a_project_the_layout_does_not_know_are_ignored_quietly(gate: GateHarness, caplog) -> None:
    """Zuul's scheduler skips a trigger event whose project no tenant holds (nothing enqueued, nothing reported,
    no error): a change of org/unknown uploaded, rechecked and approved runs nothing, hears nothing, and
    no error is logged."""
    gate.sim.create_project("org/unknown")
    caplog.set_level(logging.INFO)
    a = gate.change("org/unknown")
    gate.settle()
    gate.comment(a, "recheck")
    gate.approve(a)
    gate.settle()
    assert gate.history() == [] and gate.gate_queue() == gate.gate_queue("check") == []
    assert gate.ci_messages(a) == [] and gate.status(a) == "NEW"
    # (gatekeeper's own log: kazoo's clients of other tests in this process may log a dropped connection meanwhile)
    assert [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("gatekeeper")] == []


# org/c's only check job runs on stable/ branches.
NO_MASTER_JOBS = GATE_LAYOUT.replace(
    "  - name: unit\n", "  - name: unit\n  - name: stable-unit\n    branches: ^stable/\n", 1).replace(
    "queue: other\n    pipelines: {check: [unit], gate: [unit]}",
    "queue: other\n    pipelines: {check: [stable-unit], gate: [unit]}", 1)


def test_a_change_to_a_branch_none_of_the_projects_jobs_run_on_is_not_enqueued_nor_told(make) -> None:
    """Zuul's job doc (`branches`) and manager (an item whose job graph is empty is not enqueued without a no-jobs
    reporter): org/c's only check job runs on stable/ branches; its master change is not checked nor told
    anything; its stable/1 change is."""
    assert NO_MASTER_JOBS.count("stable-unit") == 2
    gate = make(NO_MASTER_JOBS)
    gate.sim.create_branch("org/c", "stable/1")
    a = gate.change("org/c", "master change")
    b = gate.sim.create_change("org/c", "stable change", branch="stable/1", owner="jane")
    gate.settle()
    assert gate.history("check") == [("stable-unit", "SUCCESS", "2,1")]
    assert gate.ci_messages(a) == [] and gate.gate_queue("check") == []
    assert gate.ci_votes(b) == {"Verified": 1}
