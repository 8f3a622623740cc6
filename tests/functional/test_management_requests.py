"""Operator requests through ZooKeeper: one no scheduler answers is withdrawn, so that it never runs after the
operator was told it failed; a malformed one is answered with the field named and set aside as a dead letter,
and the scheduler goes on; each request is answered once."""

from __future__ import annotations

import logging

import pytest

from gatekeeper.scheduler import locks
from gatekeeper.zk import paths
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.management import Action, ManagementRequest, ManagementTimeout, send_management
from gatekeeper.zk.record import decode, encode
from tests.functional.gate_harness import GateHarness


def test_an_unanswered_request_is_withdrawn_and_never_runs_later(zk):
    with pytest.raises(ManagementTimeout, match="the request was withdrawn and will not run"):
        send_management(zk, ManagementRequest(Action.DEQUEUE, "gate", change="1,1"), timeout=0.5)
    assert zk.client.get_children(paths.management_queue()) == []


def _write(gate: GateHarness, raw: bytes) -> str:
    created = gate.zk.client.create(f"{paths.management_queue()}/q-", raw, sequence=True)
    return created.rsplit("/", 1)[1]


def _answer(gate: GateHarness, ident: str) -> str | None:
    stat = gate.zk.client.exists(paths.management_result(ident))
    return decode(gate.zk.client.get(paths.management_result(ident))[0])["error"] if stat else None


def test_malformed_requests_are_answered_naming_the_field_and_the_scheduler_goes_on(gate: GateHarness,
                                                                                     caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper")
    not_json = _write(gate, b"\xff{not json")
    a_list = _write(gate, encode(["enqueue", "gate", "1,1"]))
    bad_action = _write(gate, encode({"action": "explode", "pipeline": "gate", "id": "a1", "created": 1.0}))
    bad_change = _write(gate, encode({"action": "enqueue", "pipeline": "gate", "change": "1;rm", "id": "a2"}))

    # The scheduler goes on: a good request sent after the garbage is applied and answered.
    gate.change("org/a")
    gate.settle()  # its upload ran check once
    assert gate.management("enqueue", "check", change="1,1") == ""
    assert gate.management("dequeue", "gate", change="9,1") == "no change 9,1 in gate"

    # A sender that waits (its request has an id) is told why, with the field named.
    assert _answer(gate, bad_action) == ("the scheduler cannot read this request: field \"action\": 'explode' is "
                                         "not an operator action (expected one of enqueue, dequeue, promote, reload)")
    assert _answer(gate, bad_change) == ("the scheduler cannot read this request: field \"change\": '1;rm' is not "
                                         "a change (expected NUMBER,PATCHSET such as 5,1)")
    assert _answer(gate, not_json) is None and _answer(gate, a_list) is None  # nobody waits for those

    letters = DeadLetters(gate.zk).list()
    errors = {letter.queue: [] for letter in letters}
    for letter in letters:
        errors[letter.queue].append(letter.error)
    assert list(errors) == ["management"] and len(letters) == 4
    joined = "\n".join(errors["management"])
    assert f"operator request {a_list}: the request is not an object (got list)" in joined
    assert f"operator request {bad_action}: field \"action\": 'explode'" in joined
    assert f"operator request {bad_change}: field \"change\": '1;rm'" in joined
    assert "UnicodeDecodeError" in joined or "JSONDecodeError" in joined
    assert gate.zk.client.get_children(paths.management_queue()) == [] or all(
        i not in (not_json, a_list, bad_action, bad_change)
        for i in gate.zk.client.get_children(paths.management_queue()))

    scheduler_logs = [r for r in caplog.records if r.name.startswith("gatekeeper.scheduler")]
    assert not [r for r in scheduler_logs if r.exc_info], "a malformed request must not log a traceback"
    assert any(f"management event {bad_change} does not read: operator request {bad_change}: field \"change\""
               in r.getMessage() for r in scheduler_logs)
    gate.settle()
    assert gate.history("check").count(("unit", "SUCCESS", "1,1")) == 2  # the operator's enqueue ran it again


@pytest.fixture
def held_locks(monkeypatch) -> None:
    """The scheduler keeps its pipeline locks, so consumed requests stay in the queue (deleted in batches) and
    later rounds see them again."""
    monkeypatch.setattr(locks, "LOCK_LEASE", 60.0)


def test_a_reload_is_applied_once_however_many_rounds_see_it(gate: GateHarness, held_locks) -> None:
    scheduler = gate.schedulers[0]
    loads = []
    loader = scheduler.layout_loader

    def counting():
        loads.append(1)
        return loader()

    scheduler.layout_loader = counting
    assert gate.management("dequeue", "gate", change="1,1") == "no change 1,1 in gate"  # takes the gate's lock
    assert gate.management("reload", None) == ""
    rounds = scheduler.stats.rounds
    for _ in range(3):  # later requests make rounds that still see the reload request in the queue
        assert gate.management("dequeue", "gate", change="1,1") == "no change 1,1 in gate"
    assert scheduler.stats.rounds > rounds
    assert len(gate.zk.client.get_children(paths.management_queue())) == 5
    assert len(loads) == 1


def test_a_request_for_an_unknown_pipeline_is_answered_once(gate: GateHarness, held_locks) -> None:
    assert gate.management("dequeue", "gate", change="1,1") == "no change 1,1 in gate"  # takes the gate's lock
    assert gate.management("promote", "nope", changes=["1,1"]).startswith("no pipeline 'nope'")
    for _ in range(3):  # more rounds that still see the answered request in the queue
        assert gate.management("dequeue", "gate", change="1,1") == "no change 1,1 in gate"
    assert len(gate.zk.client.get_children(paths.management_queue())) == 5
    # The sender deleted each answer it read; an answer written again would be left behind.
    assert gate.zk.client.get_children(paths.MANAGEMENT_RESULTS) == []
