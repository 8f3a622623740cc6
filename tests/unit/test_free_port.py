"""free_port: a port the caller can bind, never one the kernel may hand to an outgoing connection meanwhile."""

from __future__ import annotations

import socket

from gatekeeper.zk import server
from gatekeeper.zk.server import free_port


def test_a_free_port_lies_below_the_ephemeral_range_and_can_be_bound():
    low = server._ephemeral_low()
    for _ in range(20):
        port = free_port()
        assert 1024 <= port < low or low < 4096
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


def test_a_port_given_once_is_not_given_again_though_nobody_bound_it_yet(monkeypatch):
    first = free_port()
    monkeypatch.setattr(server.random, "randrange", lambda *_: first)  # every draw lands on it again
    assert free_port() != first


def test_an_ephemeral_range_starting_low_leaves_port_0_to_answer(monkeypatch):
    monkeypatch.setattr(server, "_ephemeral_low", lambda: 1024)
    drawn = []
    monkeypatch.setattr(server.random, "randrange", lambda *a: drawn.append(a) or 1500)
    assert free_port() >= 1024 and drawn == []
