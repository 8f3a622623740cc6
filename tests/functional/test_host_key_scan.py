"""Scanning a booting node's SSH host key over real TCP and SSH: the key of a server that answers, a clear error
naming the address when none does within the timeout, and a prompt end when the launcher stops."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import paramiko
import pytest

from gatekeeper.launcher.sshkeys import HostKeyScanError, scan_host_keys
from gatekeeper.sim.gerrit import GerritSimulator


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GerritSimulator]:
    simulator = GerritSimulator(str(tmp_path_factory.mktemp("hostkeys") / "site")).start()
    try:
        yield simulator
    finally:
        simulator.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the block ends: nothing listens there


def test_the_key_of_a_server_that_answers_ssh(ssh_server: GerritSimulator) -> None:
    keys = scan_host_keys("127.0.0.1", ssh_server.port, timeout=20)
    assert len(keys) == 1
    kind, blob = keys[0].split(" ")
    transport = paramiko.Transport(socket.create_connection(("127.0.0.1", ssh_server.port)))
    try:
        transport.start_client(timeout=10)
        assert (kind, blob) == (transport.get_remote_server_key().get_name(),
                                transport.get_remote_server_key().get_base64())
    finally:
        transport.close()


def test_no_answer_within_the_timeout_is_an_error_naming_the_address() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(HostKeyScanError, match=rf"^127\.0\.0\.1:{port} did not answer SSH within 1s \(.*refused"):
        scan_host_keys("127.0.0.1", port, timeout=1.0)
    assert 0.5 <= time.monotonic() - started < 5


def test_a_port_that_accepts_but_never_speaks_ssh_is_tried_until_the_timeout() -> None:
    accepted = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.1)
        done = threading.Event()

        def serve() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                accepted.append(conn)
                conn.close()  # no SSH banner: the handshake fails

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with pytest.raises(HostKeyScanError, match="did not answer SSH within 2s"):
                scan_host_keys("127.0.0.1", server.getsockname()[1], timeout=2.0)
        finally:
            done.set()
            thread.join(5)
    assert len(accepted) >= 3  # tried again after each failed handshake, not once


def test_a_stopping_launcher_ends_the_scan_at_once() -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(HostKeyScanError, match="launcher stopping"):
        scan_host_keys("127.0.0.1", closed_port(), timeout=60, stop=stop)
    assert time.monotonic() - started < 5
    with pytest.raises(HostKeyScanError, match="launcher stopping"):
        scan_host_keys("127.0.0.1", closed_port(), timeout=60, stop=stop)  # already stopping: no try at all
