"""The Gerrit connection against the simulator over real SSH, with a real ZooKeeper behind it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.gerrit import (
    GerritConnection,
    GerritEvent,
    GerritReviewError,
    GerritSubmitError,
    GerritUnavailableError,
)
from gatekeeper.gerrit import listener as listener_module
from gatekeeper.gerrit.events import parse_event
from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import EventQueue
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GerritSimulator]:
    root = tmp_path_factory.mktemp("gerrit-conn")
    simulator = GerritSimulator(str(root / "site")).start()
    try:
        simulator.add_account("ci", name="CI", email="ci@example.com", key_dir=str(root / "keys"))
        simulator.add_account("jane", name="Jane Dev", email="jane@example.com")
        simulator.add_account("rita", name="Rita Core", email="rita@example.com")
        simulator.create_project("org/project")
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(autouse=True)
def clear_faults(sim: GerritSimulator) -> Iterator[None]:
    yield
    sim.faults.clear()


@pytest.fixture
def make_connection(sim: GerritSimulator) -> Iterator[Callable[..., GerritConnection]]:
    made: list[GerritConnection] = []

    def make(zk: ZKClient | None = None, **kwargs: object) -> GerritConnection:
        kwargs = {"ssh_timeout": 5.0, "ssh_retries": 2, "retry_delay": 0.1, "stream_backoff_min": 0.1,
                  "stream_backoff_max": 0.5, **kwargs}
        conn = GerritConnection("review", "127.0.0.1", "ci", port=sim.port, keyfile=sim.accounts["ci"].key_file,
                                web_url=sim.web_url, zk=zk, **kwargs)
        made.append(conn)
        conn.start()
        return conn

    yield make
    for conn in made:
        conn.stop()


def queued(zk: ZKClient) -> list[GerritEvent]:
    return [GerritEvent.from_dict(data) for _, data in EventQueue(zk, paths.event_queue("review")).list()]


def wait_queued(zk: ZKClient, predicate: Callable[[list[GerritEvent]], bool], timeout: float = 30) -> list:
    """The queued events once `predicate` holds for them (the test fails if it does not within `timeout`)."""
    events: list[GerritEvent] = []

    def holds() -> bool:
        events[:] = queued(zk)
        return predicate(events)

    wait_for(holds, timeout, what="the expected events in the ZooKeeper event queue")
    return events


def settled(sim: GerritSimulator, zk: ZKClient) -> list[GerritEvent]:
    """The queued events once the listener has handled everything Gerrit sent it so far.

    The listener handles its stream and its catch-ups in one loop, in order: when a marker change created now is
    queued, anything before it (a duplicate, a late catch-up) would already be queued too.
    """
    marker = sim.create_change("org/project", "Marker", owner="jane")
    wait_queued(zk, lambda ev: any(e.type == "patchset-created" and e.change_number == marker.number for e in ev))
    return [e for e in queued(zk) if e.change_number != marker.number]


def listening(conn: GerritConnection, sim: GerritSimulator) -> None:
    assert conn.listener is not None and sim.wait_for(lambda: conn.listener.ready, timeout=20)


def comments(events: list[GerritEvent], prefix: str) -> list[str]:
    return [e.comment.split("\n\n", 1)[1] for e in events
            if e.type == "comment-added" and e.comment and "\n\n" in e.comment
            and e.comment.split("\n\n", 1)[1].startswith(prefix)]


# -- events in --------------------------------------------------------------------------------------------------
def test_events_arrive_typed_in_zookeeper_without_change_ref_noise(sim, zk, make_connection) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Typed", owner="jane")
    sim.approve(c, "rita")
    events = wait_queued(zk, lambda ev: any(e.type == "comment-added" for e in ev))
    assert [e.type for e in events] == ["patchset-created", "comment-added"]
    created, approved = events
    assert (created.change_number, created.patchset, created.author, created.owner) == (c.number, 1, "jane", "jane")
    assert created.ref == c.current.ref and created.branch == "master" and created.project == "org/project"
    assert created.change_id == c.change_id and created.subject == "Typed"
    assert {a.type: (a.value, a.old_value) for a in approved.approvals} == {
        "Code-Review": (2, 0), "Approved": (1, 0), "Verified": (0, None)}
    assert approved.comment == "Patch Set 1: Approved+1 Code-Review+2" and approved.author == "rita"


def test_burst_of_500_enqueued_complete_and_in_order(sim, zk, make_connection) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Burst", owner="jane")
    for i in range(500):
        sim.comment(c, "rita", f"burst {i}")
    events = wait_queued(zk, lambda ev: len(comments(ev, "burst ")) >= 500)
    assert comments(events, "burst ") == [f"burst {i}" for i in range(500)]


def test_stream_cut_mid_burst_and_10_approvals_while_down_are_enqueued_once(sim, zk, make_connection) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    burst = sim.create_change("org/project", "Cut burst", owner="jane")
    changes = [sim.create_change("org/project", f"Approve {i}", owner="jane") for i in range(10)]

    def emit() -> None:
        for i in range(300):
            sim.comment(burst, "rita", f"cut {i}")

    writer = threading.Thread(target=emit)
    writer.start()
    assert sim.wait_for(lambda: sum(1 for e in sim.events if e["type"] == "comment-added") > 0)
    sim.faults.refuse_connections = True
    sim.faults.cut_streams()
    for c in changes:
        sim.approve(c, "rita")
    writer.join()
    sim.faults.refuse_connections = False

    def approved(events: list[GerritEvent]) -> list[GerritEvent]:
        return [e for e in events if e.approval("Approved") and e.approval("Approved").changed]

    def done(events: list[GerritEvent]) -> bool:
        return len(comments(events, "cut ")) >= 300 and len(approved(events)) >= 10
    wait_queued(zk, done)
    events = settled(sim, zk)  # anything duplicated would be queued by now
    assert sorted(comments(events, "cut "), key=lambda s: int(s.split()[1])) == [f"cut {i}" for i in range(300)]
    approvals = approved(events)
    assert sorted(e.change_number for e in approvals) == sorted(c.number for c in changes)
    assert all((e.approval("Approved").value, e.approval("Approved").old_value) == (1, 0) for e in approvals)
    assert conn.listener.catch_ups >= 1


def test_dropped_output_from_gerrit_triggers_a_catch_up(sim, zk, make_connection) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Overflow", owner="jane")
    sim.stream_buffer = 20  # Gerrit drops what a listener cannot take and sends dropped-output
    try:
        sim.faults.pause_streams()
        for i in range(100):
            sim.comment(c, "rita", f"overflow {i}")
        sim.faults.resume_streams()
        # Once one buffered event arrived, Gerrit's buffer for this listener is empty: its writer takes up to
        # stream_batch (32) events at a time, more than the 20 it holds, so the next event fits behind dropped-output.
        wait_queued(zk, lambda ev: bool(comments(ev, "overflow ")))
        sim.comment(c, "rita", "overflow 100")
        events = wait_queued(zk, lambda ev: len(comments(ev, "overflow ")) >= 101)
    finally:
        sim.stream_buffer = None
    events = settled(sim, zk)
    assert sorted(comments(events, "overflow "), key=lambda s: int(s.split()[1])) == [
        f"overflow {i}" for i in range(101)]
    assert conn.listener.catch_ups == 1


def test_malformed_input_never_stops_the_listener(sim, zk, make_connection) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Garbage", owner="jane")
    for raw in [b"not json\n", b"[1, 2]\n", b'{"no":"type"}\n', b'{"type":"frob-happened"}\n',
                b'{"type":"comment-added","change":"oops","patchSet":7,"approvals":"x"}\n',
                b'{"type":"comment-added","approvals":[{"value":"x"}]}\n',
                b"\xff\xfe broken utf-8\n", b"x" * (5 * 1024 * 1024) + b"\n", b"{half a line"]:
        sim.faults.inject_raw(raw)
    sim.faults.inject_raw(b"\n")  # ends the half line
    sim.comment(c, "rita", "still alive")
    events = wait_queued(zk, lambda ev: bool(comments(ev, "still alive")))
    assert comments(events, "still alive") == ["still alive"]
    assert conn.listener.is_leader and sim.listener_count() == 1


def test_malformed_event_is_rejected_at_the_edge_naming_the_field(sim, zk, make_connection, caplog) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Typed", owner="jane")
    sim.approve(c, "rita")
    good = wait_queued(zk, lambda ev: any(e.type == "comment-added" and e.change_number == c.number for e in ev))
    approval = next(e for e in good if e.type == "comment-added" and e.change_number == c.number).raw
    before = len(queued(zk))
    bad = json.dumps({**approval, "change": {**approval["change"], "number": "abc"}})
    sim.faults.inject_raw(bad + "\n")
    sim.faults.inject_raw(json.dumps({**approval, "patchSet": {**approval["patchSet"], "number": [1]}}) + "\n")
    sim.comment(c, "rita", "after the bad ones")
    events = wait_queued(zk, lambda ev: bool(comments(ev, "after the bad ones")))
    assert len(events) == before + 1 and comments(events, "after the bad ones") == ["after the bad ones"]
    assert all(isinstance(e.change_number, int) and isinstance(e.patchset, int) for e in events
               if e.type == "comment-added")
    assert "Rejected a malformed Gerrit comment-added event: change.number is 'abc', expected an integer" \
        in caplog.text
    assert "patchSet.number is [1], expected an integer" in caplog.text


def test_an_oversized_event_is_enqueued_without_its_bulk_and_the_stream_goes_on(sim, zk, make_connection,
                                                                               caplog) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Huge review", owner="jane")
    sim.comment(c, "rita", "a model event")
    model = next(e for e in wait_queued(zk, lambda ev: bool(comments(ev, "a model event")))
                 if e.type == "comment-added" and e.change_number == c.number).raw
    # 1.5 MB: more than ZooKeeper takes in one request, so as it came the event could never be enqueued
    huge = "Patch Set 1:\n\nrecheck\n\n" + "all the logs pasted in " * 65000
    sim.faults.inject_raw(json.dumps({**model, "comment": huge}) + "\n")
    sim.comment(c, "rita", "after the huge one")
    events = wait_queued(zk, lambda ev: bool(comments(ev, "after the huge one")))
    (cut,) = comments(events, "recheck")
    assert len(cut) < listener_module.KEEP_COMMENT and cut.startswith("recheck\n\nall the logs pasted in")
    assert next(e for e in events if e.comment and "recheck" in e.comment).raw == {}
    assert f"comment-added event of change {c.number},1 is" in caplog.text
    assert conn.listener.is_leader


def test_events_too_many_for_one_transaction_are_enqueued_in_several(sim, zk, make_connection) -> None:
    conn = make_connection(zk)
    listening(conn, sim)
    c = sim.create_change("org/project", "Long reviews", owner="jane")
    sim.comment(c, "rita", "a model event")
    model = next(e for e in wait_queued(zk, lambda ev: bool(comments(ev, "a model event")))
                 if e.type == "comment-added" and e.change_number == c.number).raw
    # 30 reviews of 20 kB each (40 kB as records, which hold the comment twice) handed to the listener as one
    # batch, as it takes what arrived together: 1.2 MB, more than one ZooKeeper request takes
    batch = [parse_event(json.dumps({**model, "comment": f"Patch Set 1:\n\nlong {i:02d} " + "x" * 20000,
                                     "eventCreatedOn": model["eventCreatedOn"] + 1 + i}))
             for i in range(30)]
    writer = threading.Thread(target=conn.listener._write, args=(batch,), daemon=True)
    writer.start()
    writer.join(30)
    assert not writer.is_alive()
    sim.comment(c, "rita", "after the long ones")
    events = wait_queued(zk, lambda ev: bool(comments(ev, "after the long ones")))
    assert [x[:7] for x in comments(events, "long ")] == [f"long {i:02d}" for i in range(30)]
    assert all(e.raw for e in events if e.change_number == c.number)  # each small enough to be kept whole


def test_new_leader_takes_over_and_catches_up_exactly_once(sim, zk, zk_factory, make_connection) -> None:
    first_zk = zk_factory()
    first = make_connection(first_zk)
    listening(first, sim)
    second = make_connection(zk_factory())
    # The second is a contender waiting behind the leader (its election node is there), and not listening.
    wait_for(lambda: len(zk.client.get_children(paths.election("gerrit-review"))) == 2, timeout=20,
             what="the second connection to join the leader election")
    assert not second.listener.is_leader and sim.listener_count() == 1
    c = sim.create_change("org/project", "Failover", owner="jane")
    wait_queued(zk, lambda ev: any(e.type == "patchset-created" and e.change_number == c.number for e in ev))
    sim.faults.refuse_connections = True  # hold the new leader's stream back, so these two are missed
    first_zk.stop()  # the leader's ZooKeeper session ends (as when its process dies): it must stop listening
    sim.faults.cut_streams()
    assert sim.wait_for(lambda: not first.listener.is_leader, timeout=20)
    sim.comment(c, "rita", "while nobody listens")
    sim.approve(c, "rita")
    assert second.listener.wait_leader(20)
    sim.faults.refuse_connections = False
    assert sim.wait_for(lambda: second.listener.catch_ups >= 1, timeout=20)
    sim.comment(c, "rita", "after failover")
    wait_queued(zk, lambda ev: bool(comments(ev, "after failover")))
    events = settled(sim, zk)
    mine = [e for e in events if e.change_number == c.number]
    assert [e.type for e in mine] == ["patchset-created", "comment-added", "comment-added", "comment-added"]
    assert [e.catch_up for e in mine[1:]] == [True, True, False]
    assert comments(mine, "while") == ["while nobody listens"]
    assert mine[2].approval("Code-Review").value == 2 and mine[2].approval("Code-Review").old_value == 0


def test_restart_catches_up_on_what_happened_while_stopped(sim, zk, zk_factory, make_connection,
                                                           monkeypatch) -> None:
    before = make_connection(zk_factory())
    listening(before, sim)
    c = sim.create_change("org/project", "Restart", owner="jane")
    wait_queued(zk, lambda ev: any(e.change_number == c.number for e in ev))
    before.stop()
    sim.create_patchset(c, files={"new": "2\n"}, uploader="jane")
    sim.review(c, "rita", "recheck", {"Code-Review": 1})
    sim.abandon(c, "jane", "not needed")
    sim.restore(c, "jane")
    sim.faults.fail("query", times=3, exit_status=128)  # the first catch-up fails (all its retries): retried
    monkeypatch.setattr(listener_module, "CATCH_UP_RETRY_S", 0.3)
    after = make_connection(zk_factory())
    wait_queued(zk, lambda ev: any(e.type == "change-restored" for e in ev))
    events = [e for e in settled(sim, zk) if e.change_number == c.number]
    assert [(e.type, e.patchset, e.catch_up) for e in events] == [
        ("patchset-created", 1, False), ("patchset-created", 2, True), ("comment-added", 2, True),
        ("change-abandoned", 2, True), ("change-restored", 2, True)]
    assert events[2].comment == "Patch Set 2: Code-Review+1\n\nrecheck" and events[3].raw["reason"] == "not needed"
    assert after.listener.catch_ups == 1 and sim.faults.take("query") is None  # the failures were used up


def test_deposed_leader_cannot_enqueue_and_hands_over(sim, zk, zk_factory, make_connection) -> None:
    first = make_connection(zk)
    listening(first, sim)
    second = make_connection(zk_factory())
    c = sim.create_change("org/project", "Fencing", owner="jane")
    wait_queued(zk, lambda ev: any(e.change_number == c.number for e in ev))
    # Someone else wrote the state (as a new leader would after our session expired unnoticed).
    raw, _ = zk.client.get(paths.connection_state("review"))
    zk.client.set(paths.connection_state("review"), raw)
    sim.comment(c, "rita", "fenced")
    assert sim.wait_for(lambda: second.listener.is_leader, timeout=20)
    wait_queued(zk, lambda ev: bool(comments(ev, "fenced")))
    assert comments(settled(sim, zk), "fenced") == ["fenced"] and not first.listener.is_leader


# -- votes out --------------------------------------------------------------------------------------------------
def test_review_posts_any_message_verbatim_with_labels_and_tag(sim, make_connection) -> None:
    conn = make_connection()
    c = sim.create_change("org/project", "Report", owner="jane")
    message = "Build failed.\n\n- job \"unit\" $(whoami) `id` it's 100% ✗\n\\back\\slash\ttab"
    conn.review(c.number, 1, message, {"Verified": -1, "Code-Review": 1}, tag="autogenerated:gatekeeper",
                project="org/project")
    assert sim.messages(c)[-1] == f"Patch Set 1: Code-Review+1 Verified-1\n\n{message}"
    assert sim.votes(c) == {"ci": {"Verified": -1, "Code-Review": 1}}
    assert sim.change(c).messages[-1].tag == "autogenerated:gatekeeper"


def test_submit_is_confirmed_and_refusal_raises_with_gerrits_reason(sim, make_connection) -> None:
    conn = make_connection()
    c = sim.create_change("org/project", "Submit", owner="jane")
    with pytest.raises(GerritSubmitError, match=r"change \d+,1.*blocked by Code-Review, Approved"):
        conn.review(c.number, 1, "Build succeeded.", {"Verified": 2}, submit=True)
    sim.approve(c, "rita")
    conn.review(c.number, 1, "Build succeeded.", {"Verified": 2}, submit=True)
    assert sim.change(c).status == "MERGED"
    assert conn.get_change(c.number)["status"] == "MERGED"


def test_review_retries_after_hang_and_internal_error(sim, make_connection) -> None:
    conn = make_connection(ssh_timeout=1.0)
    c = sim.create_change("org/project", "Flaky", owner="jane")
    # The hang outlasts the test: only the connection's own timeout can end the first attempt.
    sim.faults.hang("review", seconds=60)
    started = time.monotonic()
    conn.review(c.number, 1, "after a hang")
    assert time.monotonic() - started < 20, "the hung review was not given up after the 1 s SSH timeout"
    assert sim.faults.take("review") is None  # the hang was met (and used up)
    sim.faults.fail("review", exit_status=128)
    conn.review(c.number, 1, "after an internal error")
    assert sim.faults.take("review") is None
    ours = [m for m in sim.messages(c) if m.startswith("Patch Set 1:\n\nafter")]
    assert ours == ["Patch Set 1:\n\nafter a hang", "Patch Set 1:\n\nafter an internal error"]


def test_hung_submit_is_confirmed_by_query(sim, make_connection) -> None:
    conn = make_connection(ssh_timeout=1.0)
    c = sim.create_change("org/project", "Hung submit", owner="jane")
    sim.approve(c, "rita")
    sim.review(c, "ci", labels={"Verified": 2})
    sim.faults.hang("submit", seconds=2, times=5)
    with pytest.raises(GerritUnavailableError):
        conn.review(c.number, 1, None, None, submit=True)
    assert sim.change(c).status == "NEW"
    sim.faults.clear()
    sim.faults.hang("submit", seconds=3, after=True)  # merged, but the answer is lost: the query confirms it
    conn.review(c.number, 1, None, None, submit=True)
    assert sim.change(c).status == "MERGED"


def test_refused_review_is_not_retried_and_unreachable_gerrit_fails_in_bounded_time(sim, make_connection) -> None:
    conn = make_connection()
    with pytest.raises(GerritReviewError, match='"99999,1" no such patch set'):
        conn.review(99999, 1, "x")
    sim.faults.refuse_connections = True
    conn.client.close()
    started = time.monotonic()
    with pytest.raises(GerritUnavailableError, match="after 3 attempt"):
        conn.review(1, 1, "x")
    assert time.monotonic() - started < 30


def test_git_url_fetches_change_refs_with_stock_git(sim, make_connection, tmp_path) -> None:
    conn = make_connection()
    c = sim.create_change("org/project", "Fetch", owner="jane")
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -i {conn.keyfile} -o StrictHostKeyChecking=no "
                                           "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "fetch", "-q", conn.git_url("org/project"), conn.change_ref(c.number, 1)],
                   cwd=tmp_path, env=env, check=True, timeout=60)
    head = subprocess.run(["git", "rev-parse", "FETCH_HEAD"], cwd=tmp_path, capture_output=True, text=True)
    assert head.stdout.strip() == c.current.revision
