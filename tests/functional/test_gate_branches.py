"""Branch-aware jobs and per-branch gate queues, over real wires, as Zuul documents them: a queue is one queue across
branches unless it is `per-branch`; a per-branch queue gates each branch on its own (a stable failure never resets
master); jobs limited to some branches run only there; each change merges onto its own branch; a Depends-On to a
change on another branch gates both together in a shared queue, and waits for it to merge across per-branch
queues; a project without a queue gates in a queue of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.models.pipeline import Item
from gatekeeper.sim.gerrit import Change
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import PROJECTS, GateHarness
from tests.layouts import GATE_LAYOUT

STABLE = "stable/2024.1"
FAILED = "Build failed (gate pipeline).\n\nWarning:\n  "  # Zuul's report of a change that cannot enter: its warning
LAYOUT = GATE_LAYOUT.replace("  - name: integrated\n", "  - name: integrated\n    per-branch: true\n", 1).replace(
    "  - name: unit\n", """  - name: unit
    label: ubuntu-noble
    variants:
      - branches: stable/
        label: ubuntu-jammy
        timeout: 1800
        vars: {PYTHON: python3.10}
  - name: grenade
    branches: [stable/]
    label: ubuntu-jammy
""", 1).replace("pipelines: {check: [unit], gate: [unit, integration]}",
                "pipelines: {check: [unit], gate: [unit, integration, grenade]}", 1) + """
nodepool:
  labels:
    - {name: ubuntu-noble}
    - {name: ubuntu-jammy}
  providers:
    - name: static
      driver: static
      hosts:
        - {name: noble-1, address: 169.254.1.1, labels: [ubuntu-noble]}
        - {name: jammy-1, address: 169.254.1.2, labels: [ubuntu-jammy]}
"""


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    harness.sim.create_branch("org/a", STABLE)
    harness.sim.create_branch("org/b", STABLE)
    try:
        yield harness
    finally:
        harness.stop()


def labels(gate: GateHarness, change) -> dict[str, str]:
    return {r.job: r.label for r in gate.executor.history if r.pipeline == "gate" and r.change == change.number}


def test_master_and_stable_changes_gate_side_by_side_each_on_its_own_image(gate: GateHarness) -> None:
    master = gate.change("org/a", "Master change")
    stable = gate.sim.create_change("org/a", "Stable fix", branch=STABLE, owner="jane")
    gate.settle()
    gate.approve(master, stable)
    gate.settle()
    assert [gate.status(c) for c in (master, stable)] == ["MERGED", "MERGED"]
    # one queue per branch: neither change was tested on top of the other
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("integration", "SUCCESS", "1,1"),
                        ("unit", "SUCCESS", "2,1"), ("integration", "SUCCESS", "2,1"), ("grenade", "SUCCESS", "2,1"))
    assert labels(gate, master) == {"unit": "ubuntu-noble", "integration": ""}
    assert labels(gate, stable) == {"unit": "ubuntu-jammy", "integration": "", "grenade": "ubuntu-jammy"}


def test_a_stable_failure_does_not_reset_the_master_queue(gate: GateHarness) -> None:
    stable = gate.sim.create_change("org/a", "Broken stable fix", branch=STABLE, owner="jane")
    master_a = gate.change("org/a", "Master A")
    master_b = gate.change("org/b", "Master B")
    gate.settle()
    gate.executor.fail("unit", stable.number)
    gate.approve(stable, master_a, master_b)
    gate.settle()
    assert gate.status(stable) == "NEW" and gate.ci_votes(stable) == {"Verified": -2}
    assert [gate.status(c) for c in (master_a, master_b)] == ["MERGED", "MERGED"]
    master_builds = [(r.job, r.result, r.changes) for r in gate.executor.history
                     if r.pipeline == "gate" and r.change in (master_a.number, master_b.number)]
    # tested once each, on master alone: the stable failure reset nothing
    assert sorted(master_builds) == [("integration", "SUCCESS", "2,1"), ("unit", "SUCCESS", "2,1"),
                                     ("unit", "SUCCESS", "2,1 3,1")]


def test_the_variant_and_its_settings_reach_the_build_request(gate: GateHarness) -> None:
    layout = gate.load_layout()
    job = layout.jobs["unit"].for_branch(STABLE)
    assert (job.label, job.timeout, job.vars, job.variant) == ("ubuntu-jammy", 1800, {"PYTHON": "python3.10"},
                                                               "stable/")
    assert layout.jobs["unit"].for_branch("master").variant == ""
    assert layout.jobs["grenade"].for_branch("master") is None
    assert layout.projects["org/a"].jobs_on_branch("gate", "master", layout.jobs) == ("unit", "integration")


def test_a_variant_without_branches_is_refused_with_its_line() -> None:
    text = GATE_LAYOUT.replace("  - name: unit\n", "  - name: unit\n    variants:\n      - {timeout: 60}\n", 1)
    with pytest.raises(ConfigErrors) as exc:
        parse_layout({"layout.yaml": text})
    assert str(exc.value) == 'layout.yaml:42: jobs[0] (unit).variants[0]: missing required key "branches"'


def test_a_branch_pattern_that_is_no_regular_expression_is_refused() -> None:
    text = GATE_LAYOUT.replace("  - name: unit\n", "  - name: unit\n    branches: ['stable/(']\n", 1)
    with pytest.raises(ConfigErrors) as exc:
        parse_layout({"layout.yaml": text})
    assert str(exc.value).startswith("layout.yaml:41: job \"unit\": branches: 'stable/(' is not a regular expression")


# -- one queue across branches, or one per branch ---------------------------------------------------------------------
SHARED = LAYOUT.replace("    per-branch: true\n", "", 1)
REMOVED = "This change was removed from the gate queue.\n\n"


def harness(tmp_path, zk_factory: Callable[..., ZKClient], layout: str,
            projects: tuple[str, ...] = PROJECTS) -> GateHarness:
    gate = GateHarness(tmp_path, zk_factory, layout_text=layout, projects=projects)
    for project in projects:
        gate.sim.create_branch(project, STABLE)
    return gate


@pytest.fixture
def shared(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert SHARED != LAYOUT
    gate = harness(tmp_path, zk_factory, SHARED)
    try:
        yield gate
    finally:
        gate.stop()


def items(gate: GateHarness) -> dict[str, Item]:
    """The gate's items by change key, as the scheduler stored them in ZooKeeper."""
    return {item.key: item for item in gate.schedulers[0].load_state("gate").all_items()}


