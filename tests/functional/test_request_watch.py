"""A consumer's wait for its node request when the connection drops with the watch's read in flight, against a real
ZooKeeper: the read is asked again once the connection is back, and the fulfilment still reaches the consumer."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter

import pytest

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import NodeRequest
from gatekeeper.zk.nodes import NodeStore
from gatekeeper.zk.server import LocalZooKeeper
from tests.helpers import wait_for


@pytest.mark.parametrize("now", [True, False], ids=["on-the-connection-thread", "on-the-completion-thread"])
def test_a_wait_whose_read_failed_with_the_connection_asks_again_and_sees_the_fulfilment(now: bool) -> None:
    """(On the connection thread the retry failed inside the same connection loss; on the completion thread, the
    way a plain `watch` is answered, this guards the behaviour it always had.)"""
    server = LocalZooKeeper(force_sync=False)
    server.start()
    client = None
    try:
        client = ZKClient(server.hosts, chroot="/watch", timeout=4.0).start()
        store = NodeStore(client)
        req = NodeRequest(labels=["debian"], requestor="consumer")
        path = paths.node_request("100-0000000001")
        client.client.create(path, req.to_bytes(), makepath=True)
        got: list[NodeRequest | None] = []
        answered = threading.Event()
        dropped = threading.Event()
        client.client.add_listener(lambda state: dropped.set() if state == "SUSPENDED" else None)
        os.kill(server.process.pid, signal.SIGSTOP)  # the watch's read goes out and is never answered
        try:
            store.watch_request("100-0000000001", lambda r: (got.append(r), answered.set()), now=now)
            assert dropped.wait(30), "the connection did not drop"
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        wait_for(lambda: client.client.connected, 30, "the connection back")
        req.state = "fulfilled"
        client.client.retry(client.client.set, path, req.to_bytes())
        assert answered.wait(30), "the fulfilment never reached the consumer"
        assert got[0] is not None and got[0].state == "fulfilled"
    finally:
        if client is not None:
            client.stop()
        server.cleanup()


def test_many_waits_whose_reads_failed_with_the_connection_each_ask_again_once_it_is_back(caplog) -> None:
    """kazoo fails every pending read before it tells of the dropped connection: a re-ask sent meanwhile is failed
    too, so each waits until the connection is back, and asks once."""
    caplog.set_level(logging.INFO, logger="gatekeeper.zk.nodes")
    server = LocalZooKeeper(force_sync=False)
    server.start()
    client = None
    try:
        client = ZKClient(server.hosts, chroot="/watch", timeout=4.0).start()
        store = NodeStore(client)
        req = NodeRequest(labels=["debian"], requestor="consumer")
        rids = [f"100-{i:010d}" for i in range(2000)]
        for rid in rids:
            client.client.create(paths.node_request(rid), req.to_bytes(), makepath=True)
        got: dict[str, NodeRequest | None] = {}
        dropped = threading.Event()
        client.client.add_listener(lambda state: dropped.set() if state == "SUSPENDED" else None)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            for rid in rids:
                store.watch_request(rid, lambda r, rid=rid: got.__setitem__(rid, r), now=True)
            assert dropped.wait(30), "the connection did not drop"
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        wait_for(lambda: client.client.connected, 30, "the connection back")
        req.state = "fulfilled"
        for rid in rids:
            client.client.retry(client.client.set, paths.node_request(rid), req.to_bytes())
        wait_for(lambda: len(got) == len(rids), 30, "every fulfilment")
        asked = Counter(r.getMessage().split()[1] for r in caplog.records if "asking again" in r.getMessage())
        assert max(asked.values(), default=0) <= 1, asked.most_common(3)
        assert not [r for r in caplog.records if "could not watch" in r.getMessage()]
    finally:
        if client is not None:
            client.stop()
        server.cleanup()
