"""Poison events against the real scheduler, over the Gerrit simulator's SSH stream and a real ZooKeeper: each
kind is survived, the gate keeps moving, no valid event is lost and nothing is reported about the poison."""

from __future__ import annotations

import json
from collections.abc import Callable

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.event_queue import EventQueue
from tests.functional.gate_harness import GateHarness, wait_for

APPROVALS = [{"type": "Code-Review", "value": "2"}, {"type": "Approved", "value": "1", "oldValue": "0"}]


def approval(project: str, number: object, **extra: object) -> dict:
    """A comment-added that would put `number` into the gate, shaped as Gerrit sends it."""
    return {"type": "comment-added", "change": {"project": project, "branch": "master", "number": number,
                                                 "status": "NEW"},
            "patchSet": {"number": 1, "ref": f"refs/changes/00/{number}/1"}, "author": {"username": "rita"},
            "approvals": APPROVALS, "comment": "Patch Set 1: Code-Review+2 Approved+1", "eventCreatedOn": 1,
            **extra}


def poison_lines() -> dict[str, bytes]:
    """Kind -> raw bytes on the stream (each ends its line)."""
    nested = "[" * 50_000 + "]" * 50_000
    no_patchset = approval("org/a", 1)
    del no_patchset["patchSet"]
    return {
        "bad JSON": b"{this is not json\n",
        "not an object": b"[1, 2, 3]\n",
        "no type": json.dumps({"change": {"number": 1}}).encode() + b"\n",
        "unknown type": json.dumps({"type": "frob-happened", "change": {"number": 1}}).encode() + b"\n",
        "wrong type: change.number": json.dumps(approval("org/a", "abc")).encode() + b"\n",
        "wrong type: approvals": json.dumps({**approval("org/a", 1), "approvals": "all of them"}).encode() + b"\n",
        "missing field: patchSet": json.dumps(no_patchset).encode() + b"\n",
        "huge line": b'{"type":"comment-added","comment":"' + b"x" * (5 * 1024 * 1024) + b'"}\n',
        "invalid UTF-8": b'{"type":"comment-added","comment":"\xff\xfe"}\n',
        "nesting bomb": nested.encode() + b"\n",
        "unknown project": json.dumps(approval("org/nope", 9001)).encode() + b"\n",
        "change that does not exist": json.dumps(approval("org/a", 4242)).encode() + b"\n",
    }


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
