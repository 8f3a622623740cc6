"""gerritlib's GerritWatcher, fixed: buffered lines are delivered at once, it stops cleanly, and it reconnects
with capped exponential backoff.

gerritlib 0.11 reads one line per poll() wake-up, so lines already pulled into paramiko's BufferedFile wait
until more bytes arrive; it has no stop(), and after a clean EOF it reconnects in a tight loop leaking the old
client. This subclass keeps gerritlib's connection handling and states and replaces the read loop.

A stream can also die silently (packets dropped, nothing closed): TCP would notice only after minutes of
retransmits. So every `keepalive_interval` seconds the watcher sends an SSH global request that wants a reply
(any reply, even a refusal, proves the peer alive); no reply within `keepalive_timeout` seconds and the
connection is dropped and opened again, and the caller catches up on what it missed (`on_connected`).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable

import paramiko
from gerritlib import gerrit as gerritlib

from gatekeeper.sshexec import exec_within

log = logging.getLogger("gatekeeper.gerrit.watcher")

MAX_LINE_BYTES = 4 * 1024 * 1024  # Gerrit events are a few KiB; a longer line is garbage and skipped
HEALTHY_STREAM_S = 10.0  # a stream that lived this long resets the backoff
KEEPALIVE_INTERVAL_S = 5.0  # how often a silent-death probe is sent on the stream's SSH connection
KEEPALIVE_TIMEOUT_S = 5.0  # no answer within this long: the connection is dead (detected within 10-11 s)


class StreamDead(RuntimeError):
    """The stream's SSH connection stopped answering (a network blackhole, a wedged server)."""


class KeepaliveProbe:
    """One SSH global request with want_reply on a transport, answered or not: paramiko's global_request()
    blocks without a deadline, so it runs in a thread of its own and the watcher checks the clock."""

    def __init__(self, transport: paramiko.Transport) -> None:
        self.transport = transport
        self.sent_at = time.monotonic()
        self.answered = threading.Event()
        threading.Thread(target=self._ask, name="gerrit-stream-keepalive", daemon=True).start()

    def _ask(self) -> None:
        try:
            # Gerrit (like OpenSSH) refuses the unknown request: the refusal is the answer we want.
            self.transport.global_request("keepalive@openssh.com", wait=True)
        except Exception:
            pass  # the transport died: the stream read fails on its own
        finally:
            self.answered.set()

    def overdue(self, timeout: float) -> bool:
        return not self.answered.is_set() and time.monotonic() - self.sent_at > timeout


