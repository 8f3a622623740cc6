"""Scanning a node's SSH host keys at boot, so that consumers can pin them."""

from __future__ import annotations

import socket
import time

import paramiko


class HostKeyScanError(Exception):
    pass


def scan_host_keys(address: str, port: int = 22, timeout: float = 60.0, stop=None) -> list[str]:
    """The host's key as ["<type> <base64>"], retrying until it answers SSH or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    delay = 0.05
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise HostKeyScanError(f"{address}:{port}: launcher stopping")
        try:
            sock = socket.create_connection((address, port), timeout=min(5.0, max(0.1, deadline - time.monotonic())))
        except OSError as e:
            last = str(e)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=min(10.0, max(0.5, deadline - time.monotonic())))
            key = transport.get_remote_server_key()
            return [f"{key.get_name()} {key.get_base64()}"]
        except Exception as e:
            last = f"{type(e).__name__}: {e}"
            time.sleep(delay)
        finally:
            transport.close()
            sock.close()
    raise HostKeyScanError(f"{address}:{port} did not answer SSH within {timeout:.0f}s ({last})")


def run_script(address: str, port: int, username: str, key_file: str, host_keys: list[str], script: str,
               timeout: float = 3600.0) -> tuple[int, str]:
    """Run a shell script on a host (host key verified against host_keys); returns (exit status, output)."""
    from gatekeeper.launcher.client import connect_ssh
    from gatekeeper.launcher.model import Node

    ssh = connect_ssh(Node(address=address, port=port, username=username, private_key=key_file,
                           host_keys=host_keys))
    try:
        stdin, stdout, _ = ssh.exec_command("/bin/sh -s", timeout=timeout, get_pty=False)
        stdout.channel.set_combine_stderr(True)
        stdin.write(script)
        stdin.channel.shutdown_write()
        output = stdout.read().decode(errors="replace")
        return stdout.channel.recv_exit_status(), output
    finally:
        ssh.close()
