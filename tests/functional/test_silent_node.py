"""Commands on a node whose SSH daemon goes silent as a command arrives (a wedged sshd, a blackholed flow after the
login): paramiko waits for the answer to a command's start without a deadline, so each caller bounds it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import paramiko
import pytest

from gatekeeper.launcher import access, sshkeys
from gatekeeper.launcher.model import Node


class SilentServer(paramiko.ServerInterface):
    """Takes any key and opens sessions; never answers an exec request (until the test ends)."""

    def __init__(self, released: threading.Event) -> None:
        self.released = released

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.released.wait(120)  # paramiko answers the request when this returns: silent meanwhile
        return False


@pytest.fixture
def silent(tmp_path) -> Iterator[tuple[int, str, str]]:
    """(port, the client's private key file, the server's host key line)."""
    host_key = paramiko.ECDSAKey.generate()
    client_key = paramiko.ECDSAKey.generate()
    key_file = str(tmp_path / "id")
    client_key.write_private_key_file(key_file)
    released = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while not released.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(host_key)
            transport.start_server(server=SilentServer(released))
            transports.append(transport)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1], key_file, f"{host_key.get_name()} {host_key.get_base64()}"
    finally:
        released.set()
        listener.close()
        for transport in transports:
            transport.close()


@pytest.mark.timeout(60)
def test_an_image_script_on_a_silent_host_fails_instead_of_waiting_for_ever(silent, monkeypatch) -> None:
    port, key_file, host_key = silent
    monkeypatch.setattr(sshkeys, "START_TIMEOUT_S", 1.0)
    with pytest.raises(TimeoutError, match="no answer to the command's start within 1s"):
        sshkeys.run_script("127.0.0.1", port, "root", key_file, [host_key], "echo prepared", timeout=30)


@pytest.mark.timeout(60)
def test_a_developer_key_install_on_a_silent_node_fails_instead_of_waiting_for_ever(silent, monkeypatch, zk) -> None:
    port, key_file, host_key = silent
    monkeypatch.setattr(access, "ACCESS_TIMEOUT_S", 1.0)
    keeper = access.AccessKeeper(zk, ssh_key=key_file)
    node = Node(id="0123456789ab", address="127.0.0.1", port=port, username="root", host_keys=[host_key])
    with pytest.raises(TimeoutError, match="no answer to the command's start within 1s"):
        keeper._ssh(node, "true")


@pytest.mark.timeout(60)
def test_a_deadline_that_passes_as_the_command_goes_out_still_ends_the_wait(silent, monkeypatch) -> None:
    """paramiko clears the channel's wake-up just before it sends the request: a deadline that fell just before
    (widened here) must still wake the wait, or it has no end."""
    import time

    from gatekeeper.sshexec import exec_within

    port, key_file, host_key = silent
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port, "root", key_filename=key_file, look_for_keys=False, allow_agent=False)
    try:
        channel = client.get_transport().open_session()
        pending = paramiko.Channel._event_pending

        def late(self: paramiko.Channel) -> None:
            time.sleep(0.2)  # the deadline passes here, before the wake-up is cleared
            pending(self)

        monkeypatch.setattr(paramiko.Channel, "_event_pending", late)
        with pytest.raises(TimeoutError, match="no answer to the command's start"):
            exec_within(channel, "true", 0.05)
        with pytest.raises(TimeoutError, match="no time left"):
            exec_within(client.get_transport().open_session(), "true", 0)
    finally:
        client.close()
