"""Post pipelines in-process: the `ref` trigger filter, ref items and their keys, and a ref item's pass through an
independent pipeline (nothing reported to Gerrit, its builds in the history). Over real wires:
tests/functional/test_post_pipeline.py."""

from __future__ import annotations

import os

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.gerrit.trigger import from_gerrit
from gatekeeper.gitrepo import reproduce
from gatekeeper.merger.cache import RepoCache
from gatekeeper.merger.speculative import SpeculativeMerger
from gatekeeper.merger.upstream import Upstream
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import PipelineState, ref_item
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.triggers import pipeline_triggered, unmet_requirements
from gatekeeper.zk.builds import BuildResult
from gatekeeper.zk.history import BuildEvent, BuildsetEvent
from gatekeeper.zk.merges import MergeRequest, MergeResult, RepoState
from tests.unit.test_scheduler_manager import FakeBackend, FakeSource

NEW = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
OLD = "0f" * 20
ZERO = "0" * 40

LAYOUT = """
pipelines:
  - name: post
    manager: independent
    precedence: low
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/.*$
    require: {open: true, current-patchset: true, approval: [{Code-Review: 2}]}
    success: {gerrit: {labels: {Verified: 1}, message: Post jobs passed.}}
    failure: {gerrit: {labels: {Verified: -1}, message: Post jobs failed.}}
  - name: stable-post
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: [^refs/heads/stable/.*$, ^refs/heads/master$]
          branch: ^stable/
jobs:
  - name: publish
projects:
  - name: org/a
    pipelines: {post: [publish], stable-post: [publish]}
"""


def ref_updated(ref: str, new: str = NEW, old: str = OLD, project: str = "org/a") -> TriggerEvent:
    """A ref-updated as the Gerrit driver makes it from Gerrit's JSON."""
    return from_gerrit({"type": "ref-updated", "submitter": {"username": "ci"},
                        "refUpdate": {"oldRev": old, "newRev": new, "refName": ref, "project": project}})


@pytest.fixture
def layout():
    return parse_layout({"layout.yaml": LAYOUT}, connections={"gerrit"})


def test_ref_updated_event_carries_the_ref_and_its_revisions() -> None:
    event = ref_updated("refs/heads/master")
    assert (event.ref, event.oldrev, event.newrev, event.branch, event.change) == (
        "refs/heads/master", OLD, NEW, "master", 0)
    assert event.key == f"org/a:refs/heads/master@{NEW[:12]}"
    assert from_gerrit({"type": "ref-updated", "refUpdate": {"newRev": NEW, "refName": "stable/1",
                                                             "project": "org/a"}}).ref == "refs/heads/stable/1"


def test_ref_filter_matches_the_full_ref_name(layout) -> None:
    post = layout.pipelines["post"]
    assert pipeline_triggered(post, ref_updated("refs/heads/master"))
    assert pipeline_triggered(post, ref_updated("refs/heads/feature/x"))
    assert not pipeline_triggered(post, ref_updated("refs/tags/1.0"))
    assert not pipeline_triggered(post, ref_updated("refs/meta/config"))


def test_branch_filter_applies_to_the_short_branch_name(layout) -> None:
    stable = layout.pipelines["stable-post"]
    assert pipeline_triggered(stable, ref_updated("refs/heads/stable/2024"))
    assert not pipeline_triggered(stable, ref_updated("refs/heads/master"))  # its ref matches, its branch not
    assert not pipeline_triggered(stable, ref_updated("refs/heads/feature"))


def test_a_deleted_branch_never_triggers(layout) -> None:
    deleted = ref_updated("refs/heads/stable/old", new=ZERO)
    assert deleted.deletes_ref
    assert not pipeline_triggered(layout.pipelines["post"], deleted)
    assert not pipeline_triggered(layout.pipelines["stable-post"], deleted)
    created = ref_updated("refs/heads/stable/new", old=ZERO)
    assert not created.deletes_ref and pipeline_triggered(layout.pipelines["post"], created)


def test_change_refs_never_trigger_even_when_the_ref_filter_matches_them() -> None:
    layout = parse_layout({"l.yaml": LAYOUT.replace("^refs/heads/.*$", "^refs/.*$")}, connections={"gerrit"})
    assert pipeline_triggered(layout.pipelines["post"], ref_updated("refs/heads/master"))
    # The Gerrit driver drops these as NoteDb noise; a queued record that still names one does not trigger.
    for ref in ("refs/changes/01/1/1", "refs/changes/01/1/meta"):
        event = TriggerEvent(type="ref-updated", project="org/a", ref=ref, oldrev=OLD, newrev=NEW)
        assert not pipeline_triggered(layout.pipelines["post"], event)


def test_change_events_do_not_match_a_ref_filter(layout) -> None:
    event = TriggerEvent(type="ref-updated", project="org/a", branch="master", change=5, patchset=1)
    assert not pipeline_triggered(layout.pipelines["post"], event)


def test_a_dependent_pipeline_triggered_by_ref_updated_is_a_layout_error() -> None:
    text = LAYOUT.replace("  - name: post\n    manager: independent", "  - name: post\n    manager: dependent")
    with pytest.raises(ConfigErrors) as exc:
        parse_layout({"layout.yaml": text}, connections={"gerrit"})
    errors = [str(e) for e in exc.value.errors]
    assert any('pipeline "post"' in e and "dependent pipeline cannot be triggered by ref-updated" in e
               and e.startswith("layout.yaml:") for e in errors), errors