def held(gate: GateHarness, job: str = "unit") -> list[str]:
    return sorted(r.changes for r in gate.executor.held() if r.job == job)


def stable_change(gate: GateHarness, project: str = "org/a", subject: str = "Stable fix", **kwargs) -> Change:
    return gate.sim.create_change(project, subject, branch=STABLE, owner="jane", **kwargs)


def test_without_per_branch_one_queue_gates_both_branches_and_a_stable_failure_resets_master(
        shared: GateHarness) -> None:
    """Zuul's default (all branches in one queue): stable S, master A and B approved in that order share the
    integrated queue; S fails; A and B restart without it and merge."""
    s = stable_change(shared)
    a = shared.change("org/a", "Master A")
    b = shared.change("org/b", "Master B")
    shared.settle()
    shared.executor.hold = True
    shared.approve(s, a, b)
    shared.settle()
    assert set(items(shared)) == {"1,1", "2,1", "3,1"}
    assert {item.queue for item in items(shared).values()} == {"integrated"}
    assert held(shared) == ["1,1", "1,1 2,1", "1,1 2,1 3,1"]
    shared.executor.release("unit", s.number, "FAILURE")
    shared.settle()
    assert held(shared) == ["2,1", "2,1 3,1"]  # reset: tested again without the stable change
    shared.executor.hold = False
    shared.executor.release()
    shared.settle()
    assert [shared.status(c) for c in (s, a, b)] == ["NEW", "MERGED", "MERGED"]
    assert shared.ci_votes(s) == {"Verified": -2}


def test_per_branch_queues_are_named_by_branch_and_use_their_layout_queues_window(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """The integrated queue, per branch, with a window of 2 growing by 3: each branch's queue starts 2 wide and grows
    by 3 on a merge (not by the pipeline's 1)."""
    window = "    window: {initial: 2, floor: 1, increase: 3, decrease-factor: 2}\n"
    layout = LAYOUT.replace("    per-branch: true\n", "    per-branch: true\n" + window, 1)
    assert layout != LAYOUT
    gate = harness(tmp_path, zk_factory, layout)
    try:
        master = [gate.change("org/b", f"Master {n}") for n in range(3)]
        stable = [stable_change(gate, "org/b", f"Stable {n}") for n in range(3)]
        gate.settle()
        gate.executor.hold = True
        gate.approve(*master, *stable)
        gate.settle()
        queues = gate.schedulers[0].load_state("gate").queues
        assert sorted(queues) == ["integrated (master)", f"integrated ({STABLE})"]
        assert [queues[q].window for q in sorted(queues)] == [2, 2]
        # two of each branch's three changes are tested, each queue on its own
        assert held(gate) == ["1,1", "1,1 2,1", "4,1", "4,1 5,1"]
        gate.executor.release("unit", master[0].number)
        gate.settle()
        queues = gate.schedulers[0].load_state("gate").queues
        assert (queues["integrated (master)"].window, queues[f"integrated ({STABLE})"].window) == (5, 2)
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(c) for c in master + stable] == ["MERGED"] * 6
    finally:
        gate.stop()


