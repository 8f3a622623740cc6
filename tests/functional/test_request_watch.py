"""A consumer's wait for its node request when the connection drops with the watch's read in flight, against a real
ZooKeeper: the read is asked again once the connection is back, and the fulfilment still reaches the consumer."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_records import NodeRequest
from gatekeeper.zk.nodes import NodeStore
from gatekeeper.zk.server import LocalZooKeeper
from tests.helpers import wait_for


class Pausable:
    """A ZooKeeper of this test's own (it is paused), a client with a short session, and requests made on it."""

    def __init__(self) -> None:
        self.server = LocalZooKeeper(force_sync=False)
        self.server.start()
        self.client = ZKClient(self.server.hosts, chroot="/watch", timeout=4.0).start()
        self.store = NodeStore(self.client)
        self.request = NodeRequest(labels=["debian"], requestor="consumer")

    def create(self, rids: list[str]) -> None:
        for rid in rids:
            self.client.client.create(paths.node_request(rid), self.request.to_bytes(), makepath=True)

    def while_paused(self, watch: Callable[[], None]) -> None:
        """Pause the server, run `watch` (its reads go out and are never answered), wait until the client drops
        the connection, resume the server and wait until the client is connected again."""
        dropped = threading.Event()
        self.client.client.add_listener(lambda state: dropped.set() if state == "SUSPENDED" else None)
        os.kill(self.server.process.pid, signal.SIGSTOP)
        try:
            watch()
            assert dropped.wait(30), "the connection did not drop"
        finally:
            os.kill(self.server.process.pid, signal.SIGCONT)
        wait_for(lambda: self.client.client.connected, 30, "the connection back")

    def fulfil(self, rids: list[str]) -> None:
        self.request.state = "fulfilled"
        for rid in rids:
            self.client.client.retry(self.client.client.set, paths.node_request(rid), self.request.to_bytes())

    def close(self) -> None:
        self.client.stop()
        self.server.cleanup()


@pytest.fixture
def zk_paused() -> Iterator[Pausable]:
    env = Pausable()
    try:
        yield env
    finally:
        env.close()


@pytest.mark.parametrize("now", [True, False], ids=["on-the-connection-thread", "on-the-completion-thread"])
def test_a_wait_whose_read_failed_with_the_connection_asks_again_and_sees_the_fulfilment(
        zk_paused: Pausable, now: bool) -> None:
    """(On the connection thread the retry failed inside the same connection loss; on the completion thread, the
    way a plain `watch` is answered, this guards the behaviour it always had.)"""
    rid = "100-0000000001"
    zk_paused.create([rid])
    got: list[NodeRequest | None] = []
    answered = threading.Event()
    zk_paused.while_paused(lambda: zk_paused.store.watch_request(rid, lambda r: (got.append(r), answered.set()),
                                                                 now=now))
    zk_paused.fulfil([rid])
    assert answered.wait(30), "the fulfilment never reached the consumer"
    assert got[0] is not None and got[0].state == "fulfilled"


def test_many_waits_whose_reads_failed_with_the_connection_each_ask_again_once_it_is_back(
        zk_paused: Pausable, caplog) -> None:
    """kazoo fails every pending read before it tells of the dropped connection: a re-ask sent meanwhile is failed
    too, so each waits until the connection is back, and asks once."""
    caplog.set_level(logging.INFO, logger="gatekeeper.zk.nodes")
    rids = [f"100-{i:010d}" for i in range(2000)]
    zk_paused.create(rids)
    got: dict[str, NodeRequest | None] = {}

    def watch_all() -> None:
        for rid in rids:
            zk_paused.store.watch_request(rid, lambda r, rid=rid: got.__setitem__(rid, r), now=True)
    zk_paused.while_paused(watch_all)
    zk_paused.fulfil(rids)
    wait_for(lambda: len(got) == len(rids), 30, "every fulfilment")
    asked = Counter(r.getMessage().split()[1] for r in caplog.records if "asking again" in r.getMessage())
    assert max(asked.values(), default=0) <= 1, asked.most_common(3)
    assert not [r for r in caplog.records if "could not watch" in r.getMessage()]
