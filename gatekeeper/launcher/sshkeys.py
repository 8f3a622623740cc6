"""Scanning a node's SSH host keys at boot, so that consumers can pin them; running an image's prepare script."""

from __future__ import annotations

import socket
import threading
import time

import paramiko
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_before_delay

from gatekeeper.sshexec import exec_within

START_TIMEOUT_S = 60.0  # a script's start on a host: its channel opened and the command answered


class HostKeyScanError(Exception):
    pass


class _NoAnswer(Exception):
    """One try found no SSH server answering (yet); `refused`: not even a TCP connection."""

    def __init__(self, text: str, refused: bool) -> None:
        super().__init__(text)
        self.refused = refused


class _Backoff:
    """Waits 50 ms after a failed try, doubling (to at most 1 s) after each try that could not connect: a booting
    host is tried often, an unreachable one is not hammered."""

    def __init__(self) -> None:
        self.delay = 0.05

    def __call__(self, state: RetryCallState) -> float:
        delay = self.delay
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _NoAnswer) and error.refused:
            self.delay = min(self.delay * 2, 1.0)
        return delay


def scan_host_keys(address: str, port: int = 22, timeout: float = 60.0,
                   stop: threading.Event | None = None) -> list[str]:
    """The host's key as ["<type> <base64>"], retrying until it answers SSH or `timeout` passes."""
    if timeout <= 0:
        raise HostKeyScanError(f"{address}:{port} did not answer SSH within {timeout:.0f}s (no time left to try)")
    deadline = time.monotonic() + timeout
    retrying = Retrying(stop=stop_before_delay(timeout), wait=_Backoff(), retry=retry_if_exception_type(_NoAnswer),
                        reraise=True)
    try:
        for attempt in retrying:
            with attempt:
                if stop is not None and stop.is_set():
                    break
                return _scan_once(address, port, deadline)
    except _NoAnswer as e:
        raise HostKeyScanError(f"{address}:{port} did not answer SSH within {timeout:.0f}s ({e})") from None
    raise HostKeyScanError(f"{address}:{port}: launcher stopping")  # the loop ends early only when stopping


def _scan_once(address: str, port: int, deadline: float) -> list[str]:
    try:
        sock = socket.create_connection((address, port), timeout=min(5.0, max(0.1, deadline - time.monotonic())))
    except OSError as e:
        raise _NoAnswer(str(e), refused=True) from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=min(10.0, max(0.5, deadline - time.monotonic())))
        key = transport.get_remote_server_key()
        return [f"{key.get_name()} {key.get_base64()}"]
    except Exception as e:
        raise _NoAnswer(f"{type(e).__name__}: {e}", refused=False) from None
    finally:
        transport.close()
        sock.close()


class ScriptTimeout(Exception):
    """A script ran past its time (or the launcher is stopping); the output so far is in the message."""


def run_script(address: str, port: int, username: str, key_file: str, host_keys: list[str], script: str,
               timeout: float = 8 * 3600.0, stop: threading.Event | None = None) -> tuple[int, str]:
    """Run a shell script on a host (host key verified against host_keys) for at most `timeout` seconds in all;
    returns (exit status, output), raises ScriptTimeout."""
    from gatekeeper.launcher.client import connect_ssh
    from gatekeeper.launcher.model import Node

    deadline = time.monotonic() + timeout
    ssh = connect_ssh(Node(address=address, port=port, username=username, private_key=key_file,
                           host_keys=host_keys))
    try:
        channel = ssh.get_transport().open_session(timeout=START_TIMEOUT_S)
        exec_within(channel, "/bin/sh -s", START_TIMEOUT_S)  # (paramiko's own wait has no deadline)
        channel.set_combine_stderr(True)
        channel.settimeout(START_TIMEOUT_S)
        channel.sendall(script.encode())
        channel.shutdown_write()
        channel.settimeout(0.5)
        output = bytearray()
        while True:
            try:
                data = channel.recv(65536)
            except TimeoutError:
                data = None
            if data == b"":
                break
            output += data or b""
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                why = "the launcher is stopping" if stop is not None and stop.is_set() else \
                    f"it did not finish within {timeout:g}s"
                raise ScriptTimeout(f"{why}: {output.decode(errors='replace')[-2000:]}")
        return channel.recv_exit_status(), output.decode(errors="replace")
    finally:
        ssh.close()