# -- merging onto the right branch --------------------------------------------------------------------------------
def test_each_change_is_merged_onto_its_own_branch_with_required_projects_at_that_branch(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """Stable S and master M of org/a share a queue: M is tested on master with M and on stable with S; the
    integration job's required project org/c is checked out at the change's branch; each lands on its own."""
    layout = SHARED.replace("  - name: integration\n", "  - name: integration\n    required-projects: [org/c]\n", 1)
    assert layout != SHARED
    gate = harness(tmp_path, zk_factory, layout)
    try:
        gate.sim.create_change("org/c", "Unrelated, not approved")
        s = stable_change(gate, files={"stable.txt": "s\n"})
        m = gate.change("org/a", "Master M", files={"master.txt": "m\n"})
        gate.settle()
        gate.executor.hold = True
        gate.approve(s, m)
        gate.settle()
        state = items(gate)
        stable_state, master_state = state["2,1"].repo_state["branches"], state["3,1"].repo_state["branches"]
        c_tips = {"master": gate.sim.branch_tip("org/c", "master"), STABLE: gate.sim.branch_tip("org/c", STABLE)}
        assert stable_state["org/c"] == {STABLE: c_tips[STABLE]}
        assert master_state["org/c"] == {STABLE: c_tips[STABLE], "master": c_tips["master"]}
        assert set(stable_state["org/a"]) == {STABLE}
        assert master_state["org/a"][STABLE] == stable_state["org/a"][STABLE]  # S ahead of M, on stable
        assert gate.sim.project("org/a").repo.git("show", "--format=", "--name-only",
                                                   master_state["org/a"]["master"]).split() == ["master.txt"]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(c) for c in (s, m)] == ["MERGED", "MERGED"]
        assert "Stable fix" in gate.branch_log("org/a", STABLE) and "Master M" not in gate.branch_log("org/a", STABLE)
        assert "Master M" in gate.branch_log("org/a") and "Stable fix" not in gate.branch_log("org/a")
    finally:
        gate.stop()


# -- Depends-On across branches -------------------------------------------------------------------------------------
def test_a_depends_on_to_a_change_on_another_branch_gates_both_in_one_shared_queue(shared: GateHarness) -> None:
    """Master M (org/b) Depends-On stable S (org/a). M is approved first: it waits for S, follows it when S is
    approved, is tested on S, and both merge, S first."""
    s = stable_change(shared)
    m = shared.change("org/b", "Master M needs S", depends_on=(s,))
    shared.settle()
    shared.approve(m)
    shared.settle()
    assert shared.gate_queue() == []
    shared.approve(s)
    shared.settle()
    assert [shared.status(c) for c in (s, m)] == ["MERGED", "MERGED"]
    shared.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))
    assert shared.merge_order() == [s.number, m.number]


def test_a_depends_on_across_per_branch_queues_is_refused_until_the_change_it_needs_merged(gate: GateHarness) -> None:
    """Per-branch queues: master M Depends-On stable S. They cannot gate together: M is told why, and enters once S
    merged."""
    s = stable_change(gate)
    m = gate.change("org/b", "Master M needs S", depends_on=(s,))
    gate.settle()
    gate.approve(s, m)
    gate.settle()
    assert gate.status(s) == "MERGED" and gate.status(m) == "NEW"
    assert gate.reports(m) == [f"{FAILED}Change 1 in project org/a does not share a change queue with 2 in project "
                               "org/b\n\nChange 2,1 cannot enter gate: it depends on change 1,1 in org/a, which is not "
                               f'in the same change queue ("integrated ({STABLE})", not "integrated (master)")']
    assert gate.ci_votes(m) == {"Verified": -2}  # as Zuul: through the failure reporters
    assert gate.schedulers[0].load_state("gate").waiting == {}  # it waits for no change to enter: for S to merge
    gate.sim.delete_vote(m, "rita", "Approved")  # approved again, as people do
    gate.sim.approve(m, "rita")
    gate.settle()
    assert gate.status(m) == "MERGED"
    gate.assert_history(("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1"))


