"""Helpers every test may use: one way to wait on a condition, and a TCP link a test can cut."""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

log = logging.getLogger("gatekeeper.tests.helpers")

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "a condition",
             interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something true and return that; fail the test naming `what` when
    `timeout` seconds pass first (a generous default: it only matters when the test is failing anyway)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


REQUIRE_NETNS = "GATEKEEPER_REQUIRE_NETNS"


def require_netns() -> None:
    """Skip a test that needs network namespaces where it cannot run (not root), reported as skipped; fail
    instead when the environment says they must run (CI sets GATEKEEPER_REQUIRE_NETNS=1)."""
    if os.geteuid() == 0:
        return
    reason = "network-namespace nodes need root"
    if os.environ.get(REQUIRE_NETNS):
        pytest.fail(f"{reason}, and {REQUIRE_NETNS} says these tests must run here")
    pytest.skip(reason)


class CuttableLink:
    """A TCP relay on a free loopback port to `target` ("host:port") that a test can cut and restore.

    While cut, open connections are closed and new ones are accepted and closed at once, so a client sees its
    server vanish while the server itself keeps running (a network partition, not a server restart).
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._thread = threading.Thread(target=self._accept, name="cuttable-link", daemon=True)
        self._thread.start()

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every relayed connection now and refuse new ones until `restore()`."""
        self._cut.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                _close(sock)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stopped.set()
        self.cut()
        _close(self._listener)
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._relay, args=(client, upstream), name="cuttable-link-relay",
                             daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel:
            for sock in peer:
                sel.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    for key, _ in sel.select(timeout=0.5):
                        data = key.fileobj.recv(65536)
                        if not data:
                            return
                        peer[key.fileobj].sendall(data)
                    if self._cut.is_set() or self._stopped.is_set():
                        return
            except (OSError, ValueError):
                return
            finally:
                for sock in peer:
                    _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