def test_a_ref_filter_on_a_trigger_without_ref_updated_is_a_layout_error() -> None:
    text = LAYOUT.replace("        - event: ref-updated\n          ref: ^refs/heads/.*$",
                          "        - event: patchset-created\n          ref: ^refs/heads/.*$", 1)
    assert text != LAYOUT
    with pytest.raises(ConfigErrors) as exc:
        parse_layout({"layout.yaml": text}, connections={"gerrit"})
    assert any("ref applies only to ref-updated events" in str(e) for e in exc.value.errors), exc.value.errors


def test_a_ref_updated_without_a_new_revision_enqueues_nothing() -> None:
    post = Post()
    post.manager().apply_trigger(TriggerEvent(type="ref-updated", project="org/a", branch="master",
                                              ref="refs/heads/master", oldrev=OLD, newrev=""))
    assert post.state.all_items() == [] and post.backend.merges == []


def test_ref_item_key_is_unique_per_project_ref_and_revision_and_found_by_it(layout) -> None:
    item = ref_item("org/a", "refs/heads/stable/1", NEW)
    assert item.is_ref and item.key == f"org/a:refs/heads/stable/1@{NEW[:12]}"
    assert (item.branch, item.commit, item.number) == ("stable/1", NEW, 0)
    assert ref_item("org/a", "refs/heads/stable/1", OLD).key != item.key
    assert ref_item("org/b", "refs/heads/stable/1", NEW).key != item.key  # two projects at one commit
    assert unmet_requirements(layout.pipelines["post"], item) == ""  # requirements are about changes


class Post:
    def __init__(self) -> None:
        self.layout = parse_layout({"layout.yaml": LAYOUT}, connections={"gerrit"})
        self.backend = FakeBackend()
        self.state = PipelineState("post")

    def manager(self) -> PipelineManager:
        return PipelineManager(self.layout, self.layout.pipelines["post"], self.state, self.backend, FakeSource())


def test_ref_item_runs_its_jobs_on_the_new_revision_and_reports_nothing(caplog) -> None:
    post = Post()
    caplog.set_level("INFO", "gatekeeper.scheduler.refs")
    post.manager().apply_trigger(ref_updated("refs/heads/master"))
    post.manager().apply_trigger(ref_updated("refs/heads/master"))  # the same revision again: one item
    key = f"org/a:refs/heads/master@{NEW[:12]}"
    assert [i.key for i in post.state.all_items()] == [key]
    assert sum("do not apply to a ref" in r.getMessage() for r in caplog.records) == 1
    post.manager().process()
    [merge] = post.backend.merges
    assert merge.changes[0]["number"] == 0 and merge.changes[0]["commit"] == NEW
    assert merge.changes[0]["ref"] == "refs/heads/master"
    state = {"branches": {"org/a": {"master": NEW}}, "steps": []}
    post.manager().apply_merge_result(MergeResult(id=merge.id, item=merge.item, pipeline="post", ok=True,
                                                  repo_state=state))
    post.manager().process()
    [build] = post.backend.builds.values()
    assert build.repo_state == state and build.changes == key
    post.backend.builds.clear()
    post.manager().apply_build_result(BuildResult(id=build.id, pipeline="post", item=build.item, job="publish",
                                                  result="SUCCESS", start_time=1.0, end_time=2.0))
    post.manager().process()
    assert post.state.all_items() == []
    assert post.backend.reports == []
    [done] = [e for e in post.backend.history if isinstance(e, BuildsetEvent)]
    assert (done.change, done.patchset, done.ref, done.changes, done.result) == (
        None, None, "refs/heads/master", key, "SUCCESS")
    assert (done.oldrev, done.newrev) == (OLD, NEW)
    [recorded] = [e for e in post.backend.history if isinstance(e, BuildEvent)]
    assert (recorded.change, recorded.job, recorded.result) == (None, "publish", "SUCCESS")


def test_operator_dequeues_a_ref_item_by_its_key() -> None:
    from gatekeeper.zk.management import Action, ManagementRequest

    post = Post()
    post.manager().apply_trigger(ref_updated("refs/heads/master"))
    key = f"org/a:refs/heads/master@{NEW[:12]}"
    assert post.manager().manage(ManagementRequest(Action.DEQUEUE, pipeline="post", change=key)) == ""
    assert post.state.all_items() == [] and post.backend.reports == []


def test_merger_gives_a_ref_item_its_project_at_the_revision_even_after_the_branch_moved_on(tmp_path) -> None:
    up = Upstream(str(tmp_path / "upstream"))
    up.create_project("nova", {"a.txt": "a\n"})
    up.create_project("glance", {"g.txt": "g\n"})
    pushed = up.advance("nova", {"b.txt": "pushed\n"})
    up.advance("nova", {"c.txt": "later\n"})  # the branch moves on before the merger gets to it
    cache = RepoCache(str(tmp_path / "cache")).open()
    try:
        merger = SpeculativeMerger(cache)
        item = ref_item("nova", "refs/heads/master", pushed)
        result = merger.merge(MergeRequest(changes=[item.spec(up.url("nova")).to_dict()], pipeline="post",
                                           projects=[{"project": "glance", "branch": "master",
                                                      "url": up.url("glance")}], item="x"))
        assert result.ok, result.message
        state = RepoState.from_dict(result.repo_state)
        assert state.branches == {"nova": {"master": pushed}, "glance": {"master": up.tip("glance")}}
        assert result.merges == 0 and state.steps == []
        work = reproduce(state, str(tmp_path / "ws"), up.url)
        assert sorted(os.listdir(work["nova"])) == [".git", "a.txt", "b.txt"]  # exactly the pushed revision
    finally:
        cache.close()