def test_a_project_without_a_queue_gates_in_a_queue_of_its_own(tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    """As in Zuul: org/c names no queue, so it gates in an implicit queue of its own, named after it. A failing org/a
    change approved ahead of it does not reset it; a Depends-On from org/c to an open org/a change is refused,
    naming both queues."""
    layout = SHARED.replace("  - name: org/c\n    queue: other\n", "  - name: org/c\n", 1)
    assert layout != SHARED
    gate = harness(tmp_path, zk_factory, layout)
    try:
        a = gate.change("org/a", "A")
        c = gate.change("org/c", "C")
        d = gate.change("org/c", "D needs A", depends_on=(a,))
        gate.settle()
        gate.executor.hold = True
        gate.approve(a, c, d)
        gate.settle()
        assert {key: item.queue for key, item in items(gate).items()} == {"1,1": "integrated", "2,1": "org/c"}
        assert held(gate) == ["1,1", "2,1"]  # each tested on its own
        gate.executor.release("unit", a.number, "FAILURE")
        gate.settle()
        assert held(gate) == ["2,1"]  # not reset by the failure in the other queue
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert [gate.status(x) for x in (a, c, d)] == ["NEW", "MERGED", "NEW"]
        assert gate.reports(d) == [f"{FAILED}Change 1 in project org/a does not share a change queue with 3 in "
                                   "project org/c\n\nChange 3,1 cannot enter gate: it depends on change 1,1 in org/a, "
                                   'which is not in the same change queue ("integrated", not "org/c")']
    finally:
        gate.stop()


# -- jobs limited to branches ---------------------------------------------------------------------------------------
def test_a_change_to_a_branch_none_of_its_gate_jobs_runs_on_stays_out_and_an_operator_is_told_why(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    layout = LAYOUT.replace("    pipelines: {check: [unit], gate: [unit]}\n  - name: org/s",
                            "    pipelines: {check: [unit], gate: [grenade]}\n  - name: org/s", 1)
    assert layout != LAYOUT
    gate = harness(tmp_path, zk_factory, layout)
    try:
        m = gate.change("org/c", "Master change")
        s = stable_change(gate, "org/c")
        gate.settle()
        gate.approve(m, s)
        gate.settle()
        assert [gate.status(c) for c in (m, s)] == ["NEW", "MERGED"]
        assert gate.reports(m) == []
        assert gate.management("enqueue", "gate", change="1,1") == \
            "project org/c has no jobs in pipeline gate on branch master"
        gate.assert_history(("grenade", "SUCCESS", "2,1"))
    finally:
        gate.stop()



def test_a_depends_on_a_change_id_on_two_branches_needs_both_changes(gate: GateHarness) -> None:
    """Zuul's "multiple changes": the Change-Id of a fix names it on master and its backport on stable, and a change
    that Depends-On that Change-Id needs both. With per-branch queues, U (master) cannot gate with the backport: it
    is refused, though the master fix is in its queue, and enters once the backport merged."""
    change_id = "I" + "5" * 40
    backport = stable_change(gate, "org/a", "Fix, backported", change_id=change_id)
    fix = gate.sim.create_change("org/a", "Fix", owner="jane", change_id=change_id)
    user = gate.change("org/b", "Uses the fix", depends_on=(change_id,))
    gate.settle()
    gate.approve(fix, user)
    gate.settle()
    assert [gate.status(c) for c in (backport, fix, user)] == ["NEW", "MERGED", "NEW"]
    assert gate.reports(user) == [f"{FAILED}Change 1 in project org/a does not share a change queue with 3 in "
                                  "project org/b\n\nChange 3,1 cannot enter gate: it depends on change 1,1 in org/a, "
                                  f'which is not in the same change queue ("integrated ({STABLE})", not "integrated '
                                  '(master)")']
    gate.approve(backport)
    gate.settle()
    gate.sim.delete_vote(user, "rita", "Approved")  # approved again, as people do
    gate.approve(user)
    gate.settle()
    assert [gate.status(c) for c in (backport, fix, user)] == ["MERGED"] * 3
    assert gate.merge_order() == [fix.number, backport.number, user.number]
