"""Zuul's `serial` pipeline manager over real wires (Gerrit simulator over SSH, real ZooKeeper, merger, scheduler):
projects share queues as in the gate, but one item of a queue runs at a time, on its branch as it is."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.history.db import HistoryDB
from gatekeeper.web.server import WebService
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.history import BuildEvent
from tests.functional.gate_harness import GateHarness
from tests.functional.test_pipeline_supercedent import push_to, ref_key
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

DEPLOY = r"""
  - name: deploy
    manager: serial
    precedence: low
    trigger:
      gerrit:
        - event: comment-added
          comment: (?im)^\s*deploy\s*$
        - event: ref-updated
          ref: ^refs/heads/master$
    success: {gerrit: {labels: {}, message: Deployed.}}
    failure: {gerrit: {labels: {}, message: Deploy failed.}}
queues:"""

LAYOUT = GATE_LAYOUT.replace("\nqueues:", DEPLOY, 1).replace(
    "pipelines: {check: [unit], gate: [unit, integration]}",
    "pipelines: {check: [unit], gate: [unit, integration], deploy: [unit]}", 1).replace(
    "pipelines: {check: [unit], gate: [unit]}", "pipelines: {check: [unit], gate: [unit], deploy: [unit]}")


@pytest.fixture
def gate_layout() -> str:
    return LAYOUT


def running(gate: GateHarness) -> list[tuple[str, str]]:
    """(job, changes) of the deploy builds running now."""
    return sorted((r.job, r.changes) for r in gate.executor.held() if r.pipeline == "deploy")


def deploy_reports(gate: GateHarness, change) -> list[str]:
    return [m.split("\n\n", 1)[-1].split("\n")[0] for m in gate.ci_messages(change) if "Deploy" in m]


def test_serial_runs_one_item_of_each_shared_queue_at_a_time_on_the_branch_as_it_is(
        gate: GateHarness, tmp_path: Path) -> None:
    """A, B and D (org/a, org/b, org/a share the integrated queue) and C (org/c, queue other) are to be deployed: A
    and C run at once, B and D wait. Each success leaves one item running in the queue (no window grows), on the
    branch as it is, not on the speculative state of those ahead. The status API shows the serial pipeline's queues,
    their items in order and a window of one."""
    a, b, c, d = gate.change("org/a"), gate.change("org/b"), gate.change("org/c"), gate.change("org/a")
    gate.settle()
    gate.executor.hold = True
    for change in (a, b, c, d):
        gate.comment(change, "deploy")
    gate.settle()
    assert running(gate) == [("unit", "1,1"), ("unit", "3,1")]
    assert gate.gate_queue("deploy") == ["1,1", "2,1", "4,1", "3,1"]

    db = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    web = WebService(gate.zk_factory(), port=0, history=db, log_dir=tmp_path).start()
    try:
        with urllib.request.urlopen(f"{web.url}/api/v1/status", timeout=10) as resp:
            status = json.loads(resp.read())
        [deploy] = [p for p in status["pipelines"] if p["name"] == "deploy"]
        assert deploy["manager"] == "serial"
        queues = {q["name"]: ([i["change"]["key"] for i in q["items"]], q["window"]) for q in deploy["queues"]}
        assert queues == {"integrated": (["1,1", "2,1", "4,1"], 1), "other": (["3,1"], 1)}
    finally:
        web.stop()
        db.close()

    assert gate.executor.release(change=1) == 1
    gate.settle()
    assert running(gate) == [("unit", "2,1"), ("unit", "3,1")]  # B alone, on the branch: A is not merged onto it
    assert gate.executor.release(change=2) == 1
    gate.settle()
    assert running(gate) == [("unit", "3,1"), ("unit", "4,1")]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert sorted(gate.history("deploy")) == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1"),
                                              ("unit", "SUCCESS", "3,1"), ("unit", "SUCCESS", "4,1")]
    assert [deploy_reports(gate, x) for x in (a, b, c, d)] == [["Deployed."]] * 4
    assert gate.gate_queue("deploy") == []


def test_a_failure_in_a_serial_queue_is_reported_and_the_next_item_still_runs_across_a_scheduler_restart(
        gate: GateHarness) -> None:
    """A and B wait in the integrated queue, A running, when the scheduler is killed; a new one reads both back, A
    still running and B waiting. A fails: it is reported, and B is neither dequeued nor blamed: it runs next and
    is deployed."""
    a, b = gate.change("org/a"), gate.change("org/b")
    gate.settle()
    gate.executor.hold = True
    gate.comment(a, "deploy")
    gate.comment(b, "deploy")
    gate.settle()
    assert running(gate) == [("unit", "1,1")]
    gate.kill_scheduler(gate.schedulers[0])
    gate.start_scheduler()
    assert gate.gate_queue("deploy") == ["1,1", "2,1"]
    gate.settle()
    assert running(gate) == [("unit", "1,1")]

    assert gate.executor.release(change=1, result="FAILURE") == 1
    wait_for(lambda: running(gate) == [("unit", "2,1")], 30, "B's turn after A failed")
    assert deploy_reports(gate, a) == ["Deploy failed."]
    assert gate.gate_queue("deploy") == ["2,1"]
    gate.executor.release()
    gate.settle()
    assert gate.history("deploy") == [("unit", "FAILURE", "1,1"), ("unit", "SUCCESS", "2,1")]
    assert deploy_reports(gate, b) == ["Deployed."]
    assert gate.gate_queue("deploy") == []


def test_every_update_of_a_branch_is_deployed_in_turn(gate: GateHarness, tmp_path: Path) -> None:
    """Three pushes to master while the first one's deploy runs: unlike a supercedent pipeline, serial keeps them
    all, and each runs at exactly its own revision once the one ahead is done."""
    gate.executor.hold = True
    first = push_to(gate, tmp_path, "master", "one")
    wait_for(lambda: running(gate) == [("unit", ref_key(first))], 30, "the first push's deploy")
    second = push_to(gate, tmp_path, "master", "two")
    third = push_to(gate, tmp_path, "master", "three")
    gate.settle()
    assert gate.gate_queue("deploy") == [ref_key(first), ref_key(second), ref_key(third)]
    assert running(gate) == [("unit", ref_key(first))]
    for push, after in ((second, first), (third, second)):
        assert gate.executor.release(pipeline="deploy") == 1
        wait_for(lambda push=push: running(gate) == [("unit", ref_key(push))], 30, "the next push's deploy")
        [build] = [r for r in gate.executor.held() if r.pipeline == "deploy"]
        assert build.repo_state["branches"]["org/a"] == {"master": push}, f"not at its revision, after {after}"
    gate.executor.release()
    gate.settle()
    assert gate.history("deploy") == [("unit", "SUCCESS", ref_key(sha)) for sha in (first, second, third)]


def test_a_dependent_pipeline_made_serial_by_a_reload_keeps_its_head_running_and_starts_the_others_in_turn(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    """deploy is dependent at first: A, B and D run at once, B and D on the speculative state ahead. The layout is
    reloaded with deploy serial: A runs on, B's and D's builds are cancelled, and B then runs alone, on the
    branch as it is."""
    dependent = LAYOUT.replace("    manager: serial\n", "    manager: dependent\n", 1).replace(
        "        - event: ref-updated\n          ref: ^refs/heads/master$\n", "", 1)  # no ref items in a gate
    gate = GateHarness(tmp_path, zk_factory, layout_text=dependent)
    try:
        for project in ("org/a", "org/b"):  # a dependent pipeline takes only what Gerrit could submit (canMerge)
            gate.sim.project(project).submit_rule.clear()
        a, b, d = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
        gate.settle()
        gate.executor.hold = True
        for change in (a, b, d):
            gate.comment(change, "deploy")
        gate.settle()
        assert running(gate) == [("unit", "1,1"), ("unit", "1,1 2,1"), ("unit", "1,1 2,1 3,1")]
        gate.layout_path.write_text(LAYOUT)
        assert gate.schedulers[0].reload() == ""
        gate.settle()
        assert running(gate) == [("unit", "1,1")]
        assert gate.gate_queue("deploy") == ["1,1", "2,1", "3,1"]
        assert gate.executor.release(change=1) == 1
        gate.settle()
        assert running(gate) == [("unit", "2,1")]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert gate.history("deploy") == [("unit", "SUCCESS", key) for key in ("1,1", "2,1", "3,1")]
    finally:
        gate.stop()


def test_an_independent_pipeline_made_serial_by_a_reload_drops_the_changes_that_only_rode_along(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    """deploy is independent at first: B depends on A, so B's item tests A and B together, A riding along (not
    live). deploy is reloaded serial: A leaves without a report (it was never to be deployed) and B runs again
    alone, on the branch as it is."""
    gate = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT.replace("    manager: serial\n",
                                                                        "    manager: independent\n", 1))
    try:
        a = gate.change("org/a")
        b = gate.change("org/b", depends_on=(a,))
        gate.settle()
        gate.executor.hold = True
        gate.comment(b, "deploy")
        gate.settle()
        assert running(gate) == [("unit", "1,1 2,1")]
        gate.layout_path.write_text(LAYOUT)
        assert gate.schedulers[0].reload() == ""
        gate.settle()
        assert running(gate) == [("unit", "2,1")]
        assert gate.gate_queue("deploy") == ["2,1"]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert gate.history("deploy") == [("unit", "SUCCESS", "2,1")]
        assert deploy_reports(gate, a) == [] and deploy_reports(gate, b) == ["Deployed."]
    finally:
        gate.stop()


def test_a_change_merged_by_the_gate_is_deployed_and_told_so(tmp_path: Path,
                                                            zk_factory: Callable[..., ZKClient]) -> None:
    """deploy also runs on change-merged (as Zuul's deployment pipelines do): the gate merges A; deploy runs A's jobs
    on the branch that now holds it and reports on A; the master update A made is deployed too, in the same
    queue."""
    text = LAYOUT.replace("        - event: ref-updated\n",
                          "        - event: change-merged\n        - event: ref-updated\n", 1)
    gate = GateHarness(tmp_path, zk_factory, layout_text=text)
    try:
        a = gate.change("org/a")
        gate.settle()
        gate.approve(a)
        gate.settle()
        assert gate.status(a) == "MERGED"
        tip = gate.sim.branch_tip("org/a", "master")
        assert sorted(gate.history("deploy")) == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", ref_key(tip))]
        [change_build] = [r for r in gate.executor.history if r.pipeline == "deploy" and r.changes == "1,1"]
        assert gate.executor.requests[change_build.id].repo_state["branches"]["org/a"]["master"] == tip
        assert deploy_reports(gate, a) == ["Deployed."]
    finally:
        gate.stop()


def test_a_serial_pipeline_made_independent_by_a_reload_tests_each_waiting_change_on_its_own(
        tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> None:
    """deploy is serial at first: A runs, B and D wait in the integrated queue. The layout is reloaded with deploy
    independent: each change is tested on its own at once (none rides along on another's state), and each is
    reported."""
    gate = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        a, b, d = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
        gate.settle()
        gate.executor.hold = True
        for change in (a, b, d):
            gate.comment(change, "deploy")
        gate.settle()
        assert running(gate) == [("unit", "1,1")]
        gate.layout_path.write_text(LAYOUT.replace("    manager: serial\n", "    manager: independent\n", 1))
        assert gate.schedulers[0].reload() == ""
        gate.settle()
        assert running(gate) == [("unit", "1,1"), ("unit", "2,1"), ("unit", "3,1")]
        gate.executor.hold = False
        gate.executor.release()
        gate.settle()
        assert sorted(gate.history("deploy")) == [("unit", "SUCCESS", key) for key in ("1,1", "2,1", "3,1")]
        assert [deploy_reports(gate, x) for x in (a, b, d)] == [["Deployed."]] * 3
        assert gate.gate_queue("deploy") == []
    finally:
        gate.stop()


def test_a_waiting_items_estimates_count_the_items_ahead_of_it_in_its_serial_queue(
        gate: GateHarness, tmp_path: Path) -> None:
    """A, B and D share a serial queue; unit takes 600 s (the history says). A runs; B starts when A ended, D when B
    did: the status page's remaining time and ETA of each count those ahead of it, not its own jobs alone."""
    a, b, d = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.settle()
    gate.executor.hold = True
    for change in (a, b, d):
        gate.comment(change, "deploy")
    gate.settle()
    assert running(gate) == [("unit", "1,1")]
    db = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    for n in range(80):
        db.record_build(BuildEvent(id=f"h{n}", buildset=f"hs{n}", pipeline="deploy", project=("org/a", "org/b")[n % 2],
                                   change=900 + n, patchset=1, job="unit", result="SUCCESS",
                                   start_time=1000.0 * n, end_time=1000.0 * n + 600))
    web = WebService(gate.zk_factory(), port=0, history=db, log_dir=tmp_path).start()
    try:
        with urllib.request.urlopen(f"{web.url}/api/v1/status", timeout=10) as resp:
            status = json.loads(resp.read())
    finally:
        web.stop()
        db.close()
    [deploy] = [p for p in status["pipelines"] if p["name"] == "deploy"]
    items = [i for q in deploy["queues"] for i in q["items"]]
    assert [i["change"]["key"] for i in items] == ["1,1", "2,1", "3,1"]
    for n, item in enumerate(items, 1):  # A has been running for a moment only
        assert 600 * n - 30 <= item["remaining_time"] <= 600 * n, item
        assert 600 * n - 30 <= item["eta"]["p50"] <= item["eta"]["p90"] <= 600 * n, item
        assert item["eta"]["merge_probability"] > 0.9  # a failure ahead does not hold it up


def test_a_promoted_change_takes_its_serial_queues_turn_first(gate: GateHarness) -> None:
    """A, B and D wait in one serial queue, A running. Promoting D puts it at the head: A's build is cancelled, D
    runs, then A and B in turn."""
    a, b, d = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
    gate.settle()
    gate.executor.hold = True
    for change in (a, b, d):
        gate.comment(change, "deploy")
    gate.settle()
    assert running(gate) == [("unit", "1,1")]
    assert gate.management("promote", "deploy", changes=["3,1"]) == ""
    gate.settle()
    assert gate.gate_queue("deploy") == ["3,1", "1,1", "2,1"]
    assert running(gate) == [("unit", "3,1")]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    done = [(job, result, changes) for job, result, changes in gate.history("deploy") if result != "ABORTED"]
    assert done == [("unit", "SUCCESS", "3,1"), ("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1")]
    assert [deploy_reports(gate, x) for x in (a, b, d)] == [["Deployed."]] * 3
