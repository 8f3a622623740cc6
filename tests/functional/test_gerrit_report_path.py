"""The report path's SSH connection to Gerrit: commands are small request/answer exchanges, sent at once."""

from __future__ import annotations

import socket

from gatekeeper.gerrit.client import GerritClient
from gatekeeper.sim.gerrit import GerritSimulator


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
