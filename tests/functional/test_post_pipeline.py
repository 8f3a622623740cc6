"""Post pipelines over real wires: Gerrit's ref-updated (from a gate's submit or a direct push, over SSH) enqueues
the branch's new revision; the merger gives the job the project at exactly that revision; nothing is reported to
Gerrit."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.gerrit.source import GerritReporter
from gatekeeper.history.db import HistoryDB
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.web.server import WebService
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import EventQueue
from tests.functional.gate_harness import GateHarness
from tests.functional.test_browser import CHROMIUM, chromium
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

POST = r"""
  - name: post
    manager: independent
    precedence: low
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/(master|stable/.*)$
    success: {gerrit: {labels: {Verified: 1}, message: Post jobs passed.}}
    failure: {gerrit: {labels: {Verified: -1}, message: Post jobs failed.}}
  - name: post-other
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/(?!heads/).*$
queues:"""

LAYOUT = GATE_LAYOUT.replace("\nqueues:", POST, 1).replace(
    "  - name: unit\n", "  - name: unit\n  - name: publish\n    required-projects: [org/b]\n", 1).replace(
    "pipelines: {check: [unit], gate: [unit, integration]}",
    "pipelines: {check: [unit], gate: [unit, integration], post: [publish], post-other: [publish]}", 1)


class Recording:
    """The Gerrit reporter, noting each report it is asked to send (pipeline, change key, action)."""

    def __init__(self, reporter: GerritReporter) -> None:
        self.reporter = reporter
        self.sent: list[tuple[str, str, str]] = []

    def report(self, report: Report) -> ReportOutcome:
        self.sent.append((report.pipeline, report.change.key, report.action))
        return self.reporter.report(report)

    def reported(self, report: Report) -> ReportOutcome | None:
        return self.reporter.reported(report)


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    recorders: list[Recording] = []

    def wrap(reporter: GerritReporter) -> Recording:
        recorders.append(Recording(reporter))
        return recorders[-1]

    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT, wrap_reporter=wrap)
    harness.gerrit_reports = recorders[0].sent
    try:
        yield harness
    finally:
        harness.stop()


def post_builds(gate: GateHarness, pipeline: str = "post") -> list:
    return [r for r in gate.executor.history if r.pipeline == pipeline and r.result != "ABORTED"]


def recorded(gate: GateHarness, pipeline: str) -> list[dict]:
    """The history records (buildsets and builds) the scheduler queued for `pipeline`."""
    return [e["record"] for _, e in EventQueue(gate.zk, paths.history_queue()).list()
            if e.get("record", {}).get("pipeline") == pipeline]


def given(gate: GateHarness, record) -> dict:
    """The repo state the build was given: project -> branch -> commit."""
    return gate.executor.requests[record.id].repo_state["branches"]


def push(gate: GateHarness, tmp_path: Path, branch: str, text: str, delete: bool = False) -> str:
    """Rita pushes one commit on top of master straight to `branch` (no review), or deletes the branch; returns the
    commit's sha."""
    account = gate.sim.add_account("rita", key_dir=str(tmp_path / "rita-keys"))
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_SSH_COMMAND=(
        f"ssh -i {account.key_file} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
        f"-p {gate.sim.port}"))
    work = tmp_path / f"work-{branch.replace('/', '-')}"

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=work if work.exists() else tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    if delete:
        git("push", "-q", "origin", f":refs/heads/{branch}")
        return ""
    git("clone", "-q", gate.sim.ssh_url("org/a", "rita"), str(work))
    git("config", "user.name", "Rita Core")
    git("config", "user.email", "rita@example.com")
    (work / "pushed.txt").write_text(text)
    git("add", "pushed.txt")
    git("commit", "-q", "-m", f"Pushed: {text}")
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    return git("rev-parse", "HEAD")


