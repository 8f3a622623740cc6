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
