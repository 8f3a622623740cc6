"""Zuul's documented gate behaviour, scenario by scenario, over real wires: what the dependent pipeline does with a
failure in the middle, a new patch set, an abandon, a vote taken back, a Depends-On or a git parent approved out of
order, a merge conflict and the window. Each docstring names the Zuul page or test the expectation comes from."""

from __future__ import annotations

from tests.functional.gate_harness import GateHarness


def once_each(gate: GateHarness, change, verdict: str) -> None:
    """The change was told it started once and got its verdict once (Zuul reports start only once per item and
    reports the item once, when it leaves the head of the queue)."""
    reports = [r for r in gate.reports(change) if not r.startswith("Change has been successfully merged")]  # Gerrit's
    assert reports.count("Starting gate jobs.") == 1, reports
    assert sum(r.startswith(verdict) for r in reports) == 1, reports
    assert len(reports) == 2, reports


def held_changes(gate: GateHarness) -> list[str]:
    return sorted(r.changes for r in gate.executor.held())


def test_b_fails_in_the_middle_a_merges_and_c_is_retested_without_b(gate: GateHarness) -> None:
    """Zuul's gating doc (the nearest non-failing item): A, B, C approved; B's job fails; C is tested again on A
    alone, A and C merge, B is reported Verified -2 naming its failed job; nothing is reported twice."""
    a, b, c = (gate.change("org/b", name) for name in ("A", "B", "C"))
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert held_changes(gate) == ["1,1", "1,1 2,1", "1,1 2,1 3,1"]
    gate.executor.release("unit", b.number, "FAILURE")
    gate.settle()
    assert held_changes(gate) == ["1,1", "1,1 3,1"]  # C moved behind A, its build on B aborted
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert sorted(gate.history("gate")) == [("unit", "FAILURE", "1,1 2,1"), ("unit", "SUCCESS", "1,1"),
                                            ("unit", "SUCCESS", "1,1 3,1")]
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "NEW", "MERGED"]
    assert gate.merge_order() == [1, 3]
    assert gate.ci_votes(b) == {"Verified": -2}
    failure = [r for r in gate.reports(b) if r.startswith("Build failed")][0]
    assert "- unit https://" in failure and ": FAILURE" in failure
    once_each(gate, a, "Build succeeded")
    once_each(gate, b, "Build failed")
    once_each(gate, c, "Build succeeded")


def test_a_new_patch_set_in_the_middle_removes_it_and_the_changes_behind_restart(gate: GateHarness) -> None:
    """Zuul's pipeline doc, dequeue-on-new-patchset (default true): B's new patch set removes B from the gate; C
    restarts on A; the new patch set is checked, not gated (its approval was on the old one)."""
    a, b, c = (gate.change("org/b", name) for name in ("A", "B", "C"))
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.sim.create_patchset(b, files={"b2.txt": "v2\n"})
    gate.settle()
    assert gate.gate_queue() == ["1,1", "3,1"]
    assert held_changes(gate) == ["1,1", "1,1 3,1", "2,2"]  # 2,2 in check
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "NEW", "MERGED"]
    assert ("unit", "SUCCESS", "2,2") in gate.history("check")
    assert not any("2," in changes for _, _, changes in gate.history("gate"))
    assert "Removed because a new patch set (2,2) was uploaded." in gate.reports(b)[-1]


def test_an_abandoned_change_leaves_check_without_a_report(gate: GateHarness) -> None:
    """Zuul's test_abandoned_check: an abandoned change is dequeued from check; its start is all it was told."""
    gate.executor.hold = True
    a = gate.change("org/a")
    gate.settle()
    assert gate.gate_queue("check") == ["1,1"]
    gate.sim.abandon(a, "jane", "not needed")
    gate.settle()
    assert gate.gate_queue("check") == [] and gate.executor.held() == []
    gate.executor.hold = False
    gate.settle()
    assert gate.reports(a, "check") == ["Starting check jobs."]
    assert gate.history() == []