def test_merged_change_runs_post_jobs_on_the_merged_commit_and_reports_nothing(gate: GateHarness) -> None:
    change = gate.change("org/a", "Publish me")
    gate.settle()
    before = gate.sim.branch_tip("org/a", "master")
    gate.approve(change)
    gate.settle()
    assert gate.status(change) == "MERGED"
    tip = gate.sim.branch_tip("org/a", "master")
    wait_for(lambda: post_builds(gate), 30, "the post build")
    gate.settle()
    [build] = post_builds(gate)
    assert (build.job, build.result, build.changes) == ("publish", "SUCCESS", f"org/a:refs/heads/master@{tip[:12]}")
    state = given(gate, build)
    assert state["org/a"] == {"master": tip}
    assert state["org/b"] == {"master": gate.sim.branch_tip("org/b", "master")}  # required: at its tip
    # Gerrit heard from check and gate only: post has no change to report on.
    assert {pipeline for pipeline, _, _ in gate.gerrit_reports} == {"check", "gate"}, gate.gerrit_reports
    assert not [m for m in gate.ci_messages(change) if "Post jobs" in m]
    assert post_builds(gate, "post-other") == []
    assert gate.gate_queue("post") == []
    [buildset] = [r for r in recorded(gate, "post") if "job" not in r]
    assert (buildset["change"], buildset["ref"], buildset["changes"], buildset["result"]) == (
        None, "refs/heads/master", build.changes, "SUCCESS")
    assert (buildset["oldrev"], buildset["newrev"]) == (before, tip)


def test_direct_push_triggers_post_and_a_branch_the_ref_filter_does_not_match_does_not(
        gate: GateHarness, tmp_path: Path) -> None:
    pushed = push(gate, tmp_path, "master", "straight in")
    assert gate.sim.branch_tip("org/a", "master") == pushed
    wait_for(lambda: post_builds(gate), 30, "the post build of the pushed commit")
    gate.settle()
    [build] = post_builds(gate)
    assert build.changes == f"org/a:refs/heads/master@{pushed[:12]}"
    assert given(gate, build)["org/a"] == {"master": pushed}

    feature = push(gate, tmp_path, "feature", "elsewhere")
    gate.settle()
    assert gate.sim.branch_tip("org/a", "feature") == feature
    assert [b.changes for b in post_builds(gate)] == [f"org/a:refs/heads/master@{pushed[:12]}"]
    assert gate.gerrit_reports == []
    assert post_builds(gate, "post-other") == []

    stable = push(gate, tmp_path, "stable/1", "a stable branch")  # a new branch the filter matches
    wait_for(lambda: len(post_builds(gate)) == 2, 30, "the post build of the new stable branch")
    gate.settle()
    build = post_builds(gate)[-1]
    assert build.changes == f"org/a:refs/heads/stable/1@{stable[:12]}"
    assert given(gate, build)["org/a"] == {"stable/1": stable}

    events = len(gate.sim.events)
    push(gate, tmp_path, "stable/1", "", delete=True)  # a deleted branch that the filter matches
    assert gate.sim.branch_tip("org/a", "stable/1") is None
    assert gate.sim.events[events:][-1]["refUpdate"]["newRev"] == "0" * 40
    gate.settle()
    assert len(post_builds(gate)) == 2 and gate.gate_queue("post") == []
    assert [r["newrev"] for r in recorded(gate, "post") if "job" not in r] == [pushed, stable]


def test_change_refs_never_trigger_a_post_pipeline(gate: GateHarness) -> None:
    change = gate.change("org/a", "Noise")
    gate.settle()
    current = gate.sim.change(change).current
    # As a listener would queue it had it not dropped it as NoteDb noise: a ref-updated of the change's ref.
    EventQueue(gate.zk, paths.event_queue("gerrit")).put({
        "type": "ref-updated", "project": "org/a", "ref_name": current.ref, "old_rev": "0" * 40,
        "new_rev": current.revision, "author": "jane"})
    gate.settle()
    assert post_builds(gate, "post-other") == [] and post_builds(gate) == []
    assert recorded(gate, "post-other") == [] and recorded(gate, "post") == []  # never enqueued at all
    assert [r.pipeline for r in gate.executor.history] == ["check"]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.read().decode()


