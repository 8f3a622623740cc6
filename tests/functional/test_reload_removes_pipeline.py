"""A reload that removes a pipeline, as Zuul's reconfiguration does: its items leave without a report, their
builds are cancelled, its state leaves ZooKeeper, and the status page and metrics no longer show it; with several
schedulers too. A layout with no pipelines (an emptied file) is refused, and the running one stays. Real ZooKeeper,
Gerrit simulator, merger and git."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.web.server import WebService
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

GATE = GATE_LAYOUT[GATE_LAYOUT.index("  - name: gate\n"):GATE_LAYOUT.index("queues:\n")]
WITHOUT_GATE = (GATE_LAYOUT.replace(GATE, "")
                .replace(", gate: [unit, integration]}", "}").replace(", gate: [unit]}", "}")
                .replace("    pipelines: {gate: [unit]}\n", ""))


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert "gate" not in WITHOUT_GATE.split("queues:")[0] and "gate:" not in WITHOUT_GATE
    harness = GateHarness(tmp_path, zk_factory)
    try:
        yield harness
    finally:
        harness.executor.hold = False
        harness.executor.release()
        harness.stop()


def held(gate: GateHarness) -> list[tuple[str, str, str]]:
    return sorted((r.pipeline, r.job, r.changes) for r in gate.executor.held())


def shown(gate: GateHarness, zk: ZKClient) -> tuple[list[str], str]:
    """The pipelines the status API shows, and the metrics' text, as the web (which reads ZooKeeper) gives them."""
    web = WebService(zk, port=0)  # not started: its status and metrics are read in-process
    status = web.status()
    return [p["name"] for p in status["pipelines"]], web.metrics()[0].decode()


def test_a_removed_pipeline_drops_its_items_and_cancels_their_builds(gate: GateHarness, zk_factory, caplog) -> None:
    """A and B are in the gate with their builds running, C in check; the gate pipeline is removed from the layout.
    A and B leave the gate without a report, their builds are cancelled (C's check build goes on), the gate's state
    leaves ZooKeeper, and the status page and metrics show check alone."""
    a = gate.change("org/a", "A")
    b = gate.change("org/b", "B")
    c = gate.change("org/c", "C")
    gate.settle()
    gate.executor.hold = True
    gate.comment(c, "recheck")
    gate.approve(a, b)
    gate.settle()
    assert held(gate) == [("check", "unit", "3,1"), ("gate", "integration", "1,1"), ("gate", "unit", "1,1"),
                          ("gate", "unit", "1,1 2,1")]
    names, metrics = shown(gate, zk_factory())
    assert names == ["check", "gate"] and 'pipeline="gate"' in metrics
    reports_before = [gate.reports(x) for x in (a, b)]

    gate.layout_path.write_text(WITHOUT_GATE)
    with caplog.at_level(logging.INFO, logger="gatekeeper.scheduler"):
        assert gate.schedulers[0].reload() == ""
        gate.settle()
    assert held(gate) == [("check", "unit", "3,1")]
    assert sorted((r.job, r.changes, r.result) for r in gate.executor.records() if r.pipeline == "gate") == [
        ("integration", "1,1", "ABORTED"), ("unit", "1,1", "ABORTED"), ("unit", "1,1 2,1", "ABORTED")]
    assert gate.zk.client.exists(paths.pipeline("gate")) is None
    names, metrics = shown(gate, zk_factory())
    assert names == ["check"] and 'pipeline="gate"' not in metrics
    dropped = sorted(r.getMessage() for r in caplog.records if "dropped without a report" in r.getMessage())
    assert dropped == [
        "[gate 1,1] dropped without a report: pipeline gate is no longer in the layout (builds cancelled: "
        "integration, unit)",
        "[gate 2,1] dropped without a report: pipeline gate is no longer in the layout (builds cancelled: unit)"]

    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert [gate.reports(x) for x in (a, b)] == reports_before  # nothing more from the gate
    assert [gate.status(x) for x in (a, b)] == ["NEW", "NEW"]
    assert gate.ci_votes(c) == {"Verified": 1}  # check went on
    assert gate.zk.client.get_children(paths.EXECUTOR_RESULTS) == []
    assert gate.zk.client.exists(paths.pipeline("gate")) is None


