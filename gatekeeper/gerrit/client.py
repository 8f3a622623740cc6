"""Gerrit SSH commands for reporting and queries: timeouts, bounded retries with backoff, clear errors.

Built on gerritlib's Gerrit (its command wrappers still work), with `_ssh` replaced: gerritlib's has no
timeout, shares one client without a lock, and drops the server's error text. Arguments are quoted for
Gerrit's splitter with shlex.quote, so a review message of any content arrives verbatim, and several labels
can be sent in one review.
"""

from __future__ import annotations

import json
import logging
import shlex
import socket
import threading
import time
from typing import Any

import paramiko
from gerritlib import gerrit as gerritlib
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.retry import retry_base

from gatekeeper.gerrit.refs import AdvertisementError, branch_heads, read_advertisement
from gatekeeper.gerrit.watcher import TimedSSHConnection
from gatekeeper.models.interfaces import SourceError, SourceUnavailable
from gatekeeper.sshexec import exec_within

log = logging.getLogger("gatekeeper.gerrit.client")

QUERY_PAGE = 500


class GerritError(SourceError):
    """Base of every error the Gerrit connection raises to its callers."""


class GerritCommandError(GerritError):
    """Gerrit ran the command and refused it (exit status != 0); `stderr` holds Gerrit's own text."""

    def __init__(self, host: str, command: str, exit_status: int, stderr: str) -> None:
        self.host = host
        self.command = command
        self.exit_status = exit_status
        self.stderr = stderr
        detail = stderr.strip() or "no error text"
        super().__init__(f"Gerrit {host}: `{_short(command)}` failed with exit status {exit_status}: {detail}")

    @property
    def retryable(self) -> bool:
        # 1 is Gerrit's answer to a bad request; 128 is an internal error; -1 means the channel dropped.
        return self.exit_status not in (1,)


class GerritUnavailableError(GerritError, SourceUnavailable):
    """Gerrit could not be reached or did not answer in time, after every retry."""


class GerritReviewError(GerritError):
    """A review (votes/message) was not applied; the message names the change and Gerrit's reason."""


class GerritSubmitError(GerritReviewError):
    """The change was not merged: Gerrit refused the submit."""


class GerritUncertainError(GerritUnavailableError):
    """A review failed in a way that leaves unknown whether Gerrit applied it, and Gerrit could not be asked."""


TRANSPORT_ERRORS = (OSError, EOFError, paramiko.SSHException, TimeoutError)  # Gerrit not reached or not answering


