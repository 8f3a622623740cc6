"""free_port: a port the caller can bind, never one the kernel may hand to an outgoing connection meanwhile."""

from __future__ import annotations

import socket

from gatekeeper.zk import server
from gatekeeper.zk.server import free_port


def test_a_free_port_lies_below_the_ephemeral_range_and_can_be_bound():
    low = server._ephemeral_low()
    for _ in range(20):
        port = free_port()
        assert 1024 <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_offered(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # every draw lands on the busy port: the fallback (port 0) answers instead
        monkeypatch.setattr(server.random, "randrange", lambda *_: busy)
        assert free_port() != busy