def test_every_scheduler_leaves_a_removed_pipeline_and_none_brings_it_back(gate: GateHarness, zk_factory) -> None:
    """Two schedulers; the gate (A and B running) is removed by a reload on one of them. The other takes the new
    layout from ZooKeeper: neither runs the gate again nor writes its state back, and check goes on for new
    changes. A gate added back later starts empty and gates a change again."""
    other = gate.start_scheduler()
    a = gate.change("org/a", "A")
    b = gate.change("org/b", "B")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b)
    gate.settle()
    assert [p for p, _, _ in held(gate)] == ["gate"] * 3

    gate.layout_path.write_text(WITHOUT_GATE)
    assert gate.schedulers[0].reload() == ""
    gate.settle()
    assert held(gate) == []
    assert all("gate" not in s.layout.pipelines and "gate" not in s.states for s in (gate.schedulers[0], other))
    assert gate.zk.client.exists(paths.pipeline("gate")) is None
    c = gate.change("org/c", "C")
    gate.executor.hold = False
    gate.settle()
    assert gate.ci_votes(c) == {"Verified": 1}
    assert gate.zk.client.exists(paths.pipeline("gate")) is None

    gate.layout_path.write_text(GATE_LAYOUT)
    assert other.reload() == ""
    gate.settle()
    assert gate.gate_queue() == []  # A and B are not back: they left with the pipeline
    gate.approve(c)
    gate.settle()
    assert gate.status(c) == "MERGED"
    assert [gate.status(x) for x in (a, b)] == ["NEW", "NEW"]


PROVIDERS_ONLY = """nodepool:
  labels: [{name: debian}]
  providers:
    - name: cloud
      driver: openstack
      cloud: alpha
      pools: [{name: main, labels: [{name: debian, image: deb, flavor: small}]}]
      images: [{name: deb, base-image: debian-12}]
"""
NOTHING = "the layout defines no pipelines and no node providers, so nothing would be gated or launched (it is empty)"


@pytest.mark.parametrize("text, refusal", [
    ("", NOTHING),
    ("# the layout\n", NOTHING),
    (PROVIDERS_ONLY, "the layout defines no pipelines, so a scheduler would gate nothing (it defines only 1 node "
                     "labels, 1 node providers)"),
], ids=["empty", "comments", "providers-only"])
def test_a_reload_to_a_layout_without_pipelines_is_refused(gate: GateHarness, text: str, refusal: str) -> None:
    """A deploy empties the layout file (or leaves a launcher's part only) while A is in the gate: the reload is
    refused with a sentence naming the file, as `gatekeeper reload` tells the operator, and A stays and merges
    under the running layout."""
    a = gate.change("org/a", "A")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()

    gate.layout_path.write_text(text)
    assert gate.schedulers[0].reload() == f"{gate.layout_path}: {refusal}"
    assert gate.management("reload", None) == f"{gate.layout_path}: {refusal}"
    gate.settle()
    assert sorted(gate.schedulers[0].layout.pipelines) == ["check", "gate"]
    assert gate.gate_queue() == ["1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()
    assert gate.status(a) == "MERGED"


def test_a_scheduler_behind_on_the_layout_does_not_start_a_removed_pipeline_again(gate: GateHarness,
                                                                                  caplog) -> None:
    """Two schedulers; the second has not read the new layout yet (its watch is slow) when the gate, with A in it,
    is removed. C is approved then: the second scheduler, still knowing a gate, does not start it again from an
    empty state (which would replay the queued events), and C stays out of it."""
    other = gate.start_scheduler()
    a = gate.change("org/a", "A")
    c = gate.change("org/c", "C")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a)
    gate.settle()
    for watch in other._watches:
        if getattr(watch, "_path", "") == paths.LAYOUT:
            watch._stopped = True  # kazoo's watch ends at its next call: this scheduler keeps the layout it has

    gate.layout_path.write_text(WITHOUT_GATE)
    assert gate.schedulers[0].reload() == ""
    gate.settle()
    assert "gate" in other.layout.pipelines and "gate" not in gate.schedulers[0].layout.pipelines
    assert gate.zk.client.exists(paths.pipeline("gate")) is None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gatekeeper.scheduler"):
        gate.approve(c)
        gate.settle()
    assert gate.zk.client.exists(paths.pipeline("gate")) is None
    assert held(gate) == [] and gate.status(c) == "NEW"
    assert [r.getMessage() for r in caplog.records if "[gate" in r.getMessage() or r.levelno >= logging.ERROR] == []
