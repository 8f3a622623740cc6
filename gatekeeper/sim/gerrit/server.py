"""The simulator's SSH daemon (paramiko server mode): public-key auth, exec dispatch, event streams, git relay."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import paramiko

from gatekeeper.sim.gerrit.commands import CommandResult, fault_names, run_gerrit_command
from gatekeeper.sim.gerrit.hooks import SCP_FILES
from gatekeeper.sim.gerrit.receive import PUSH_FD_ENV, receive_pack_config, serve_push, write_hook
from gatekeeper.sim.gerrit.split import gerrit_split

if TYPE_CHECKING:
    from gatekeeper.sim.gerrit.simulator import GerritSimulator

log = logging.getLogger("gatekeeper.sim.gerrit.server")

ANSWER_WAIT_S = 10.0  # a command waits this long at most for its exec request's answer to go out

BANNER = (
    "\r\n  ****    Welcome to Gerrit Code Review    ****\r\n\r\n"
    "  Hi {name}, you have successfully connected over SSH.\r\n\r\n"
    "  Unfortunately, interactive shells are disabled.\r\n"
    "  To clone a hosted Git repository, use:\r\n\r\n"
    "  git clone ssh://{user}@{host}:{port}/REPOSITORY_NAME.git\r\n\r\n"
)


class StreamListener:
    """One `gerrit stream-events` channel: a buffer of lines and a writer thread (batches of up to 32)."""

    def __init__(self, server: SSHServer, channel: paramiko.Channel, types: set[str] | None,
                 username: str | None = None) -> None:
        self.server = server
        self.username = username
        self.channel = channel
        self.types = types
        self._buf: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = False
        self.dropped_count = 0

    def push(self, etype: str | None, line: bytes) -> None:
        if etype is not None and self.types and etype not in self.types:
            return
        limit = self.server.sim.stream_buffer
        with self._cond:
            if limit and len(self._buf) >= limit:
                # Gerrit's StreamEvents: drop, and say so ahead of the next event that fits.
                if not self._dropped:
                    self._dropped = True
                    self.dropped_count += 1
                return
            if self._dropped:
                self._dropped = False
                self._buf.append(json.dumps({"type": "dropped-output",
                                             "eventCreatedOn": int(time.time())}).encode() + b"\n")
            self._buf.append(line)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def run(self) -> None:
        faults = self.server.sim.faults
        try:
            while True:
                with self._cond:
                    while not self._buf and not self._closed and not self.channel.closed:
                        self._cond.wait(0.5)
                    if self._closed or self.channel.closed:
                        return
                if faults.streams_paused:
                    faults.wait_resumed(0.5)
                    continue
                with self._cond:
                    batch = [self._buf.popleft() for _ in range(min(len(self._buf), self.server.sim.stream_batch))]
                self.channel.sendall(b"".join(batch))
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self.server.remove_listener(self)


class _AnswerWatch:
    """A connection's socket as its paramiko transport uses it, telling when an exec or shell request was answered.

    Gerrit answers such a request before the command can write or end. paramiko answers it from the transport's
    thread once our callback returned, and a busy machine can run the command's thread first: a fast command's
    close then overtook the answer, and a paramiko client raised "Channel closed." for a command that ran. The
    transport's thread sends nothing between our callback's return and that answer, so the first packet it sends
    after `expect()` is the answer; the command's thread waits for it before writing anything."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.transport: paramiko.Transport | None = None
        self._expected: list[threading.Event] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)  # recv, settimeout, close, ... as the socket's

    def expect(self) -> threading.Event:
        """In a request callback (the transport's thread): an event set once the request's answer was sent."""
        answered = threading.Event()
        self._expected.append(answered)
        return answered

    def send(self, data: bytes, *flags: int) -> int:
        sent = self._sock.send(data, *flags)
        if self._expected and threading.current_thread() is self.transport:
            answered, self._expected = self._expected, []
            for event in answered:
                event.set()
        return sent


def _wait_answered(channel: paramiko.Channel, answered: threading.Event) -> None:
    """Wait until the request that started this channel's command was answered (or the connection ended)."""
    transport = channel.get_transport()
    deadline = time.monotonic() + ANSWER_WAIT_S
    while not answered.wait(0.1) and transport.is_active() and time.monotonic() < deadline:
        pass


