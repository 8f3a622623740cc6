"""Branch-aware jobs and per-branch gate queues, over real wires: a stable branch runs its jobs on its own image
(a job variant) in a queue of its own, so a stable failure never resets master, and jobs limited to some branches
run only there."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

STABLE = "stable/2024.1"
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
    assert str(exc.value) == 'layout.yaml:41: jobs[0] (unit).variants[0]: missing required key "branches"'


def test_a_branch_pattern_that_is_no_regular_expression_is_refused() -> None:
    text = GATE_LAYOUT.replace("  - name: unit\n", "  - name: unit\n    branches: ['stable/(']\n", 1)
    with pytest.raises(ConfigErrors) as exc:
        parse_layout({"layout.yaml": text})
    assert str(exc.value).startswith("layout.yaml:40: job \"unit\": branches: 'stable/(' is not a regular expression")
