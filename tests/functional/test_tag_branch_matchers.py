"""Job branch matchers on tag items, as Zuul documents them: a matcher matches a tag item when it matches one of
the branches that contain the tagged commit, or the tag's full ref name. Over real wires: tags pushed to the Gerrit
simulator over SSH, its ref-updated events, the scheduler, and the merger telling on real git which branches contain
the commit; a variant for a branch applies to the tags on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.functional.test_ref_items import Clone, builds
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

PIPELINES = r"""
  - name: tag
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/tags/.*$
queues:"""

JOBS = r"""  - name: unit
  - name: release
  - name: release-master
    branches: master
    timeout: 600
    variants:
      - branches: stable/
        timeout: 300
  - name: release-stable
    branches: [stable/.*]
  - name: release-one
    branches: ^refs/tags/1\.
"""

LAYOUT = GATE_LAYOUT.replace("\nqueues:", PIPELINES, 1).replace("  - name: unit\n", JOBS, 1).replace(
    "pipelines: {check: [unit], gate: [unit, integration]}",
    "pipelines: {check: [unit], gate: [unit, integration], "
    "tag: [release, release-master, release-stable, release-one]}", 1)


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path / "gate", zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.executor.release()
        harness.stop()


def ran(gate: GateHarness, tag: str) -> dict[str, int]:
    """The tag's jobs that ran -> the timeout each was given."""
    return {r.job: gate.executor.requests[r.id].params["timeout"] for r in builds(gate, "tag")
            if f":refs/tags/{tag}@" in r.changes}


def test_a_tag_runs_the_jobs_whose_branch_matchers_match_a_branch_containing_it_or_the_tag(
        gate: GateHarness, tmp_path: Path) -> None:
    clone = Clone(gate, tmp_path, "org/a")
    on_master = clone.commit("one")
    clone.git("push", "-q", "origin", "HEAD:refs/heads/master")
    clone.git("tag", "-a", "1.0", "-m", "Release 1.0", on_master)
    clone.git("push", "-q", "origin", "refs/tags/1.0")
    wait_for(lambda: len(ran(gate, "1.0")) == 3, 30, "the jobs of tag 1.0")
    gate.settle()
    assert ran(gate, "1.0") == {"release": 3600, "release-master": 600, "release-one": 3600}

    clone.git("checkout", "-q", "-b", "stable/1", on_master)
    on_stable = clone.commit("one, fixed")
    clone.git("push", "-q", "origin", "HEAD:refs/heads/stable/1")
    clone.git("tag", "2.0", on_stable)  # a lightweight tag on a commit that only stable/1 has
    clone.git("push", "-q", "origin", "refs/tags/2.0")
    wait_for(lambda: len(ran(gate, "2.0")) == 2, 30, "the jobs of tag 2.0")
    gate.settle()
    assert ran(gate, "2.0") == {"release": 3600, "release-stable": 3600}

    # a tag on a commit both branches have: the master job runs, with the stable variant applied too
    clone.git("tag", "1.1", on_master)
    clone.git("push", "-q", "origin", "refs/tags/1.1")
    wait_for(lambda: len(ran(gate, "1.1")) == 4, 30, "the jobs of tag 1.1")
    gate.settle()
    assert ran(gate, "1.1") == {"release": 3600, "release-master": 300, "release-stable": 3600, "release-one": 3600}

    # a tag on a commit no branch has: only the jobs without a branch matcher, or whose matcher names the tag
    clone.git("checkout", "-q", "--detach", on_master)
    nowhere = clone.commit("never merged")
    clone.git("tag", "3.0", nowhere)
    clone.git("push", "-q", "origin", "refs/tags/3.0")
    wait_for(lambda: len(ran(gate, "3.0")) == 1, 30, "the jobs of tag 3.0")
    gate.settle()
    assert ran(gate, "3.0") == {"release": 3600}
