"""Poison events against the real scheduler, over the Gerrit simulator's SSH stream and a real ZooKeeper: each
kind is survived, the gate keeps moving, no valid event is lost and nothing is reported about the poison."""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.event_queue import EventQueue
from tests.functional.gate_harness import GateHarness
from tests.functional.poison import poison_lines
from tests.helpers import wait_for


def test_every_kind_of_poison_event_is_survived_and_the_gate_keeps_moving(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    gate = GateHarness(tmp_path, zk_factory)
    try:
        for scheduler in gate.schedulers:
            scheduler.retry_delays = (0.2, 0.4, 0.8)
        before, stuck, after = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
        gate.settle()
        gate.approve(before)
        kinds = poison_lines()
        for raw in kinds.values():
            gate.sim.faults.inject_raw(raw)
        # A query that fails persistently (one change), and a queue record no listener would write.
        gate.sim.faults.fail_matching("query", f"change:{stuck.number}")
        gate.approve(stuck)
        EventQueue(gate.zk, paths.event_queue("gerrit")).put({"type": "comment-added", "change_number": [1]})
        kinds["query that fails persistently"] = b""
        kinds["unreadable queue record"] = b""
        gate.approve(after)

        letters = DeadLetters(gate.zk)
        wait_for(lambda: len(letters.list()) >= 2, 60, "the two events the scheduler cannot act on to be set aside")
        wait_for(lambda: gate.status(before) == gate.status(after) == "MERGED", 60, "the valid changes to merge")
        gate.settle()
        assert len(kinds) >= 10
        assert gate.status(stuck) == "NEW" and not any("gate" in m for m in gate.ci_messages(stuck))
        assert sorted(x.about for x in letters.list()) == ["", f"comment-added {stuck.number},1"]
        listener = gate.connection.listener
        assert listener.is_leader and listener.streams == 1 and gate.sim.listener_count() == 1
        for scheduler in gate.schedulers:
            assert scheduler.stats.dead_letters == 2
        reports = [m for c in (before, after) for m in gate.ci_messages(c) if "(gate pipeline)" in m]
        assert len(reports) == 2 and all(m.split("\n\n", 1)[1].startswith("Build succeeded") for m in reports)

        gate.sim.faults.clear()  # nothing was lost: the held-up approval gates once replayed
        for letter in letters.list():
            if letter.about:
                letters.replay(letter.ident)
            else:
                letters.discard(letter.ident)
        wait_for(lambda: gate.status(stuck) == "MERGED", 60, "the replayed approval to gate")
        gate.settle()
    finally:
        gate.stop()
