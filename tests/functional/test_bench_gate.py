"""bench/gate.py's guards fail when the work they time was not done (a figure from undone work is refused)."""

from __future__ import annotations

import pytest

from bench.gate import Bench, CheckFailed, scheduler_cpu
from gatekeeper.zk import paths
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for


def test_the_event_guard_refuses_events_the_scheduler_did_not_consume(gate: GateHarness, tmp_path) -> None:
    bench = Bench(tmp_path, server=None)
    a = gate.change("org/b")
    gate.approve(a)
    gate.settle()
    scheduler = gate.schedulers[0]
    gate.sim.review(a, "jane", message="Looks fine.")
    gate.settle()
    bench.check_consumed(gate, scheduler)  # consumed: no complaint
    assert scheduler_cpu(scheduler) >= scheduler.stats.cpu > 0  # every thread, the main loop's included
    gate.kill_scheduler(scheduler)
    before = len(gate.zk.client.get_children(paths.event_queue("gerrit")))
    gate.sim.review(a, "jane", message="Still fine.")
    wait_for(lambda: len(gate.zk.client.get_children(paths.event_queue("gerrit"))) > before, 20, "the event")
    with pytest.raises(CheckFailed, match="was not consumed by the scheduler"):
        bench.check_consumed(gate, scheduler)
