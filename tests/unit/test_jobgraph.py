"""Which of an item's jobs may start, and which are skipped, as their dependencies finish (Zuul's job graph)."""

from __future__ import annotations

from gatekeeper.config.layout import parse_layout
from gatekeeper.models.pipeline import Build, Item
from gatekeeper.scheduler.jobgraph import next_jobs
from gatekeeper.zk.builds import FAILURE, SKIPPED, SUCCESS, TIMED_OUT
from gatekeeper.zk.merges import MergeState

LAYOUT = """
pipelines: [{name: gate, manager: dependent}]
jobs:
  - name: image
  - name: unit
    dependencies: image
  - name: deploy
    dependencies: [unit, {name: docs, soft: true}]
  - name: docs
    voting: false
  - name: publish
    dependencies: docs
  - name: lint
projects:
  - name: org/a
    pipelines: {gate: [image, unit, deploy, docs, publish, lint]}
"""


def layout():
    return parse_layout({"layout.yaml": LAYOUT})


def item(jobs: list[str], **results: str) -> Item:
    it = Item(jobs=jobs, merge_state=MergeState.OK)
    for job, result in results.items():
        it.builds[job] = Build(job=job, result=result, voting=job != "docs")
    return it


def test_jobs_without_dependencies_start_at_once_and_the_others_wait():
    ready, skipped = next_jobs(item(["image", "unit", "deploy", "docs", "publish", "lint"]), layout())
    assert (ready, skipped) == (["image", "docs", "lint"], {})


def test_a_job_starts_once_every_job_it_depends_on_succeeded():
    jobs = ["image", "unit", "deploy", "docs", "publish"]
    assert next_jobs(item(jobs, image=SUCCESS, docs=""), layout()) == (["unit"], {})
    assert next_jobs(item(jobs, image=SUCCESS, unit=SUCCESS, docs=""), layout()) == ([], {})  # deploy waits: docs
    assert next_jobs(item(jobs, image=SUCCESS, unit=SUCCESS, docs=SUCCESS), layout()) == (["deploy", "publish"], {})


def test_a_failure_skips_every_job_that_depends_on_it_through_any_depth():
    ready, skipped = next_jobs(item(["image", "unit", "deploy", "lint"], image=TIMED_OUT, lint=SUCCESS), layout())
    assert ready == []
    assert skipped == {"unit": "its dependency image: TIMED_OUT", "deploy": f"its dependency unit: {SKIPPED}"}


def test_a_failed_non_voting_job_still_skips_its_dependents_but_fails_nothing():
    it = item(["docs", "publish"], docs=FAILURE)
    assert next_jobs(it, layout()) == ([], {"publish": "its dependency docs: FAILURE"})
    it.builds["publish"] = Build(job="publish", result=SKIPPED)
    assert it.complete and not it.failing


def test_a_soft_dependency_the_item_does_not_run_is_ignored_and_a_hard_one_runs_no_job_at_all():
    assert next_jobs(item(["image", "unit", "deploy"], image=SUCCESS, unit=SUCCESS), layout()) == (["deploy"], {})
    assert next_jobs(item(["unit", "lint"]), layout()) == ([], {
        "unit": "its dependency image does not run for this change",
        "lint": "no job runs: job unit depends on job image, which does not run for this change"})


def test_a_skipped_build_is_finished_and_not_failed():
    build = Build(job="unit", result=SKIPPED)
    assert build.finished and not build.failed
    passed = item(["image", "unit"], image=SUCCESS, unit=SKIPPED)
    assert passed.complete and not passed.failing
    failed = item(["image", "unit"], image=FAILURE, unit=SKIPPED)
    assert failed.complete and failed.failing  # for image, not for unit
    assert [b.job for b in failed.builds.values() if b.failed] == ["image"]


def test_an_item_whose_every_job_was_skipped_fails_as_nothing_was_tested():
    skipped = item(["unit"], unit=SKIPPED)
    assert skipped.complete and skipped.all_skipped and skipped.failing
    assert not item([]).all_skipped