def test_ref_item_shows_in_the_status_and_its_builds_in_the_history_pages(gate: GateHarness, tmp_path: Path) -> None:
    db = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    logs = tmp_path / "logs"
    logs.mkdir()
    web = WebService(gate.zk_factory(), port=0, history=db, log_dir=logs).start()
    recorder = HistoryRecorder(gate.zk, db).start()
    try:
        gate.executor.hold = True
        before = gate.sim.branch_tip("org/a", "master")
        pushed = push(gate, tmp_path, "master", "watched")
        key = f"org/a:refs/heads/master@{pushed[:12]}"
        wait_for(lambda: gate.executor.held(), 30, "the post build to start")

        def items() -> list[dict]:
            web._status_cache.clear()
            status = json.loads(get(f"{web.url}/api/v1/status")[1])
            return [i for p in status["pipelines"] if p["name"] == "post" for q in p["queues"] for i in q["items"]]

        [item] = wait_for(items, 20, "the ref item in the status")
        assert (item["change"]["key"], item["change"]["ref"], item["change"]["project"]) == (
            key, "refs/heads/master", "org/a")
        assert [j["name"] for j in item["jobs"]] == ["publish"]
        assert get(f"{web.url}/")[0] == 200
        if CHROMIUM:
            dom = chromium(tmp_path, f"{web.url}/", "--dump-dom")
            assert f'data-change="{key}"' in dom and f"refs/heads/master updated to {pushed[:12]}" in dom
        gate.executor.release()
        gate.settle()
        wait_for(lambda: db.buildsets(pipeline="post"), 20, "the post buildset in the history")
        builds = json.loads(get(f"{web.url}/api/v1/builds?pipeline=post")[1])
        assert [(b["job"], b["result"], b["change"], b["ref"], b["changes"]) for b in builds] == [
            ("publish", "SUCCESS", None, "refs/heads/master", key)]
        assert get(f"{web.url}/api/v1/builds/{builds[0]['uuid']}")[0] == 200
        assert get(f"{web.url}/builds")[0] == 200
        assert get(f"{web.url}/build/{builds[0]['uuid']}")[0] == 200
        assert builds[0]["newrev"] == pushed
        if CHROMIUM:
            dom = chromium(tmp_path, f"{web.url}/build/{builds[0]['uuid']}", "--dump-dom")
            assert key in dom and f"refs/heads/master at {pushed}" in dom
            assert key in chromium(tmp_path, f"{web.url}/builds?pipeline=post", "--dump-dom")
        sets = json.loads(get(f"{web.url}/api/v1/buildsets?pipeline=post")[1])
        assert [(s["ref"], s["oldrev"], s["newrev"], s["result"]) for s in sets] == [
            ("refs/heads/master", before, pushed, "SUCCESS")]
    finally:
        gate.executor.release()
        recorder.stop()
        web.stop()
        db.close()


def test_ref_item_survives_a_scheduler_restart_and_still_reports_nothing(gate: GateHarness, tmp_path: Path) -> None:
    gate.executor.hold = True
    pushed = push(gate, tmp_path, "master", "across a restart")
    key = f"org/a:refs/heads/master@{pushed[:12]}"
    wait_for(lambda: gate.executor.held(), 30, "the post build to start")
    gate.kill_scheduler(gate.schedulers[0])
    sent: list[tuple[str, str, str]] = []

    def wrap(reporter: GerritReporter) -> Recording:
        recording = Recording(reporter)
        recording.sent = sent
        return recording

    gate.start_scheduler(wrap)
    assert gate.gate_queue("post") == [key]  # the ref item, read back from ZooKeeper
    gate.executor.release()
    wait_for(lambda: gate.gate_queue("post") == [], 30, "the ref item to complete under the new scheduler")
    gate.settle()
    assert [(b.result, b.changes) for b in post_builds(gate)] == [("SUCCESS", key)]
    assert sent == [] and gate.gerrit_reports == []
    [buildset] = [r for r in recorded(gate, "post") if "job" not in r]
    assert (buildset["ref"], buildset["newrev"], buildset["result"]) == ("refs/heads/master", pushed, "SUCCESS")
