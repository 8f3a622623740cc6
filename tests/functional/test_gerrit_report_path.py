"""The report path's SSH connection to Gerrit: commands are small request/answer exchanges, sent at once, and
each is answered before its channel closes."""

from __future__ import annotations

import socket
import time

import pytest

from gatekeeper.gerrit.client import GerritClient
from gatekeeper.sim.gerrit import GerritSimulator, server


def test_commands_go_out_without_waiting_for_acknowledgements(tmp_path) -> None:
    sim = GerritSimulator(str(tmp_path / "site")).start()
    try:
        ci = sim.add_account("ci", name="CI", email="ci@example.com", key_dir=str(tmp_path / "keys"))
        sim.add_account("jane", name="Jane Dev", email="jane@example.com")
        sim.create_project("org/a")
        change = sim.create_change("org/a", "Change", owner="jane")
        client = GerritClient("127.0.0.1", "ci", port=sim.port, keyfile=ci.key_file)
        client.review(change.number, 1, "first")
        sock = client.client.get_transport().sock
        # Nagle's algorithm off: a command's packets never wait for the previous ones' (delayed) acknowledgement.
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client.close()
        client.review(change.number, 1, "second")  # a new connection is set up the same way
        assert client.client.get_transport().sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert [m.message.split("\n\n")[-1] for m in sim.change(change).messages[-2:]] == ["first", "second"]
        client.close()
    finally:
        sim.stop()


def test_a_command_is_answered_before_its_channel_closes_however_late_the_answer_goes_out(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Gerrit answers an exec request before the command can end. The simulator's answer goes out from paramiko's
    # thread once the exec callback returned: here that thread is held up (as on a busy machine) while the command,
    # a fast one, runs on its own.
    started = server._Session.check_channel_exec_request

    def answered_late(session, channel, command: bytes) -> bool:
        ok = started(session, channel, command)
        time.sleep(0.3)
        return ok

    monkeypatch.setattr(server._Session, "check_channel_exec_request", answered_late)
    sim = GerritSimulator(str(tmp_path / "site")).start()
    try:
        ci = sim.add_account("ci", name="CI", email="ci@example.com", key_dir=str(tmp_path / "keys"))
        client = GerritClient("127.0.0.1", "ci", port=sim.port, keyfile=ci.key_file, retries=0)
        out, _ = client.run(["gerrit", "version"])  # "Channel closed." when the close went out before the answer
        assert out == f"gerrit version {sim.version}\n"
        client.close()
    finally:
        sim.stop()
