"""The Gerrit client reads a command's whole answer, also when the channel closes while it waits for data."""

from __future__ import annotations

import threading

from gatekeeper.gerrit import client as gerrit_client
from gatekeeper.gerrit.client import GerritClient


class _ClosingChannel:
    """A channel whose answer (output, exit status 0, close) arrives while the client's recv() waits: that recv
    times out, and the output is then buffered on a closed channel, as paramiko leaves it."""

    def __init__(self) -> None:
        self.closed = False
        self.buffer = b""
        self.status_event = threading.Event()
        self.waited = False

    def settimeout(self, seconds: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        if not self.waited:  # the answer arrives just as this wait times out
            self.waited = True
            self.buffer, self.closed = b"gerrit version 3.9.1\n", True
            self.status_event.set()
            raise TimeoutError
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def recv_ready(self) -> bool:
        return bool(self.buffer)

    def recv_stderr_ready(self) -> bool:
        return False

    def recv_exit_status(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


def test_an_answer_that_arrives_with_the_channels_close_is_read_not_lost(monkeypatch) -> None:
    channel = _ClosingChannel()
    transport = type("Transport", (), {"open_session": lambda self, timeout: channel})()
    client = GerritClient("127.0.0.1", "ci", 29418, timeout=5.0)
    monkeypatch.setattr(client, "_connected", lambda: (object(), transport))
    monkeypatch.setattr(gerrit_client, "exec_within", lambda channel, command, timeout: None)
    assert client.run(["gerrit", "version"], retry=False) == ("gerrit version 3.9.1\n", "")