def test_a_negative_review_by_another_reviewer_keeps_the_change_in_the_gate(gate: GateHarness) -> None:
    """Zuul re-checks, while an item is queued, that Gerrit would still merge it (manager: "can no longer merge");
    Jane's Code-Review -1 next to Rita's +2 blocks nothing, so A stays and merges."""
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.sim.review(a, "jane", labels={"Code-Review": -1})
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))


def test_a_code_review_minus_two_in_the_gate_removes_the_change_and_the_rest_merges(gate: GateHarness) -> None:
    """Zuul dequeues an item that can no longer merge (Rita's -2 replaces her +2); gatekeeper checks the
    pipeline's require as long as the item stays (docs/zuul-compatibility.md). B restarts without A and merges."""
    a, b = gate.change("org/b", "A"), gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    gate.sim.review(a, "rita", labels={"Code-Review": -2})
    gate.settle()
    assert gate.gate_queue() == ["2,1"]
    assert held_changes(gate) == ["2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    assert gate.reports(a)[-1].startswith("This change is unable to merge due to a missing merge requirement.\n\n"
                                          "It does not have Code-Review: +2.")
    assert gate.ci_votes(a) == {"Verified": -2}


def test_a_depends_on_approved_alone_waits_and_both_merge_in_order_once_its_need_is_approved(
        gate: GateHarness) -> None:
    """Zuul's test_crd_gate_reverse: B (org/a) Depends-On A (org/b); B approved alone does not enter the gate;
    approving A then enqueues A and, behind it, B; both merge, A first."""
    a = gate.change("org/b", "Add API")
    b = gate.change("org/a", "Use API", depends_on=(a,))
    gate.settle()
    gate.approve(b)
    gate.settle()
    assert gate.gate_queue() == [] and gate.history("gate") == []
    assert gate.status(b) == "NEW"
    gate.approve(a)
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "MERGED"]
    assert gate.merge_order() == [1, 2]
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))


def test_a_git_parent_and_its_child_approved_enter_the_gate_in_order(gate: GateHarness) -> None:
    """Zuul's dependent manager enqueues a change's git parent ahead of it: B on top of A, both approved child
    first, are gated as A then B."""
    a = gate.change("org/b", "A")
    b = gate.change("org/b", "B", parent=a)
    gate.settle()
    gate.executor.hold = True
    gate.approve(b, a)
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.merge_order() == [1, 2]
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))
    once_each(gate, a, "Build succeeded")
    once_each(gate, b, "Build succeeded")


def test_a_change_conflicting_only_with_a_failed_change_ahead_is_merged_again_and_tested(gate: GateHarness) -> None:
    """Zuul's manager: a merge conflict makes an item failing but it is reported only at the head; when the item
    ahead fails, the conflicting item's base is no longer the nearest non-failing item, so it is reset, merged again
    on the branch and tested. A fails; B, which conflicted only with A, merges."""
    a = gate.change("org/b", "A", files={"README": "from a\n"})
    b = gate.change("org/b", "B", files={"README": "from b\n"})
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert held_changes(gate) == ["1,1"]  # B did not merge onto A: no build
    gate.executor.release("unit", a.number, "FAILURE")
    gate.settle()
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "MERGED"]
    gate.assert_history(("unit", "FAILURE", "1,1"), ("unit", "SUCCESS", "2,1"))
    assert not any("could not be merged" in r for r in gate.reports(b))


def test_a_merge_conflict_is_reported_as_such_and_the_others_merge(gate: GateHarness) -> None:
    """Zuul's pipeline doc, merge-conflict reporters: B conflicts with A ahead of it; B is told so by the
    merge-conflict reporter (Verified -2 here), once, without jobs; A and C merge with C tested on A."""
    a = gate.change("org/b", "A", files={"README": "from a\n"})
    b = gate.change("org/b", "B", files={"README": "from b\n"})
    c = gate.change("org/b", "C", files={"c.txt": "c\n"})
    gate.settle()
    gate.approve(a, b, c)
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["MERGED", "NEW", "MERGED"]
    assert gate.ci_votes(b) == {"Verified": -2}
    assert gate.reports(b) == [gate.reports(b)[0]] and \
        gate.reports(b)[0].startswith("This change could not be merged onto the changes ahead of it.")
    assert sorted(gate.history("gate")) == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 3,1")]


