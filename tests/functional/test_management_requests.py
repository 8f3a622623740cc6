"""Operator requests through ZooKeeper: one no scheduler took is withdrawn, so that it never runs after the
operator was told it failed, and one a scheduler took is not (the operator is told it may still run); a malformed
one is answered with the field named and set aside as a dead letter, and the scheduler goes on; each request is
answered once."""

from __future__ import annotations

import logging
import threading

import pytest

from gatekeeper.scheduler import locks
from gatekeeper.scheduler import scheduler as scheduler_module
from gatekeeper.zk import paths
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.management import Action, ManagementRequest, ManagementTimeout, send_management, take_request
from gatekeeper.zk.record import decode, encode
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for


def test_an_unanswered_request_is_withdrawn_and_never_runs_later(zk):
    with pytest.raises(ManagementTimeout, match="the request was withdrawn and will not run"):
        send_management(zk, ManagementRequest(Action.DEQUEUE, "gate", change="1,1"), timeout=0.5)
    assert zk.client.get_children(paths.management_queue()) == []


def test_a_request_a_scheduler_took_is_not_withdrawn_and_the_operator_is_told(zk):
    """A scheduler that took a request but answers late (a long pass, a crash before its save) may still apply
    it: the sender must not say it will not run."""
    def take_when_queued() -> None:
        ident = wait_for(lambda: zk.client.get_children(paths.management_queue()), 10, "the request")[0]
        assert take_request(zk, ident)

    zk.client.ensure_path(paths.management_queue())
    taker = threading.Thread(target=take_when_queued)
    taker.start()
    with pytest.raises(ManagementTimeout, match="a scheduler took enqueue but did not answer within 2s; it may "
                                                "still take effect"):
        send_management(zk, ManagementRequest(Action.ENQUEUE, "gate", change="1,1"), timeout=2.0)
    taker.join()
    assert len(zk.client.get_children(paths.management_queue())) == 1


def test_a_request_withdrawn_just_before_its_pass_is_not_applied(gate: GateHarness, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.scheduler")
    gate.change("org/a")
    gate.settle()

    def withdrawn_first(zk, ident: str) -> bool:
        zk.client.delete(f"{paths.management_queue()}/{ident}")  # the sender gave up meanwhile
        return take_request(zk, ident)

    monkeypatch.setattr(scheduler_module, "take_request", withdrawn_first)
    ident = EventQueue(gate.zk, paths.management_queue()).put(
        ManagementRequest(Action.ENQUEUE, "check", change="1,1", id="x", created=1.0).to_dict())
    wait_for(lambda: any("was withdrawn by its sender" in r.getMessage() for r in caplog.records), 20,
             "the scheduler to find the request withdrawn")
    monkeypatch.undo()
    assert gate.management("dequeue", "check", change="1,1") == "no change 1,1 in check"  # never enqueued
    assert gate.zk.client.exists(paths.management_result(ident)) is None  # nobody waits: no answer left behind
    gate.settle()
    assert gate.history("check").count(("unit", "SUCCESS", "1,1")) == 1  # only its upload's run


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
    wait_for(lambda: gate.zk.client.get_children(paths.management_queue()) == [], 30,
             "the consumed requests (taken ones with their mark) to be deleted")


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


def test_a_refusal_says_whether_what_the_request_names_is_not_there(gate: GateHarness) -> None:
    """The scheduler's answer is typed: NotFound for a change or pipeline that is not there, Refused for any other
    refusal; the sentence is the same one the operator CLI prints."""
    from gatekeeper.zk.management import NotFound, Refused, apply_management

    def refusal(action: str, pipeline: str, **fields) -> Refused:
        with pytest.raises(Refused) as caught:
            apply_management(gate.zk, ManagementRequest(Action(action), pipeline=pipeline, **fields), timeout=30)
        assert gate.management(action, pipeline, **fields) == str(caught.value)  # what `gatekeeper ...` prints
        return caught.value

    gate.executor.hold = True  # 1,1 stays in check while its build is held
    gate.change("org/a")
    wait_for(lambda: gate.executor.held(), 30, "the check build of 1,1 to start")
    missing = [refusal("dequeue", "check", change="7,1"), refusal("enqueue", "check", change="99,1"),
               refusal("promote", "gate", changes=["7,1"]), refusal("dequeue", "nope", change="1,1")]
    assert [(type(r), str(r)) for r in missing] == [
        (NotFound, "no change 7,1 in check"), (NotFound, "no change 99 in Gerrit"), (NotFound, "no change 7,1 in gate"),
        (NotFound, "no pipeline 'nope' (pipelines: check, gate)")]
    conflicts = [refusal("enqueue", "check", change="1,1"), refusal("enqueue", "gate", change="1,1")]
    assert [(type(r), str(r)) for r in conflicts] == [
        (Refused, "change 1,1 is already in check"),
        (Refused, "change 1,1 cannot enter gate: it does not have Code-Review: +2")]
    apply_management(gate.zk, ManagementRequest(Action.DEQUEUE, "check", change="1,1"), timeout=30)  # done: no error
    gate.executor.release()
