"""A persistent recursive watch against a real ZooKeeper: every change under a path, named, with no re-read to
re-arm it; made again (with a resync) when the session is replaced."""

from __future__ import annotations

import threading

from kazoo.client import KazooClient

from gatekeeper.zk.tree_watch import TreeWatch
from tests.helpers import wait_for


def test_tree_watch_names_every_change_under_its_path_without_rereading(zk, zk_server):
    zk.client.ensure_path("/pool/requests")
    events: list[tuple[str, str]] = []
    resyncs = threading.Semaphore(0)
    watch = TreeWatch(zk.client, "/pool/requests", lambda kind, name: events.append((kind, name)),
                      resyncs.release).start()
    assert resyncs.acquire(timeout=5)  # the caller reads the tree once, at start
    before = zk_server.packets_received()
    zk.client.create("/pool/requests/r1", b"a")
    zk.client.set("/pool/requests/r1", b"b")
    zk.client.delete("/pool/requests/r1")
    zk.client.create("/pool/other", b"")  # outside the watched path: not reported
    wait_for(lambda: len(events) == 3, 5, "three events")
    assert events == [("created", "r1"), ("changed", "r1"), ("deleted", "r1")]
    # four writes and no read to re-arm anything (a children watch would re-read after each; a ping may fall in)
    assert zk_server.packets_received() - before <= 5
    # a one-shot watch of kazoo's own on a watched path still fires
    fired = threading.Event()
    zk.client.exists("/pool/requests/r2", watch=lambda event: fired.set())
    zk.client.create("/pool/requests/r2", b"")
    assert fired.wait(5)
    wait_for(lambda: ("created", "r2") in events, 5, "the recursive watch's event too")
    watch.stop()
    zk.client.create("/pool/requests/r3", b"")
    zk.client.sync("/pool/requests")
    assert ("created", "r3") not in events


def test_tree_watch_is_made_again_after_its_session_expires(zk, zk_server):
    zk.client.ensure_path("/pool/released")
    events: list[tuple[str, str]] = []
    resyncs = threading.Semaphore(0)
    TreeWatch(zk.client, "/pool/released", lambda kind, name: events.append((kind, name)),
              resyncs.release).start()
    assert resyncs.acquire(timeout=5)
    session_id, password = zk.client.client_id
    intruder = KazooClient(hosts=zk_server.hosts, client_id=(session_id, password))
    intruder.start()
    intruder.stop()
    intruder.close()
    assert resyncs.acquire(timeout=30), "no resync after the session was replaced"
    zk.client.create("/pool/released/n1", b"")
    wait_for(lambda: ("created", "n1") in events, 5, "events under the new session")


def test_handled_as_read_events_and_answers_come_in_zookeepers_order(zk):
    """`now`: a tree watch's events and the answers of requests sent without waiting are handled on kazoo's
    connection thread as they are read: in the order ZooKeeper sent them (a write's event before its answer), with
    no thread between them that could reorder them."""
    from gatekeeper.zk.nodes_pending import Pending

    zk.client.ensure_path("/pool/requests")
    seen: list[tuple[str, str]] = []
    threads: set[str] = set()
    resyncs = threading.Semaphore(0)

    registered = {f"r{i}": threading.Event() for i in range(20)}

    def on_event(kind: str, name: str) -> None:
        threads.add(threading.current_thread().name)
        seen.append(("event", f"{kind} {name}"))
        if kind == "changed":
            # hold the connection thread until the answer's callback is registered: an answer read before that
            # is handed over at once, on the registering thread, as on_answer says (a loaded machine did so)
            registered[name].wait(5)

    TreeWatch(zk.client, "/pool/requests", on_event, resyncs.release, now=True).start()
    assert resyncs.acquire(timeout=5)
    for i in range(20):
        path = f"/pool/requests/r{i}"
        zk.client.create(path, b"a")
        pending = Pending(zk.client.set_async(path, b"b"), lambda answer: answer)
        pending.on_answer(lambda _p, i=i: (threads.add(threading.current_thread().name),
                                           seen.append(("answer", f"r{i}"))), now=True)
        registered[f"r{i}"].set()
    wait_for(lambda: sum(1 for what, _ in seen if what == "answer") == 20, 5, "every answer")
    for i in range(20):
        changed, answered = seen.index(("event", f"changed r{i}")), seen.index(("answer", f"r{i}"))
        assert changed < answered, seen
    assert len(threads) == 1, threads  # both on the connection thread


def test_an_event_handler_that_raises_does_not_break_the_connection(zk):
    zk.client.ensure_path("/pool/released")
    names: list[str] = []
    resyncs = threading.Semaphore(0)

    def on_event(kind: str, name: str) -> None:
        names.append(name)
        if name == "bad":
            raise RuntimeError("a handler's own bug")

    TreeWatch(zk.client, "/pool/released", on_event, resyncs.release, now=True).start()
    assert resyncs.acquire(timeout=5)
    zk.client.create("/pool/released/bad", b"")
    zk.client.create("/pool/released/good", b"")
    wait_for(lambda: "good" in names, 5, "the event after the failed one")
    assert zk.client.connected
    assert zk.client.get("/pool/released/good")[0] == b""
