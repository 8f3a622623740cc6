"""A consumer's wait for its node request when the connection drops with the watch's read in flight, against a real
ZooKeeper: the read is asked again once the connection is back, and the fulfilment still reaches the consumer."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import NodeRequest
from gatekeeper.zk.nodes import NodeStore
from gatekeeper.zk.server import LocalZooKeeper
from tests.helpers import wait_for


@pytest.mark.parametrize("now", [True, False], ids=["on-the-connection-thread", "on-the-completion-thread"])
def test_a_wait_whose_read_failed_with_the_connection_asks_again_and_sees_the_fulfilment(now: bool) -> None:
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