def test_the_window_limits_the_changes_under_test_and_grows_by_one_with_each_merge(gate: GateHarness) -> None:
    """Zuul's queue window (linear increase by 1, builds of items behind a merged item are kept): with window 2
    and four changes two are tested; A merges, the window is 3, C and D start, and B's build goes on."""
    changes = [gate.change("org/s", name) for name in "ABCD"]
    gate.settle()
    gate.executor.hold = True
    gate.approve(*changes)
    gate.settle()
    assert held_changes(gate) == ["1,1", "1,1 2,1"]
    assert gate.reports(changes[2]) == gate.reports(changes[3]) == []  # outside the window: not started
    gate.executor.release("unit", 1)
    gate.settle()
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 3
    assert sorted(changes.split()[-1] for changes in held_changes(gate)) == ["2,1", "3,1", "4,1"]
    assert "1,1 2,1" in held_changes(gate)  # B's build, on A that merged, was not restarted
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(c) for c in changes] == ["MERGED"] * 4
    assert not [r for r in gate.executor.history if r.result == "ABORTED"]
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 6


def test_a_merge_conflict_shrinks_the_window_as_a_failure_does(gate: GateHarness) -> None:
    """Zuul's manager decreases the window for every item reported without success, a merge conflict included
    (reportItem: not succeeded -> decreaseWindowSize): B conflicts with A; the window goes 2 -> 3 (A) -> 1 (B)."""
    a = gate.change("org/s", "A", files={"README": "from a\n"})
    b = gate.change("org/s", "B", files={"README": "from b\n"})
    gate.settle()
    gate.approve(a, b)
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["MERGED", "NEW"]
    assert gate.schedulers[0].load_state("gate").queues["small"].window == 1


def test_a_new_patch_set_of_a_parent_removes_it_and_its_child_from_the_gate(gate: GateHarness) -> None:
    """Zuul's test_dependent_behind_dequeue: B is A's git child; A's new patch set dequeues A, and B, which needs
    A's old patch set, can no longer merge and leaves too; C restarts alone and merges."""
    a = gate.change("org/b", "A")
    b = gate.change("org/b", "B", parent=a)
    c = gate.change("org/b", "C")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    gate.sim.create_patchset(a, files={"a2.txt": "v2\n"})
    gate.settle()
    assert gate.gate_queue() == ["3,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.status(x) for x in (a, b, c)] == ["NEW", "NEW", "MERGED"]
    gate.assert_history(("unit", "SUCCESS", "3,1"))


def test_a_change_whose_needed_change_failed_is_reported_through_the_failure_reporters(gate: GateHarness) -> None:
    """Zuul's manager reports an item dequeued for a needed change (setDequeuedNeedingChange: "Change <url> is
    needed.") with the pipeline's failure actions: B, Depends-On A, gets Verified -2 when A fails."""
    a = gate.change("org/b", "A")
    b = gate.change("org/a", "B", depends_on=(a,))
    gate.settle()
    gate.executor.fail("unit", a.number)
    gate.approve(a, b)
    gate.settle()
    assert [gate.status(x) for x in (a, b)] == ["NEW", "NEW"]
    assert gate.ci_votes(a) == {"Verified": -2}
    assert gate.reports(b)[-1].startswith("This change depends on a change that failed to merge.\n\n"
                                          "It depends on change 1,1, which failed (unit: FAILURE).")
    assert gate.ci_votes(b) == {"Verified": -2}
    assert sum(r.startswith("This change depends on") for r in gate.reports(b)) == 1

