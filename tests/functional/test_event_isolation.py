"""One bad event never stops the gate: over real SSH (the Gerrit simulator) and a real ZooKeeper.

A malformed event is rejected by the listener; a queued record that does not read, or a change whose Gerrit
query keeps failing, is set aside, tried again with backoff and then kept as a dead letter that operators list,
replay or discard with `gatekeeper events`; every other change keeps moving meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.cmd import main
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.event_queue import EventQueue
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for

FAST_RETRIES = (0.2, 0.4, 0.8)


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory)
    for scheduler in harness.schedulers:
        scheduler.retry_delays = FAST_RETRIES
    try:
        yield harness
    finally:
        harness.stop()


@pytest.fixture
def config(tmp_path: Path, zk_server, zk_chroot: str) -> str:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(f"zookeeper:\n  hosts: '{zk_server.hosts}'\n  chroot: '{zk_chroot}'\n")
    return str(path)


def events_cli(capsys, config: str, *argv: str) -> tuple[int, str, str]:
    code = main(["events", *argv, "-c", config])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_malformed_event_is_rejected_and_a_change_uploaded_after_it_merges(gate: GateHarness) -> None:
    a = gate.change("org/a")
    gate.settle()
    row = {"type": "comment-added", "change": {"project": "org/a", "branch": "master", "number": "abc"},
           "patchSet": {"number": 1}, "author": {"username": "rita"},
           "approvals": [{"type": "Code-Review", "value": "2"}, {"type": "Approved", "value": "1"}]}
    gate.sim.faults.inject_raw(json.dumps(row) + "\n")
    b = gate.change("org/a")  # uploaded after the bad event
    gate.approve(b)
    gate.settle()
    assert gate.status(b) == "MERGED" and gate.status(a) == "NEW"
    assert DeadLetters(gate.zk).list() == []  # rejected at the edge: it never reached a queue


def test_a_change_with_a_subject_of_megabytes_is_gated_with_its_subject_cut(gate: GateHarness) -> None:
    # its events and its query are each more than ZooKeeper takes in one request
    huge = gate.change("org/a", "Fix " + "a very long subject " * 60000, files={"a.py": "1\n"})
    after = gate.change("org/a", "Fix the API", files={"b.py": "2\n"})
    gate.settle()
    gate.approve(huge, after)
    gate.settle()
    assert [gate.status(c) for c in (huge, after)] == ["MERGED", "MERGED"]
    assert DeadLetters(gate.zk).list() == []


def test_a_change_whose_lookup_keeps_failing_holds_up_only_itself(gate: GateHarness, config: str, capsys) -> None:
    a, b = gate.change("org/a"), gate.change("org/b")
    gate.settle()
    gate.sim.faults.fail_matching("query", f"change:{a.number}", stderr="fatal: change index is corrupt\n")
    gate.approve(a, b)
    letters = DeadLetters(gate.zk)
    wait_for(lambda: letters.list(), 30, "the failing change's event to become a dead letter")
    gate.settle()
    assert gate.status(b) == "MERGED" and gate.status(a) == "NEW"
    assert not any("gate" in m for m in gate.ci_messages(a))  # nothing was decided about it in the gate
    dead = letters.list()
    [letter] = dead  # the approval; nothing else about the change was waiting
    assert (letter.queue, letter.about, letter.attempts) == ("gerrit", "comment-added 1,1", len(FAST_RETRIES) + 1)
    assert "change index is corrupt" in letter.error and letter.event["author"] == "rita"

    code, out, _ = events_cli(capsys, config, "list")
    assert code == 0 and f"{letter.ident}  gerrit  {letter.about}  4 attempt(s)" in out
    assert "change index is corrupt" in out and f"{len(dead)} event(s) became dead letters in all" in out

    gate.sim.faults.clear()  # Gerrit is mended: the operator replays the events and the change gates
    code, out, _ = events_cli(capsys, config, "replay", "--all")
    assert code == 0 and f"{letter.ident}: back in its queue as q-" in out
    wait_for(lambda: gate.status(a) == "MERGED", 60, "the replayed approval to merge its change")
    gate.settle()
    assert letters.list() == [] and letters.total() == len(dead)
    code, _, err = events_cli(capsys, config, "replay", letter.ident)
    assert code == 4 and f"{letter.ident}: no such dead letter" in err
    for name in (".", "..", "../../x"):  # no path of ZooKeeper's: no such dead letter either
        for verb in ("replay", "discard"):
            code, _, err = events_cli(capsys, config, verb, name)
            assert code == 4 and f"{name}: no such dead letter" in err, (verb, name, err)


def test_queued_records_that_do_not_read_become_dead_letters_at_once(gate: GateHarness, config: str,
                                                                     capsys) -> None:
    queue = EventQueue(gate.zk, paths.event_queue("gerrit"))
    queue.put({"type": "comment-added", "change_number": "abc", "patchset": 1})
    gate.zk.client.create(f"{queue.path}/q-", b"\xff\xfe not json", sequence=True)
    EventQueue(gate.zk, paths.management_queue()).put([1, 2])  # an operator request that is not an object
    a = gate.change("org/a")
    gate.approve(a)
    gate.settle()
    assert gate.status(a) == "MERGED"
    letters = DeadLetters(gate.zk)
    dead = sorted(letters.list(), key=lambda x: (x.queue, x.ident))
    assert len(dead) == 3 and all(x.attempts == 1 for x in dead)
    assert "change_number is 'abc', expected an integer" in dead[0].error
    assert "UnicodeDecodeError" in dead[1].error
    assert dead[2].queue == "management" and "is not an object" in dead[2].error
    code, out, _ = events_cli(capsys, config, "discard", "--all")
    assert code == 0 and out.count(": discarded") == 3
    assert letters.list() == [] and letters.total() == 3
    code, out, _ = events_cli(capsys, config, "list", "--json")
    assert code == 0 and json.loads(out)["dead_letters"] == []


def test_events_commands_say_when_zookeeper_cannot_be_reached(tmp_path: Path, capsys, monkeypatch) -> None:
    from gatekeeper.cmd import scheduler as scheduler_commands
    from gatekeeper.zk.server import free_port

    # What is said, not how long it waits: test_operator_cli_input times the operators' 5 s.
    monkeypatch.setattr(scheduler_commands, "OPERATOR_CONNECT_TIMEOUT", 0.5)
    path = tmp_path / "nowhere.yaml"
    path.write_text(f"zookeeper:\n  hosts: '127.0.0.1:{free_port()}'\n")
    code, out, err = events_cli(capsys, str(path), "list")
    assert code == 1 and err.startswith("cannot reach ZooKeeper") and "Traceback" not in out + err


def test_an_event_whose_processing_raises_is_set_aside_and_the_rest_merges(gate: GateHarness, monkeypatch) -> None:
    from gatekeeper.scheduler.manager import PipelineManager

    a, b = gate.change("org/a"), gate.change("org/b")
    gate.settle()
    original = PipelineManager.apply_trigger

    def apply_trigger(manager: PipelineManager, event) -> None:
        if event.change == a.number:
            raise ValueError("a bug on this event's path")
        original(manager, event)

    monkeypatch.setattr(PipelineManager, "apply_trigger", apply_trigger)
    gate.approve(a, b)
    letters = DeadLetters(gate.zk)
    wait_for(lambda: letters.list(), 30, "the failing event to become a dead letter")
    gate.settle()
    assert gate.status(b) == "MERGED" and gate.status(a) == "NEW"
    [letter] = letters.list()
    assert letter.about == "comment-added 1,1" and letter.error == "ValueError: a bug on this event's path"
    assert letter.attempts == len(FAST_RETRIES) + 1