class _Session(paramiko.ServerInterface):
    """paramiko's per-connection callbacks."""

    def __init__(self, server: SSHServer, transport: paramiko.Transport, answers: _AnswerWatch) -> None:
        self.server = server
        self.transport = transport
        self.answers = answers
        self.username: str | None = None

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        account = self.server.sim.accounts.get(username)
        if account and any(k.get_name() == key.get_name() and k.asbytes() == key.asbytes()
                           for k in account.public_keys):
            self.username = username
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        return False  # keeps git on protocol v0, as the reference prototype did

    def check_channel_pty_request(self, *args: object) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        threading.Thread(target=self.server.shell, args=(channel, self.username, self.answers.expect()),
                         daemon=True).start()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode("utf-8", errors="replace")
        argv = gerrit_split(text)
        fault = self.server.sim.faults.take_exec_fault(fault_names(argv))
        if fault is not None and fault.unanswered:
            self.server.go_silent(self.transport)  # this thread answers the request: no answer while it waits
            return False
        if fault is not None:
            channel.close()  # before the answer, which paramiko then sends for a closed channel
            return False
        listener = None
        if argv[:2] == ["gerrit", "stream-events"]:
            # Registered before the exec reply, so every event after the client's exec_command() returns
            # reaches it (the connection's catch-up relies on that).
            types = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-s", "--subscribe")}
            listener = StreamListener(self.server, channel, types or None, self.username)
            self.server.add_listener(listener, self.transport)
        threading.Thread(
            target=self.server.run_exec, args=(channel, self.username, argv, text, listener, self.answers.expect()),
            name=f"gerrit-sim-exec-{argv[:2]}", daemon=True,
        ).start()
        return True


