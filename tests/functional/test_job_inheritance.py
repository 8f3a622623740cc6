"""Zuul's job inheritance over real wires (the Gerrit simulator over SSH, ZooKeeper, the merger, the scheduler's
build requests): a job takes from its parent what it does not set, its vars merged with the parent's, and the
parent's branch variants apply to it where it does not set an attribute itself; an abstract parent cannot run on
its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

JOBS = """  - name: base
    abstract: true
    timeout: 1800
    attempts: 2
    run: ['echo from base']
    vars: {release: base, flavor: small}
    variants:
      - branches: stable/
        timeout: 900
        vars: {release: stable, flavor: tiny}
  - name: unit
    parent: base
    vars: {flavor: large}
    required-projects: [org/c]
"""

LAYOUT = GATE_LAYOUT.replace("  - name: unit\n", JOBS, 1)


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def test_a_job_runs_with_what_it_inherits_from_its_parent(gate: GateHarness) -> None:
    gate.sim.create_branch("org/a", "stable/1", gate.sim.branch_tip("org/a", "master"))
    gate.executor.fail("unit", 1, "NODE_FAILURE", "NODE_FAILURE")
    a = gate.change("org/a")
    gate.settle()
    first, second = [gate.executor.requests[r.id] for r in gate.executor.records("unit")]
    assert first.params["run"] == ["echo from base"] and first.params["timeout"] == 1800
    assert first.params["vars"] == {"release": "base", "flavor": "large"}
    assert first.params["required_projects"] == ["org/c"]
    assert (first.attempts, second.attempt) == (2, 2)
    gate.assert_history(("unit", "NODE_FAILURE", "1,1"), ("unit", "NODE_FAILURE", "1,1"))
    assert "unit" in gate.reports(a, "check")[-1] and "RETRY_LIMIT" in gate.reports(a, "check")[-1]

    b = gate.sim.create_change("org/a", "On stable", branch="stable/1", owner="jane")
    gate.settle()
    [on_stable] = [gate.executor.requests[r.id] for r in gate.executor.records("unit") if r.changes == f"{b.number},1"]
    assert on_stable.params["timeout"] == 900  # the parent's variant for stable branches
    assert on_stable.params["vars"] == {"release": "stable", "flavor": "large"}  # but not over unit's own vars


ERRORS = """
pipelines:
  - name: check
    manager: independent
    trigger: {gerrit: [{event: patchset-created}]}
  - name: post
    manager: independent
    post-review: true
    trigger: {gerrit: [{event: ref-updated}]}
jobs:
  - name: base
    abstract: true
  - name: frozen
    final: true
  - name: thaw
    parent: frozen
  - name: c1
    parent: c2
  - name: c2
    parent: c1
  - name: selfish
    parent: selfish
  - name: orphan
    parent: nobody
  - name: publish
    post-review: true
  - name: publish-docs
    parent: publish
  - name: selfish-child
    parent: selfish
  - name: thaw-child
    parent: thaw
projects:
  - name: org/a
    pipelines: {check: [base, publish-docs], post: [publish-docs]}
"""


def test_inheritance_mistakes_are_sentences_naming_file_and_line() -> None:
    from gatekeeper.config.layout import parse_layout
    from gatekeeper.config.yamlfile import ConfigErrors

    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"zuul.yaml": ERRORS}, connections={"gerrit"})
    assert [str(e) for e in caught.value.errors] == [
        'zuul.yaml:15: job "thaw": cannot inherit from job "frozen": it is final (zuul.yaml:13)',
        'zuul.yaml:17: job "c1": inherits from itself: c1 -> c2 -> c1',
        'zuul.yaml:21: job "selfish": names itself as its parent',
        'zuul.yaml:24: job "orphan" parent: undefined job "nobody" (defined: base, c1, c2, frozen, orphan, publish, '
        "publish-docs, selfish, selfish-child, thaw, thaw-child)",
        'zuul.yaml:35: project "org/a" pipeline check: job "base" is abstract: it may only be the parent of other jobs',
        'zuul.yaml:35: project "org/a" pipeline check: job "publish-docs" is post-review: it runs only in a '
        "post-review pipeline (check is not)",
    ]  # each said once, though selfish and thaw have children


VARIANTS = """
pipelines:
  - name: check
    manager: independent
    trigger: {gerrit: [{event: patchset-created}]}
jobs:
  - name: base
    timeout: 1800
    vars: {flavor: small, release: base}
    variants:
      - branches: stable/
        timeout: 900
        vars: {flavor: tiny, release: stable}
        files: ['^stable-only/']
  - name: unit
    parent: base
    timeout: 3000
    vars: {flavor: large}
    files: ['^src/']
  - name: fast-unit
    parent: unit
    variants:
      - branches: stable/
        timeout: 60
projects:
  - name: org/a
    pipelines: {check: [base, unit, fast-unit]}
"""


def test_what_a_job_sets_itself_wins_over_its_parents_branch_variants() -> None:
    from gatekeeper.config.layout import parse_layout

    lay = parse_layout({"zuul.yaml": VARIANTS}, connections={"gerrit"})
    on = {(job, branch): lay.job_for("org/a", "check", job, branch) for job in ("base", "unit", "fast-unit")
          for branch in ("master", "stable/1")}
    assert [(j.timeout, j.vars, [p.pattern for p in j.files]) for j in on.values()] == [
        (1800, {"flavor": "small", "release": "base"}, []),
        (900, {"flavor": "tiny", "release": "stable"}, ["^stable-only/"]),
        (3000, {"flavor": "large", "release": "base"}, ["^src/"]),
        (3000, {"flavor": "large", "release": "stable"}, ["^src/"]),  # the parent's variant, under unit's own
        (3000, {"flavor": "large", "release": "base"}, ["^src/"]),
        (60, {"flavor": "large", "release": "stable"}, ["^src/"]),  # its own variant comes last
    ]
