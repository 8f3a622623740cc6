"""An SSH connection to a node that runs job steps safely.

- The node's host key must be one of the keys pinned in its record; anything else is refused before login.
- Every command is built from `shlex.quote`d pieces; a step runs under `setsid`, in a process group of its own, so
  a timeout or an abort kills the whole group on the node.
- A connection that dies, or a node that stops answering, raises NodeLost: an infrastructure failure, never the
  change's fault.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import paramiko

from gatekeeper.sshexec import exec_within
from gatekeeper.zk.node_host_keys import (  # noqa: F401 (known_hosts_text: re-exported for the executor)
    UnusableHostKey,
    known_hosts_text,
    pinned_host_keys,
)
from gatekeeper.zk.node_records import Node

log = logging.getLogger("gatekeeper.executor.remote")

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PGID_MARK = b"GKPGID "
BULK_WINDOW = 16 << 20  # a wide SSH window and large packets: copy-back is bound by per-packet Python work
BULK_PACKET = 256 << 10


class NodeLost(Exception):
    """The node cannot be reached, refused our pinned host key, or stopped answering mid-run."""


class HostKeyMismatch(NodeLost):
    """The node presented a host key that is not pinned in its record: we never log in."""


@dataclass
class StepOutcome:
    """How a step ended: its exit status, or that it timed out or was aborted (and its group killed)."""

    status: int | None = None
    timed_out: bool = False
    aborted: bool = False
    elapsed: float = 0.0


def _gcm_first(*args, **kwargs) -> paramiko.Transport:
    """A transport that offers AES-GCM first (paramiko's own order starts with AES-CTR and an HMAC, computed apart
    for each packet: with GCM a log copy-back moves about a fifth more per second here); the other ciphers stay
    offered after it, for servers without GCM."""
    transport = paramiko.Transport(*args, **kwargs)
    options = transport.get_security_options()
    options.ciphers = tuple(sorted(options.ciphers, key=lambda cipher: "gcm@openssh.com" not in cipher))
    return transport



def env_exports(env: Mapping[str, object]) -> str:
    """`export NAME='value'; ...` for a shell; names must be plain identifiers, values are quoted."""
    parts = []
    for name, value in env.items():
        if not ENV_NAME.match(str(name)):
            raise ValueError(f"environment variable name {name!r} is not a valid shell identifier")
        parts.append(f"export {name}={shlex.quote('' if value is None else str(value))}")
    return "; ".join(parts) + ("; " if parts else "")


def step_command(command: str, cwd: str, env: Mapping[str, object]) -> str:
    """The remote command line for one job step: its own session and process group, output merged.

    The step text is shell (it comes from the layout); everything we add around it is quoted, and the step is
    passed to the inner shell as an argument, never pasted into our own command text.
    """
    script = env_exports(env) + f"cd {shlex.quote(cwd)} && exec /bin/sh -c {shlex.quote(command)}"
    # the session leader prints its pid (= its process group) first, then becomes the step
    wrapper = 'printf "GKPGID %s\\n" "$$"; exec /bin/sh -c "$1"'
    return f"exec setsid -w /bin/sh -c {shlex.quote(wrapper)} gk-step {shlex.quote(script)} </dev/null 2>&1"


class RemoteHost:
    """A logged-in SSH connection to one node."""

    def __init__(self, node: Node, connect_timeout: float = 15.0, probe_interval: float = 15.0) -> None:
        self.node = node
        self.connect_timeout = connect_timeout
        self.probe_interval = probe_interval
        self.client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"node {self.node.id or '?'} ({self.node.address}:{self.node.port})"

    def connect(self) -> RemoteHost:
        if not self.node.host_keys:
            raise HostKeyMismatch(f"{self.where} has no pinned host key; refusing to connect")
        try:
            pinned = pinned_host_keys(self.node)
        except UnusableHostKey as exc:
            raise HostKeyMismatch(f"{exc}; refusing to connect") from None
        client = paramiko.SSHClient()
        client._host_keys = pinned  # paramiko has no public setter for a HostKeys object
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        t = self.connect_timeout
        try:
            client.connect(self.node.address, self.node.port, self.node.username,
                           key_filename=self.node.private_key or None, look_for_keys=False, allow_agent=False,
                           timeout=t, banner_timeout=t, auth_timeout=t, transport_factory=_gcm_first)
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatch(f"{self.where} presented host key {exc.key.get_fingerprint().hex()}, "
                                  "which is not the pinned key; refusing to connect") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyMismatch(f"{self.where} presented a host key of a type or value that is not "
                                      "pinned; refusing to connect") from None
            raise NodeLost(f"{self.where}: SSH failed: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise NodeLost(f"{self.where} is unreachable: {exc}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
            # paramiko asks for a new key every 512 MB, and a rekey in the middle of a bulk copy-back can stall
            # until it times out; leave rekeying to the server's RekeyLimit (OpenSSH: by cipher, GBs for AES)
            transport.packetizer.REKEY_BYTES = transport.packetizer.REKEY_PACKETS = 1 << 40
        self.client = client
        return self

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self) -> RemoteHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------------------
    def _transport(self) -> paramiko.Transport:
        transport = self.client.get_transport() if self.client else None
        if transport is None or not transport.is_active():
            raise NodeLost(f"{self.where}: the SSH connection is gone")
        return transport

    def open_channel(self, command: str, timeout: float = 15.0, bulk: bool = False) -> paramiko.Channel:
        """A session channel executing `command` (already quoted by the caller); `bulk` for large transfers."""
        try:
            kwargs = {"window_size": BULK_WINDOW, "max_packet_size": BULK_PACKET} if bulk else {}
            chan = self._transport().open_session(timeout=timeout, **kwargs)
            exec_within(chan, command, timeout)  # (paramiko's own wait has no deadline: a node gone silent)
        except (paramiko.SSHException, OSError, EOFError) as exc:  # (TimeoutError is an OSError)
            raise NodeLost(f"{self.where}: could not start a command: {exc}") from None
        return chan

    def execute(self, command: str, stdin: bytes | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
        """Run a short command; returns (exit status, stdout+stderr). NodeLost when the node does not answer."""
        chan = self.open_channel(command)
        chan.set_combine_stderr(True)
        chan.settimeout(timeout)
        out = bytearray()
        try:
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                data = chan.recv(65536)
                if not data:
                    break
                out += data
            status = chan.recv_exit_status()
        except (TimeoutError, paramiko.SSHException, OSError) as exc:
            raise NodeLost(f"{self.where}: no answer within {timeout}s to {command[:60]!r}: {exc!r}") from None
        finally:
            chan.close()
        if status == -1 and not self.alive():
            raise NodeLost(f"{self.where}: the connection died during a command")
        return status, bytes(out)

    def alive(self, timeout: float = 10.0) -> bool:
        """Whether the node still answers a trivial command."""
        try:
            chan = self._transport().open_session(timeout=timeout)
            chan.settimeout(timeout)
            exec_within(chan, "true", timeout)
            while chan.recv(1024):
                pass
            ok = chan.recv_exit_status() == 0
            chan.close()
            return ok
        except (NodeLost, paramiko.SSHException, OSError, EOFError):
            return False

    def kill_group(self, pgid: int) -> None:
        """TERM, then KILL, the process group of a step on the node."""
        cmd = f"kill -TERM -{pgid:d} 2>/dev/null; sleep 1; kill -KILL -{pgid:d} 2>/dev/null; true"
        try:
            self.execute(cmd, timeout=20)
        except NodeLost:
            log.warning("%s: could not kill process group %s", self.where, pgid)

    # -- steps ----------------------------------------------------------------------------------------------
    def run_step(self, command: str, cwd: str, env: Mapping[str, object], on_line: Callable[[str], None],
                 timeout: float | None = None, abort: threading.Event | None = None,
                 on_start: Callable[[], None] | None = None) -> StepOutcome:
        """Run one step, feeding each output line to `on_line`, until it exits, times out or is aborted."""
        start = time.monotonic()
        deadline = start + timeout if timeout else None
        chan = self.open_channel(step_command(command, cwd, env))
        chan.set_combine_stderr(True)
        chan.settimeout(0.2)
        buf = b""
        pgid: int | None = None
        last_data = time.monotonic()
        outcome = StepOutcome()
        try:
            while True:
                try:
                    data = chan.recv(65536)
                except TimeoutError:
                    data = None
                if data:
                    last_data = time.monotonic()
                    buf += data
                    *lines, buf = buf.split(b"\n")
                    for raw in lines:
                        if pgid is None and raw.startswith(PGID_MARK):
                            pgid = int(raw[len(PGID_MARK):].strip() or 0)
                            if on_start:
                                on_start()
                            continue
                        on_line(raw.decode("utf-8", errors="replace").rstrip("\r"))
                elif data == b"":  # EOF: the step closed its output; wait for the exit status
                    if chan.exit_status_ready() or chan.closed:
                        break
                    if not self._transport().is_active():
                        raise NodeLost(f"{self.where}: the SSH connection died while a step ran")
                    time.sleep(0.05)
                now = time.monotonic()
                if abort is not None and abort.is_set():
                    outcome.aborted = True
                    break
                if deadline is not None and now >= deadline:
                    outcome.timed_out = True
                    break
                if data is None and now - last_data > self.probe_interval:
                    if not self.alive():
                        raise NodeLost(f"{self.where} stopped answering while a step ran")
                    last_data = time.monotonic()
            if buf:
                on_line(buf.decode("utf-8", errors="replace").rstrip("\r"))
            if outcome.aborted or outcome.timed_out:
                if pgid:
                    self.kill_group(pgid)
            else:
                outcome.status = chan.recv_exit_status()
                if outcome.status == -1 and not self.alive():
                    raise NodeLost(f"{self.where}: the SSH connection died while a step ran")
        except paramiko.SSHException as exc:
            raise NodeLost(f"{self.where}: SSH failed while a step ran: {exc}") from None
        finally:
            chan.close()
        outcome.elapsed = time.monotonic() - start
        return outcome