class _ReviewNotApplied(Exception):
    """One review attempt failed in a way worth another try; `state_unknown`: Gerrit's state could not be read."""

    def __init__(self, error: GerritError, state_unknown: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.state_unknown = state_unknown


def _transient(error: BaseException) -> bool:
    """Whether a command's failure is worth another try: transport errors, timeouts and Gerrit's internal errors,
    never Gerrit's refusal of a bad request."""
    if isinstance(error, GerritCommandError):
        return error.retryable
    return isinstance(error, TRANSPORT_ERRORS)


def _short(command: str, limit: int = 200) -> str:
    return command if len(command) <= limit else command[:limit] + "..."


class GerritClient(gerritlib.Gerrit):
    """SSH commands against one Gerrit. Thread-safe: concurrent calls share one SSH connection (one channel
    each). Every call has a `timeout` and up to `retries` retries on transport errors, timeouts and internal
    errors (never on Gerrit's refusals), with exponential backoff from `retry_delay` capped at `retry_max`."""

    def __init__(
        self,
        hostname: str,
        username: str,
        port: int = 29418,
        keyfile: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        retry_delay: float = 1.0,
        retry_max: float = 10.0,
    ) -> None:
        super().__init__(hostname, username, port, keyfile, connection_attempts=1, retry_delay=0)
        self.connection = TimedSSHConnection(username, hostname, port, keyfile, timeout)
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.retry_max = retry_max
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"{self.connection.hostname}:{self.connection.port}"

    def close(self) -> None:
        with self._lock:
            if self.client is not None:
                self.client.close()
                self.client = None

    # -- running commands -------------------------------------------------------------------------------------
    def run(self, argv: list[str], retry: bool = True, timeout: float | None = None) -> tuple[str, str]:
        """Run a Gerrit command given as argv (quoted for Gerrit's splitter); returns (stdout, stderr)."""
        return self.run_command(" ".join(shlex.quote(a) for a in argv), retry=retry, timeout=timeout)

    def run_command(self, command: str, retry: bool = True, timeout: float | None = None) -> tuple[str, str]:
        attempts = self.retries + 1 if retry else 1

        def failed(state: RetryCallState) -> None:
            log.warning("Gerrit %s: `%s` failed: %s", self.host, _short(command, 80), state.outcome.exception())

        def retrying(state: RetryCallState) -> None:
            log.info("Retrying `%s` on Gerrit %s in %.1fs (attempt %d of %d)", _short(command, 80), self.host,
                     state.upcoming_sleep, state.attempt_number + 1, attempts)

        policy = self._retrying(attempts, retry_if_exception(_transient), after=failed, before_sleep=retrying)
        try:
            return policy(self._ssh_once, command, timeout or self.timeout)
        except TRANSPORT_ERRORS as e:
            raise GerritUnavailableError(
                f"Gerrit {self.host}: `{_short(command)}` failed after {attempts} attempt(s): {e}"
            ) from e

    def _retrying(self, attempts: int, retry: retry_base, **hooks: Any) -> Retrying:
        """Up to `attempts` tries of what `retry` accepts as transient, with exponential backoff from
        `retry_delay` capped at `retry_max`; the last failure is raised as it is."""
        return Retrying(stop=stop_after_attempt(attempts), retry=retry, reraise=True, sleep=time.sleep,
                        wait=wait_exponential(multiplier=self.retry_delay, max=self.retry_max), **hooks)

    def _ssh(self, command: str) -> tuple[str, str]:
        """gerritlib's hook: every gerritlib wrapper (getVersion, listProjects, ...) gets timeouts and retries."""
        return self.run_command(command)

    def _connected(self) -> tuple[paramiko.SSHClient, paramiko.Transport]:
        """The shared connection and its transport, read together: another command's reset may close the client
        at any moment, and a closed client has no transport left to ask for."""
        with self._lock:
            client = self.client
            if client is None or not client.get_transport() or not client.get_transport().is_active():
                if client is not None:
                    client.close()
                client = self.client = self.connection.connect()
                # A command is a few small request/answer packets: without this, Nagle's algorithm holds a packet
                # back until the previous one is acknowledged, which the server delays (~40 ms a command).
                client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return client, client.get_transport()

    def _reset(self, client: paramiko.SSHClient) -> None:
        with self._lock:
            if self.client is client:
                self.client = None
        client.close()

    def _ssh_once(self, command: str, timeout: float) -> tuple[str, str]:
        deadline = time.monotonic() + timeout
        client, transport = self._connected()
        try:
            channel = transport.open_session(timeout=timeout)
        except Exception:
            self._reset(client)
            raise
        try:
            exec_within(channel, command, deadline - time.monotonic())
            out, err = bytearray(), bytearray()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no answer within {timeout:.0f}s")
                channel.settimeout(min(remaining, 0.5))
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    data = None
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if data:
                    out += data
                elif data is not None:  # EOF on stdout
                    break
                elif channel.closed and not channel.recv_ready():
                    break  # (closed while recv waited: what arrived with the close is read first)
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no exit status within {timeout:.0f}s")
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
            status = channel.recv_exit_status()
        except TimeoutError as e:
            channel.close()
            self._reset(client)  # the server may be wedged; start afresh next time
            raise TimeoutError(f"Gerrit {self.host}: `{_short(command, 80)}`: {e}") from None
        except Exception:
            # One channel's failure is its own: the commands in flight on the connection go on (a connection that
            # died is replaced by the next command).
            channel.close()
            raise
        channel.close()
        stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        if status != 0:
            raise GerritCommandError(self.host, command, status, stderr)
        return stdout, stderr

    def branch_heads(self, project: str) -> dict[str, str]:
        """Branch -> tip revision of `project`, from its git ref advertisement (as `git ls-remote` reads it) over
        this client's SSH connection. Raises GerritCommandError for an unknown project, GerritUnavailableError
        when Gerrit cannot be reached."""
        command = f"git-upload-pack {shlex.quote('/' + project)}"
        client, transport = self._connected()
        try:
            channel = transport.open_session(timeout=self.timeout)
        except TRANSPORT_ERRORS as e:
            self._reset(client)
            raise GerritUnavailableError(f"Gerrit {self.host}: cannot list the branches of {project}: {e}") from e
        try:
            try:
                exec_within(channel, command, self.timeout)
            except paramiko.SSHException:
                if not channel.exit_status_ready():
                    raise
                # the command ended (an unknown project) before its start was acknowledged: its error is there
            return branch_heads(read_advertisement(channel, self.timeout))
        except AdvertisementError as e:
            raise GerritCommandError(self.host, command, 1, str(e)) from e
        except TRANSPORT_ERRORS as e:
            if isinstance(e, TimeoutError):
                self._reset(client)  # the server may be wedged; start afresh next time
            raise GerritUnavailableError(f"Gerrit {self.host}: cannot list the branches of {project}: {e}") from e
        finally:
            channel.close()

    # -- queries ----------------------------------------------------------------------------------------------
    def query_changes(self, query: str, *flags: str, limit: int | None = None) -> list[dict]:
        """Every change matching `query` (pages with -S), as Gerrit's JSON rows without the stats row.
        `flags` are query options such as "--current-patch-set", "--all-approvals", "--comments"."""
        rows: list[dict] = []
        start = 0
        while True:
            argv = ["gerrit", "query", "--format", "JSON", *flags]
            if start:
                argv += ["-S", str(start)]
            out, _ = self.run([*argv, query])
            more = False
            page = 0
            for line in out.splitlines():
                if not line.strip():
                    continue
                data = json.loads(line)
                if data.get("type") == "error":
                    raise GerritCommandError(self.host, f"gerrit query {query}", 1, data.get("message", ""))
                if data.get("type") == "stats":
                    more = bool(data.get("moreChanges"))
                    continue
                rows.append(data)
                page += 1
            start += page
            if not more or page == 0 or (limit is not None and len(rows) >= limit):
                return rows[:limit] if limit is not None else rows

    def get_change(self, number: int, *flags: str) -> dict | None:
        """One change's query row (with --current-patch-set unless other flags are given), or None."""
        rows = self.query_changes(f"change:{number}", *(flags or ("--current-patch-set",)))
        return rows[0] if rows else None

    def version(self) -> str:
        out, _ = self.run(["gerrit", "version"])
        return out.strip().split(" ")[2]

    # -- reporting --------------------------------------------------------------------------------------------
    def review(
        self,
        change: int,
        patchset: int,
        message: str | None = None,
        labels: dict[str, int] | None = None,
        submit: bool = False,
        tag: str | None = None,
        project: str | None = None,
        marker: str | None = None,
    ) -> None:
        """Post votes and/or a message on `change,patchset`, optionally submitting, in one `gerrit review`.

        The message may hold anything (quotes, newlines, `$(...)`, unicode); labels are sent as
        `--label Name=+N`. Exit status 0 is Gerrit's word that the review (and the submit) happened: no query
        follows it. After a failure whose effect is unknown (a dropped channel, a timeout, an internal error)
        Gerrit's state is read before anything is sent again: a merged change is never submitted twice, and
        when `marker` (a text unique to this message) is given, a message already there is never posted twice
        (only the submit is repeated). Raises GerritReviewError (GerritSubmitError when submitting) naming the
        change and Gerrit's reason, GerritUnavailableError when Gerrit could not be reached within the retries,
        or GerritUncertainError when it is not known whether the review was applied.
        """
        what = f"change {change},{patchset}" + (f" in {project}" if project else "")
        command = self._review_command(change, patchset, message, labels, submit, tag, project)
        retrying = self._retrying(
            self.retries + 1, retry_if_exception_type(_ReviewNotApplied),
            before_sleep=lambda state: log.warning("Gerrit %s: review of %s failed (%s); retrying", self.host, what,
                                                   state.outcome.exception().error))
        try:
            for attempt in retrying:
                tries = attempt.retry_state.attempt_number
                with attempt:
                    try:
                        self.run_command(command, retry=False)
                        return
                    except GerritCommandError as e:
                        error: GerritError = e
                        transient = e.retryable
                    except GerritUnavailableError as e:
                        error, transient = e, True
                    if not transient:
                        cls = GerritSubmitError if submit else GerritReviewError
                        raise cls(f"Gerrit {self.host}: review of {what} failed: {error.stderr.strip() or error}"
                                  ) from error
                    state = self.review_state(change, marker)
                    if state is not None:
                        merged, posted = state
                        if submit and merged:
                            return  # the submit (which posts the review first) went through; its answer was lost
                        if posted and not submit:
                            return
                        if posted:  # the votes and message are there; only the submit is missing
                            command = self._review_command(change, patchset, None, None, True, None, project)
                    raise _ReviewNotApplied(error, state is None)
        except _ReviewNotApplied as last:
            error = last.error
            if last.state_unknown and (marker or submit):
                raise GerritUncertainError(
                    f"Gerrit {self.host}: review of {what} failed after {tries} attempt(s) and Gerrit's "
                    f"state could not be read to tell whether it was applied: {error.__cause__ or error}"
                ) from error
            raise GerritUnavailableError(
                f"Gerrit {self.host}: review of {what} failed after {tries} attempt(s): "
                f"{error.__cause__ or error}"
            ) from error

    @staticmethod
    def _review_command(change: int, patchset: int, message: str | None, labels: dict[str, int] | None,
                        submit: bool, tag: str | None, project: str | None) -> str:
        argv = ["gerrit", "review"]
        if project:
            argv += ["--project", project]
        if message:
            argv += ["--message", message]
        for label, value in (labels or {}).items():
            argv += ["--label", f"{label}={int(value):+d}"]
        if tag:
            argv += ["--tag", tag]
        if submit:
            argv.append("--submit")
        argv.append(f"{change},{patchset}")
        return " ".join(shlex.quote(a) for a in argv)

    def review_state(self, change: int, marker: str | None = None) -> tuple[bool, bool] | None:
        """(merged, a message containing `marker` is there) as Gerrit shows it now; None if it cannot be read."""
        try:
            row = self.get_change(change, "--current-patch-set", "--comments")
        except GerritError as e:
            log.warning("Gerrit %s: cannot read change %s: %s", self.host, change, e)
            return None
        if row is None:
            return None
        posted = bool(marker) and any(marker in (c.get("message") or "") for c in row.get("comments") or [])
        return row.get("status") == "MERGED", posted

