"""The test helpers themselves: a wait that fails saying what it waited for, and the netns requirement switch."""

from __future__ import annotations

import socket

import pytest

from tests import helpers
from tests.helpers import CuttableLink, require_netns, wait_for


def test_wait_for_returns_the_value_and_fails_naming_what_it_waited_for():
    assert wait_for(lambda: [1], timeout=1) == [1]
    with pytest.raises(AssertionError, match="timed out after 0s waiting for the moon"):
        wait_for(lambda: None, timeout=0.1, what="the moon")


def test_netns_tests_skip_without_root_unless_they_are_required(monkeypatch):
    monkeypatch.setattr(helpers.os, "geteuid", lambda: 1000)
    monkeypatch.delenv(helpers.REQUIRE_NETNS, raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        require_netns()
    monkeypatch.setenv(helpers.REQUIRE_NETNS, "1")
    with pytest.raises(pytest.fail.Exception, match="must run here"):
        require_netns()
    monkeypatch.setattr(helpers.os, "geteuid", lambda: 0)
    require_netns()  # root: nothing to say


def test_cuttable_link_relays_then_drops_and_refuses_until_restored():
    with socket.create_server(("127.0.0.1", 0)) as server:
        link = CuttableLink(f"127.0.0.1:{server.getsockname()[1]}")
        try:
            client = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            peer, _ = server.accept()
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
            link.cut()
            assert client.recv(4) == b""  # the relayed connection is dropped
            again = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            assert again.recv(4) == b""  # and a new one is closed at once
            link.restore()
            third = socket.create_connection(("127.0.0.1", link.port), timeout=5)
            peer3, _ = server.accept()
            peer3.sendall(b"pong")
            assert third.recv(4) == b"pong"
            for sock in (client, peer, again, third, peer3):
                sock.close()
        finally:
            link.close()