class SSHServer:
    """Accepts TCP connections and runs one paramiko Transport per connection."""

    def __init__(self, sim: GerritSimulator, host: str, port: int, host_key_file: str | None) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        if host_key_file and os.path.exists(host_key_file):
            self.host_key: paramiko.PKey = paramiko.ECDSAKey.from_private_key_file(host_key_file)
        else:
            self.host_key = paramiko.ECDSAKey.generate()
            if host_key_file:
                self.host_key.write_private_key_file(host_key_file)
        self.hooks_dir = write_hook(os.path.join(sim.root, "hooks"))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._transports: set[paramiko.Transport] = set()
        self._listeners: dict[StreamListener, paramiko.Transport] = {}
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None

    def start(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        sock.settimeout(0.5)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="gerrit-sim-accept", daemon=True)
        self._accept_thread.start()
        return self.port

    def stop(self) -> None:
        self._stopping.set()
        if self._sock:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept at once, not at its next timeout
            except OSError:
                pass
        if self._accept_thread:
            self._accept_thread.join(5)
        if self._sock:
            self._sock.close()
        with self._lock:
            transports = list(self._transports)
            listeners = list(self._listeners)
        for listener in listeners:
            listener.close()
        for t in transports:
            t.close()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.sim.faults.refuse_connections:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        answers = _AnswerWatch(conn)
        transport = answers.transport = paramiko.Transport(answers)
        transport.local_version = f"SSH-2.0-GerritCodeReview_{self.sim.version} (APACHE-SSHD-2.12.0)"
        transport.add_server_key(self.host_key)
        with self._lock:
            self._transports.add(transport)
        try:
            transport.start_server(server=_Session(self, transport, answers))
            # Channels are acted on in the exec callback; accept() them here and hold a reference, because
            # paramiko's transport keeps channels only weakly and a collected Channel closes itself.
            channels: list[paramiko.Channel] = []
            while transport.is_active() and not self._stopping.is_set():
                chan = transport.accept(1.0)
                channels = [c for c in channels if not c.closed]
                if chan is not None:
                    channels.append(chan)
        except (paramiko.SSHException, EOFError, OSError) as e:
            log.debug("SSH connection ended: %s", e)
        finally:
            transport.close()
            with self._lock:
                self._transports.discard(transport)

    def go_silent(self, transport: paramiko.Transport) -> None:
        """Read and answer nothing more on `transport` (it is its own thread that calls this) until the faults are
        cleared or the server stops; then close it."""
        while not self.sim.faults.wait_answering(0.2) and not self._stopping.is_set():
            pass
        transport.close()

    # -- streams ----------------------------------------------------------------------------------------------
    def add_listener(self, listener: StreamListener, transport: paramiko.Transport) -> None:
        with self._lock:
            self._listeners[listener] = transport

    def remove_listener(self, listener: StreamListener) -> None:
        with self._lock:
            self._listeners.pop(listener, None)

    def listener_count(self, username: str | None = None) -> int:
        with self._lock:
            return sum(1 for li in self._listeners if not li.channel.closed
                       and (username is None or li.username == username))

    def broadcast(self, etype: str | None, line: bytes) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.push(etype, line)

    def cut_streams(self) -> int:
        with self._lock:
            items = list(self._listeners.items())
        for listener, transport in items:
            listener.close()
            transport.close()
        return len(items)

    # -- commands ---------------------------------------------------------------------------------------------
    def shell(self, channel: paramiko.Channel, username: str | None, answered: threading.Event) -> None:
        account = self.sim.accounts.get(username or "")
        _wait_answered(channel, answered)
        channel.sendall(BANNER.format(name=account.name if account else username, user=username,
                                      host=self.host, port=self.port).encode())
        channel.send_exit_status(127)
        channel.close()

    def run_exec(self, channel: paramiko.Channel, username: str | None, argv: list[str], text: str,
                 listener: StreamListener | None, answered: threading.Event) -> None:
        _wait_answered(channel, answered)
        try:
            if listener is not None:
                listener.run()
                _finish(channel, CommandResult())
                return
            if argv and (argv[0] in ("git-upload-pack", "git-receive-pack")
                         or (argv[0] == "git" and len(argv) > 1 and argv[1] in ("upload-pack", "receive-pack"))):
                self._git(channel, username, argv)
                return
            if argv and argv[0] == "scp":
                self._scp(channel, argv)
                return
            result = run_gerrit_command(self.sim, username, argv, channel)
            _finish(channel, result)
        except Exception:
            log.exception("simulated command %r failed", text)
            _finish(channel, CommandResult(stderr="fatal: internal server error\n", status=128))

    def _scp(self, channel: paramiko.Channel, argv: list[str]) -> None:
        """`scp -O host:hooks/commit-msg .`: the source side of the legacy scp protocol, for the hook only."""
        flags = [a for a in argv[1:] if a.startswith("-")]
        paths = [a for a in argv[1:] if not a.startswith("-")]
        if "-f" not in flags or len(paths) != 1:
            _finish(channel, CommandResult(stderr="fatal: scp: only downloads of hooks/commit-msg are served\n",
                                           status=1))
            return
        body = SCP_FILES.get(paths[0])

        def ack() -> bool:
            return channel.recv(1) == b"\0"

        try:
            if not ack():
                return
            if body is None:
                channel.sendall(f"\x01scp: {paths[0]}: No such file or directory\n".encode())
                channel.send_exit_status(1)
                return
            data = body.encode()
            if "-p" in flags:
                now = int(time.time())
                channel.sendall(f"T{now} 0 {now} 0\n".encode())
                if not ack():
                    return
            channel.sendall(f"C0755 {len(data)} {os.path.basename(paths[0])}\n".encode())
            if not ack():
                return
            channel.sendall(data + b"\0")
            ack()
            channel.send_exit_status(0)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            channel.shutdown_write()
            channel.close()

    def _git(self, channel: paramiko.Channel, username: str | None, argv: list[str]) -> None:
        service = argv[0] if argv[0].startswith("git-") else f"git-{argv[1]}"
        path = (argv[1] if argv[0].startswith("git-") else argv[2]) if len(argv) > 1 else ""
        name = path.strip("'\"").lstrip("/")
        if name.endswith(".git"):
            name = name[: -len(".git")]
        project = self.sim.projects.get(name)
        if project is None:
            _finish(channel, CommandResult(stderr=f"fatal: '{name}': not a Gerrit project\n", status=1))
            return
        pusher = self.sim.account(username)
        before = project.repo.refs() if service == "git-receive-pack" else {}
        config: list[str] = []
        env = dict(os.environ)
        pass_fds: tuple[int, ...] = ()
        push_thread = None
        if service == "git-receive-pack":
            # refs/for/* goes to the proc-receive hook, which asks the simulator over this socket pair.
            ours, theirs = socket.socketpair()
            config = receive_pack_config(self.hooks_dir)
            env[PUSH_FD_ENV] = str(theirs.fileno())
            pass_fds = (theirs.fileno(),)
            push_thread = threading.Thread(
                target=serve_push, name="gerrit-sim-push", daemon=True,
                args=(ours, lambda cmds, opts: self.sim.receive_for_review(project, cmds, opts, pusher)))
            push_thread.start()
        try:
            proc = subprocess.Popen(
                ["git", *config, service[len("git-"):], project.repo.path],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, pass_fds=pass_fds,
            )
        finally:
            if pass_fds:
                theirs.close()

        def pump_in() -> None:
            try:
                while True:
                    data = channel.recv(65536)
                    if not data:
                        break
                    proc.stdin.write(data)
                    proc.stdin.flush()
            except (OSError, ValueError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        def pump_err() -> None:
            for chunk in iter(lambda: proc.stderr.read1(65536), b""):
                channel.sendall_stderr(chunk)

        threads = [threading.Thread(target=pump_in, daemon=True), threading.Thread(target=pump_err, daemon=True)]
        for t in threads:
            t.start()
        try:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                channel.sendall(chunk)
        except OSError:
            proc.kill()
        status = proc.wait()
        threads[1].join(5)
        if push_thread is not None:
            push_thread.join(5)
        if service == "git-receive-pack" and status == 0:
            self.sim.after_receive_pack(project, before, pusher)
        # a git killed by a signal (its client went away mid-fetch) ends as a shell reports it: 128 + the signal
        channel.send_exit_status(status if status >= 0 else 128 - status)
        channel.shutdown_write()
        channel.close()


def _finish(channel: paramiko.Channel, result: CommandResult) -> None:
    """Write output, then the exit status, then close: gerritlib reads stdout to EOF before the status."""
    try:
        if result.stdout:
            channel.sendall(result.stdout.encode() if isinstance(result.stdout, str) else result.stdout)
        if result.stderr:
            channel.sendall_stderr(result.stderr.encode())
        channel.send_exit_status(result.status)
        channel.shutdown_write()
        channel.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass
