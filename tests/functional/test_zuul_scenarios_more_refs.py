"""Zuul's post and supercedent pipelines, second round, over real wires: the gate's merge runs post jobs on the merged
commit, and a supercedent queue runs only the newest of the changes waiting behind its running one. Each docstring
names the Zuul page the expectation comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional import test_pipeline_supercedent, test_post_pipeline
from tests.functional.gate_harness import GateHarness


@pytest.fixture
def post(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=test_post_pipeline.LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def supercedent(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=test_pipeline_supercedent.LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def test_a_change_merged_by_the_gate_runs_post_jobs_on_the_merged_commit(post: GateHarness) -> None:
    """Zuul's pipeline doc (a post pipeline triggered by ref-updated runs "after a change merges"): A gated and
    merged; the branch's update enqueues org/a at its new tip in post, whose publish job runs on exactly that
    commit; nothing about post is reported on A."""
    a = post.change("org/a", "A")
    post.settle()
    post.approve(a)
    post.settle()
    assert post.status(a) == "MERGED"
    tip = post.sim.branch_tip("org/a")
    (build,) = [r for r in post.executor.history if r.pipeline == "post"]
    assert (build.job, build.result, build.changes) == ("publish", "SUCCESS", f"org/a:refs/heads/master@{tip[:12]}")
    assert post.executor.requests[build.id].repo_state["branches"]["org/a"]["master"] == tip
    assert not [m for m in post.ci_messages(a) if "Post jobs" in m]


def test_a_supercedent_queue_runs_the_newest_waiting_change_after_the_running_one(supercedent: GateHarness) -> None:
    """Zuul's pipeline doc (manager supercedent: "only the newest item in a project-branch queue is processed, once
    the running one finishes ... intermediate items are removed"): A's promote job runs; B then C of the same
    project and branch arrive; C replaces B, which never runs; A finishes, then C runs."""
    gate = supercedent
    a, b, c = (gate.change("org/a", name) for name in ("A", "B", "C"))
    gate.settle()
    gate.executor.hold = True
    gate.comment(a, "promote")
    gate.settle()
    gate.comment(b, "promote")
    gate.settle()
    gate.comment(c, "promote")
    gate.settle()
    assert gate.gate_queue("promote") == ["1,1", "3,1"]
    assert sorted(r.changes for r in gate.executor.held() if r.pipeline == "promote") == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.history("promote") == [("publish", "SUCCESS", "1,1"), ("publish", "SUCCESS", "3,1")]
    assert not [m for m in gate.ci_messages(b) if "Promot" in m]
