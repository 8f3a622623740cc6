"""What a ref item's job sees, end to end: Gerrit's ref-updated over SSH, the scheduler, the merger, the launcher
on the cloud simulator and the real executor running the job's steps over SSH on a node. A branch's, a tag's and
a deleted branch's jobs get Zuul's ref variables (GK_REF, GK_OLDREV, GK_NEWREV, GK_TAG) and no change, and run
on the revision the ref names."""

from __future__ import annotations

import os

import pytest

from tests.functional.gate_harness import wait_for
from tests.functional.test_executor_e2e import E2E, console_lines, e2e_layout
from tests.functional.test_ref_items import ZERO, Clone

PIPELINES = r"""
  - name: post
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/master$
  - name: tag
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/tags/.*$
  - name: branch-deleted
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/stable/.*$
          ignore-deletes: false
queues:"""

JOB = """\
  - name: show-env
    label: ubuntu-jammy
    timeout: 60
    attempts: 1
    run: ['env | grep "^GK_" | sort', 'cat release.txt || echo "no release.txt"']
"""

LAYOUT = e2e_layout(JOB, "{check: [show-env], post: [show-env], tag: [show-env], branch-deleted: [show-env]}",
                    {"ubuntu-jammy": ("jammy", "debian-12")}, min_ready=1).replace("\nqueues:", PIPELINES, 1)

PROJECT = "openstack/nova"


@pytest.fixture
def e2e(tmp_path, zk_factory):
    rig = E2E(tmp_path, zk_factory, layout=LAYOUT)
    try:
        yield rig
    finally:
        rig.stop()


def ran(e2e: E2E, pipeline: str) -> list:
    return [(req, res) for req, res in e2e.executor.history if req.pipeline == pipeline]


def job_env(e2e: E2E, result) -> tuple[dict[str, str], list[str]]:
    """The GK_ variables the job's first step printed, and the console's lines."""
    lines = console_lines(os.path.join(e2e.log_dir(result), "console.txt"))
    env = dict(line.split("=", 1) for line in lines if line.startswith("GK_") and "=" in line)
    return env, lines


def test_ref_items_jobs_get_zuuls_ref_variables_and_run_on_the_refs_revision(e2e: E2E, tmp_path) -> None:
    gate = e2e.gate
    clone = Clone(gate, tmp_path, PROJECT)
    before = gate.sim.branch_tip(PROJECT, "master")
    tagged = clone.commit("one")
    after = clone.commit("two")
    clone.git("tag", "-a", "2.0", "-m", "Release 2.0", tagged)
    tag_object = clone.git("rev-parse", "2.0")
    clone.git("push", "-q", "origin", "refs/tags/2.0")  # first: the tagged commit is on no branch yet
    [(req, res)] = wait_for(lambda: ran(e2e, "tag"), 120, "the tag build")
    assert res.result == "SUCCESS", res.message
    env, lines = job_env(e2e, res)
    assert {k: env.get(k) for k in ("GK_PROJECT", "GK_BRANCH", "GK_REF", "GK_OLDREV", "GK_NEWREV", "GK_TAG",
                                    "GK_CHANGE", "GK_PATCHSET", "GK_PIPELINE", "GK_CHANGES")} == {
        "GK_PROJECT": PROJECT, "GK_BRANCH": "", "GK_REF": "refs/tags/2.0", "GK_OLDREV": ZERO,
        "GK_NEWREV": tag_object, "GK_TAG": "2.0", "GK_CHANGE": "", "GK_PATCHSET": "", "GK_PIPELINE": "tag",
        "GK_CHANGES": f"{PROJECT}:refs/tags/2.0@{tag_object[:12]}"}
    assert "one" in lines  # the workspace is at the commit the tag names
    assert f"REF={PROJECT} refs/tags/2.0 {ZERO[:12]}..{tag_object[:12]} ({env['GK_CHANGES']})" in lines

    clone.git("push", "-q", "origin", "HEAD:refs/heads/master")
    [(req, res)] = wait_for(lambda: ran(e2e, "post"), 120, "the post build")
    assert res.result == "SUCCESS", res.message
    env, lines = job_env(e2e, res)
    assert {k: env.get(k) for k in ("GK_BRANCH", "GK_REF", "GK_OLDREV", "GK_NEWREV", "GK_TAG", "GK_CHANGE")} == {
        "GK_BRANCH": "master", "GK_REF": "refs/heads/master", "GK_OLDREV": before, "GK_NEWREV": after,
        "GK_TAG": "", "GK_CHANGE": ""}
    assert "two" in lines and "one" not in lines

    gate.sim.project(PROJECT).repo.update_ref("refs/heads/stable/1", before)  # a branch made before (no event)
    clone.git("push", "-q", "origin", ":refs/heads/stable/1")
    [(req, res)] = wait_for(lambda: ran(e2e, "branch-deleted"), 120, "the build of the deleted branch")
    assert res.result == "SUCCESS", res.message
    env, lines = job_env(e2e, res)
    assert {k: env.get(k) for k in ("GK_BRANCH", "GK_REF", "GK_OLDREV", "GK_NEWREV", "GK_TAG", "GK_CHANGE")} == {
        "GK_BRANCH": "stable/1", "GK_REF": "refs/heads/stable/1", "GK_OLDREV": before, "GK_NEWREV": ZERO,
        "GK_TAG": "", "GK_CHANGE": ""}
    assert "two" in lines  # the default branch, as it is now

    change = gate.change(PROJECT, "A change, for contrast")
    [(req, res)] = wait_for(lambda: ran(e2e, "check"), 120, "the check build")
    env, _ = job_env(e2e, res)
    ref = gate.sim.change(change).current.ref
    assert {k: env.get(k) for k in ("GK_BRANCH", "GK_REF", "GK_OLDREV", "GK_NEWREV", "GK_TAG", "GK_CHANGE",
                                    "GK_PATCHSET")} == {
        "GK_BRANCH": "master", "GK_REF": ref, "GK_OLDREV": "", "GK_NEWREV": "", "GK_TAG": "",
        "GK_CHANGE": str(change.number), "GK_PATCHSET": "1"}