class TimedSSHConnection(gerritlib.GerritConnection):
    """gerritlib's connection with timeouts on connect/auth, and only the configured key (no agent, no ~/.ssh)."""

    def __init__(self, username: str, hostname: str, port: int, keyfile: str | None, timeout: float,
                 keep_alive: int = 15) -> None:
        super().__init__(username, hostname, port, keyfile, keep_alive=keep_alive, connection_attempts=1,
                         retry_delay=0)
        self.timeout = timeout

    def connect(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(
                self.hostname, port=self.port, username=self.username, key_filename=self.keyfile,
                timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
                allow_agent=False, look_for_keys=self.keyfile is None,
            )
        except BaseException:
            client.close()
            raise
        if self.keep_alive:
            client.get_transport().set_keepalive(self.keep_alive)
        return client


class _Sink:
    """The `gerrit` object GerritWatcher wants: only its `.connection` is used by this subclass."""

    def __init__(self, connection: TimedSSHConnection) -> None:
        self.connection = connection

    def addEvent(self, data: object) -> None:  # noqa: N802 (gerritlib's name)
        raise AssertionError("StreamWatcher delivers lines through on_line")


class StreamWatcher(gerritlib.GerritWatcher):
    """Runs `gerrit stream-events` and calls `on_line(bytes, received_at)` for every line, in order.

    `on_connected()` is called right after the stream command was accepted, before any line of that stream,
    so the caller can catch up on what it missed while disconnected.
    """

    def __init__(
        self,
        hostname: str,
        port: int,
        username: str,
        keyfile: str | None,
        on_line: Callable[[bytes, float], None],
        on_connected: Callable[[], None] | None = None,
        *,
        connect_timeout: float = 10.0,
        backoff_min: float = 0.2,
        backoff_max: float = 30.0,
        max_line_bytes: int = MAX_LINE_BYTES,
        name: str = "gerrit",
        keepalive_interval: float = KEEPALIVE_INTERVAL_S,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        connection = TimedSSHConnection(username, hostname, port, keyfile, connect_timeout)
        super().__init__(_Sink(connection), connection_attempts=1, retry_delay=backoff_min)
        self.connection = connection
        self.name = f"gerrit-watcher-{name}"
        self.daemon = True
        self.on_line = on_line
        self.on_connected = on_connected
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.max_line_bytes = max_line_bytes
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        self.dead_streams = 0  # connections dropped because they stopped answering keepalives
        self._stop_event = threading.Event()
        self._client: paramiko.SSHClient | None = None
        self._discarding = False
        self.failures = 0
        self.connects = 0

    # -- public -----------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading, close the SSH connection and wait for the thread to end."""
        self._stop_event.set()
        client = self._client
        if client is not None:
            client.close()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop_event.is_set()

    # -- gerritlib overrides ----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.state = gerritlib.DISCONNECTED
                self._run()
        finally:
            self.state = gerritlib.DEAD

    def _run(self) -> None:
        self.state = gerritlib.CONNECTING
        started = time.monotonic()
        try:
            client = self.connection.connect()
        except Exception as e:
            log.warning("Cannot connect to Gerrit %s:%s for stream-events: %s", self.connection.hostname,
                        self.connection.port, e)
            self._backoff(started)
            return
        self._client = client
        if self._stop_event.is_set():
            client.close()
            return
        self.state = gerritlib.CONNECTED
        try:
            self._consume(client)
            log.info("Gerrit stream-events from %s:%s ended", self.connection.hostname, self.connection.port)
        except StreamDead as e:
            self.dead_streams += 1
            log.warning("Gerrit stream-events from %s:%s: %s; reconnecting", self.connection.hostname,
                        self.connection.port, e)
        except Exception as e:
            if not self._stop_event.is_set():
                log.warning("Gerrit stream-events from %s:%s failed: %s", self.connection.hostname,
                            self.connection.port, e)
        finally:
            self._client = None
            client.close()
            self.state = gerritlib.DISCONNECTED
        self._backoff(started)

    def _backoff(self, started: float) -> None:
        if self._stop_event.is_set():
            return
        if time.monotonic() - started >= HEALTHY_STREAM_S:
            self.failures = 0
        delay = min(self.backoff_max, self.backoff_min * (2 ** self.failures))
        self.failures += 1
        log.info("Reconnecting to Gerrit stream-events in %.1fs", delay)
        self._stop_event.wait(delay)

    def _consume(self, client: paramiko.SSHClient) -> None:
        channel = client.get_transport().open_session(timeout=self.connection.timeout)
        exec_within(channel, "gerrit stream-events", self.connection.timeout)
        fd = channel.makefile("rb")
        self.connects += 1
        self.state = gerritlib.CONSUMING
        self._discarding = False
        if self.on_connected is not None:
            self.on_connected()
        self._listen(fd, None)
        if self._stop_event.is_set():
            return
        status = channel.recv_exit_status() if channel.status_event.wait(1.0) else -1
        if status:
            raise RuntimeError(f"stream-events ended with exit status {status}")

    def _listen(self, stdout: paramiko.ChannelFile, stderr: object) -> None:
        poll = select.poll()
        poll.register(stdout.channel, select.POLLIN)
        transport = stdout.channel.get_transport()
        probe: KeepaliveProbe | None = None
        next_probe = time.monotonic() + self.keepalive_interval
        while self.state != gerritlib.DISCONNECTED and not self._stop_event.is_set():
            for _fd, event in poll.poll(500):
                if event & select.POLLIN:
                    self._read(stdout)
                else:
                    raise RuntimeError(f"poll event {event} on the stream-events channel")
            if not self.keepalive_interval:
                continue
            if probe is not None and probe.overdue(self.keepalive_timeout):
                raise StreamDead(f"no answer to an SSH keepalive within {self.keepalive_timeout:.0f}s")
            if (probe is None or probe.answered.is_set()) and time.monotonic() >= next_probe:
                probe = KeepaliveProbe(transport)
                next_probe = time.monotonic() + self.keepalive_interval

    def _read(self, fd: paramiko.ChannelFile) -> None:
        # Zuul's fix: keep reading while paramiko's buffer holds data, or those lines wait for the next packet.
        while True:
            line = fd.readline(self.max_line_bytes + 1)
            if not line:
                self.state = gerritlib.DISCONNECTED
                return
            received = time.time()
            complete = line.endswith(b"\n")
            if self._discarding:
                self._discarding = not complete
            elif not complete and len(line) > self.max_line_bytes:
                log.warning("Skipping an event line longer than %d bytes: %r...", self.max_line_bytes, line[:200])
                self._discarding = True
            else:
                try:
                    self.on_line(line, received)
                except Exception:
                    log.exception("Handling a Gerrit event line failed: %r", line[:500])
            if fd._pos == fd._realpos:
                return
