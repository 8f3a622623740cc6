"""The one ZooKeeper connection a service holds: retries, state listeners, optional digest ACLs and TLS."""

from __future__ import annotations

import enum
import logging
import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, ConnectionLoss, NoAuthError, NoNodeError
from kazoo.handlers.threading import AsyncResult, KazooTimeoutError, SequentialThreadingHandler
from kazoo.handlers.utils import selector_select
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry, RetryFailedError
from kazoo.security import ACL, Permissions, make_digest_acl

log = logging.getLogger("gatekeeper.zk.client")


class ConnectionEvent(enum.Enum):
    """What a service may need to react to: pause work on SUSPENDED, rebuild ephemeral state after LOST."""

    CONNECTED = "connected"  # first connection, or back on the same session after a suspension
    SUSPENDED = "suspended"  # connection dropped; session may still be alive
    LOST = "lost"  # session expired: ephemeral nodes and locks are gone
    RECONNECTED = "reconnected"  # connected again with a new session after LOST


class ThreadingHandler(SequentialThreadingHandler):
    """kazoo's threading handler with a cheaper select(). kazoo's own builds an epoll selector, registers the
    sockets and closes it again on every call, several calls per request: most of the CPU of a busy client (a
    launcher handing out nodes spent 87% of its CPU in kazoo's connection thread, half of it there). select(2) does
    the same for the two descriptors kazoo waits on; above FD_SETSIZE it falls back to kazoo's."""

    def select(self, *args, **kwargs):
        try:
            return select.select(*args, **kwargs)
        except ValueError:  # a descriptor select(2) cannot take (or a bad argument: kazoo's says which)
            return selector_select(*args, **kwargs)

    def async_result(self) -> AnswerResult:
        return AnswerResult(self)


class AnswerResult(AsyncResult):
    """kazoo's answer to a request, which can also call back on kazoo's connection thread as the answer is read
    (`rawlink_now`), not after a hand-off to its completion thread: one thread switch less per answer, and answers
    and the tree watches' events (gatekeeper.zk.tree_watch) then reach their callers in ZooKeeper's order."""

    def __init__(self, handler) -> None:
        super().__init__(handler)
        self._now: list[Callable[[AnswerResult], None]] = []

    def rawlink_now(self, callback: Callable[[AnswerResult], None]) -> None:
        """Call `callback(self)` once the answer is in: on the connection thread as it is read, or at once if it
        is in already. The callback must not block nor send any ZooKeeper request, not even without waiting: that
        thread reads the answers, and kazoo wakes it through a socket only it drains."""
        with self._condition:
            if not self.ready():
                self._now.append(callback)
                return
        callback(self)

    def _do_callbacks(self) -> None:
        now, self._now = self._now, []
        for callback in now:
            try:
                callback(self)
            except Exception:  # never let a caller's callback break the connection thread
                log.exception("ZooKeeper answer callback failed")
        super()._do_callbacks()


# How long an operator command waits for ZooKeeper before it says it cannot reach it (services wait longer).
OPERATOR_CONNECT_TIMEOUT = 5.0


class ZooKeeperError(Exception):
    """ZooKeeper cannot be used as configured: a sentence for people, and the exit code a command ends with."""

    exit_code = 1


class ZooKeeperUnreachable(ZooKeeperError):
    """No server at the configured hosts answered within the time given."""


class ZooKeeperSettingError(ZooKeeperError):
    """The hosts or chroot setting cannot be right (a config error)."""

    exit_code = 3


class ChrootNotOwned(ZooKeeperError):
    """The chroot exists with ACLs other than gatekeeper's own: someone else made it, and may change our data."""


@dataclass
class TLSOptions:
    """Client-side TLS: CA to verify the server, and this client's certificate and key (PEM files)."""

    ca: str
    cert: str
    key: str


@dataclass
class DigestAuth:
    """gatekeeper's ZooKeeper account; with it, our tree is writable by that account only."""

    username: str
    password: str


class ZKClient:
    """A kazoo client with what every gatekeeper service needs around it.

    `client` is the raw KazooClient for recipes (Lock, Election, ...) and plain reads and writes.
    """

    def __init__(
        self,
        hosts: str,
        *,
        chroot: str | None = None,
        timeout: float = 10.0,
        auth: DigestAuth | None = None,
        tls: TLSOptions | None = None,
        connect_attempts: int = -1,
    ) -> None:
        self.hosts = hosts
        self.chroot = (chroot.rstrip("/") or None) if chroot else None
        self.auth = auth
        _check_setting(hosts, self.chroot)
        if tls:
            for key, path in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
                if not os.path.isfile(path) or not os.access(path, os.R_OK):
                    raise ZooKeeperSettingError(f"zookeeper.tls.{key}: {path} is not a file this process can read")
        self._listeners: list[Callable[[ConnectionEvent], None]] = []
        self._lost = False
        self._lock = threading.Lock()
        kwargs: dict = {}
        self.acl: ACL | None = None
        if auth:
            acl = make_digest_acl(auth.username, auth.password, all=True)
            self.acl = acl
            kwargs["default_acl"] = [acl]
            kwargs["auth_data"] = [("digest", f"{auth.username}:{auth.password}")]
        if tls:
            kwargs.update(use_ssl=True, ca=tls.ca, certfile=tls.cert, keyfile=tls.key, verify_certs=True)
        self.client = KazooClient(
            hosts=hosts + (self.chroot or ""),
            timeout=timeout,
            connection_retry=KazooRetry(max_tries=connect_attempts, delay=0.2, max_delay=5, ignore_expire=False),
            command_retry=KazooRetry(max_tries=5, delay=0.1, max_delay=2),
            handler=ThreadingHandler(),
            **kwargs,
        )
        self.client.add_listener(self._on_state)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ZKClient:
        """Connect (retrying until `timeout`) and make sure the chroot exists and is ours.

        Raises ZooKeeperUnreachable when no server answers in time, ChrootNotOwned when the chroot carries
        another owner's ACLs.
        """
        attempts = _ConnectAttempts()
        kazoo_log = logging.getLogger("kazoo.client")
        kazoo_log.addFilter(attempts)
        try:
            if self.chroot:
                self._ensure_chroot(timeout)
            self.client.start(timeout=timeout)
        except KazooTimeoutError:
            self._close_quietly()
            last = f" (last error: {attempts.last})" if attempts.last else ""
            raise ZooKeeperUnreachable(
                f"cannot reach ZooKeeper at {self.hosts} within {timeout:g} s{last}; is it running there, and are "
                "zookeeper.hosts and its TLS settings right?") from None
        finally:
            kazoo_log.removeFilter(attempts)
        return self

    def _ensure_chroot(self, timeout: float) -> None:
        """Create the chroot (with our ACL when we have an account) through a plain client, and check its owner."""
        bootstrap = KazooClient(
            hosts=self.hosts,
            timeout=self.client._session_timeout / 1000.0,
            auth_data=[("digest", f"{self.auth.username}:{self.auth.password}")] if self.auth else None,
            **self._tls_kwargs(),
        )
        try:
            bootstrap.start(timeout=timeout)
        except KazooTimeoutError:
            bootstrap.close()
            raise
        try:
            try:
                bootstrap.ensure_path(self.chroot, acl=[self.acl] if self.acl else None)
            except NoAuthError:
                raise ChrootNotOwned(f"cannot create ZooKeeper node {self.chroot} on {self.hosts} (zookeeper.chroot):"
                                     " a node above it does not let "
                                     + (f"user {self.auth.username}" if self.auth else "an anonymous client")
                                     + " create children; choose another zookeeper.chroot") from None
            if self.acl:
                self._check_owner(bootstrap)
        finally:
            bootstrap.stop()
            bootstrap.close()

    def _check_owner(self, client: KazooClient) -> None:
        """Refuse a chroot whose ACL is anything but our own account with every permission."""
        assert self.acl is not None and self.auth is not None
        where = f"ZooKeeper node {self.chroot} on {self.hosts} (zookeeper.chroot)"
        advice = (f"it was created by another client or account; choose another zookeeper.chroot, or have its "
                  f"owner give it to us (setAcl {self.chroot} digest:{self.acl.id.id}:cdrwa)")
        try:
            acls, stat = client.get_acls(self.chroot)
        except NoAuthError:
            raise ChrootNotOwned(f"{where} does not let user {self.auth.username} read it: either zookeeper.auth's "
                                 "password (GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD) is not the one it was created with, or "
                                 f"it is not ours ({advice})") from None
        others = [a for a in acls if (a.id.scheme, a.id.id) != (self.acl.id.scheme, self.acl.id.id)]
        mine = [a for a in acls if a not in others]
        if (others or not mine or mine[0].perms != Permissions.ALL) and self._take_over(client, stat.aversion):
            return
        if others or not mine or mine[0].perms != Permissions.ALL:
            granted = ", ".join(f"{a.id.scheme}:{a.id.id.split(':')[0]} {_perms(a.perms)}" for a in acls)
            raise ChrootNotOwned(f"{where} is not ours: its ACL grants {granted or 'nothing'}, where gatekeeper "
                                 f"needs digest:{self.auth.username} cdrwa alone; {advice}")

    def _take_over(self, client: KazooClient, acl_version: int) -> bool:
        """Give the chroot our ACL when an older gatekeeper made it open but everything in it is ours.

        Before the chroot node carried the ACL itself, gatekeeper created it open to anyone: such a chroot has
        children, all with our digest ACL, which only someone who knows our password's digest can set.
        """
        assert self.acl is not None
        try:
            children = client.get_children(self.chroot)
            if not children or any(client.get_acls(f"{self.chroot}/{c}")[0] != [self.acl] for c in children):
                return False
            client.set_acls(self.chroot, [self.acl], version=acl_version)
        except (NoAuthError, BadVersionError, NoNodeError):
            return False
        log.warning("ZooKeeper node %s (zookeeper.chroot) was open to anyone, with only our data in it: it now has "
                    "our ACL as well", self.chroot)
        return True

    def _close_quietly(self) -> None:
        try:
            self.client.stop()
            self.client.close()
        except Exception:
            log.debug("closing an unconnected client failed", exc_info=True)

    def _tls_kwargs(self) -> dict:
        if not self.client.use_ssl:
            return {}
        return dict(
            use_ssl=True,
            ca=self.client.ca,
            certfile=self.client.certfile,
            keyfile=self.client.keyfile,
            verify_certs=True,
        )

    def stop(self) -> None:
        try:
            self.client.stop()
        finally:
            self.client.close()

    @property
    def connected(self) -> bool:
        return self.client.connected

    # -- state listeners ---------------------------------------------------------------------------------------
    def add_listener(self, callback: Callable[[ConnectionEvent], None]) -> None:
        """Call `callback(ConnectionEvent)` on every connection state change (from a kazoo thread: be quick)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[ConnectionEvent], None]) -> None:
        self._listeners.remove(callback)

    def _on_state(self, state: str) -> None:
        # kazoo calls this from its connection thread; it must not block, so hand off to a thread.
        with self._lock:
            if state == KazooState.LOST:
                self._lost = True
                event = ConnectionEvent.LOST
            elif state == KazooState.SUSPENDED:
                event = ConnectionEvent.SUSPENDED
            else:
                event = ConnectionEvent.RECONNECTED if self._lost else ConnectionEvent.CONNECTED
                self._lost = False
        log.info("ZooKeeper connection %s (%s)", event.value, self.hosts)
        for callback in list(self._listeners):
            threading.Thread(target=self._notify, args=(callback, event), daemon=True).start()

    @staticmethod
    def _notify(callback: Callable[[ConnectionEvent], None], event: ConnectionEvent) -> None:
        try:
            callback(event)
        except Exception:
            log.exception("connection listener %r failed on %s", callback, event.value)


class _ConnectAttempts(logging.Filter):
    """Kazoo's warnings while a client first connects: the last one goes into our own error, not each to the log."""

    def __init__(self) -> None:
        super().__init__()
        self.last = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        message = record.getMessage()
        if message.startswith("Connection dropped: "):
            self.last = message[len("Connection dropped: "):]
        elif not message.startswith("Failed connecting to Zookeeper"):
            return True
        log.debug("connecting to ZooKeeper: %s", message)
        return False


T = TypeVar("T")
STARTUP_WAIT_S = 60.0  # longer than an ensemble takes to elect a leader


def through_outages(call: Callable[..., T], *args: Any, wait: float = STARTUP_WAIT_S) -> T:
    """`call(*args)`, sent again through connection losses and session expiry: for a service's start-up steps
    (creating its paths, registering, setting its watches), so that ZooKeeper electing a leader as a service starts
    does not stop it. `call` must be safe to send twice; one that gave up after kazoo's own retries (a watch) is
    sent again too. Once `wait` seconds have passed, the next failure is ConnectionLoss (a call that kazoo holds
    while it reconnects waits for the connection, as any call does)."""

    def attempt() -> T:
        try:
            return call(*args)
        except RetryFailedError as exc:  # kazoo's command retries ran out: one more loss for this retry
            raise ConnectionLoss(str(exc)) from exc

    retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=2.0, deadline=wait, ignore_expire=True)
    try:
        return retry(attempt)
    except RetryFailedError as exc:
        raise ConnectionLoss(f"ZooKeeper unreachable for {wait:.0f}s") from exc


def _perms(perms: int) -> str:
    """ZooKeeper's letters for a permission mask: cdrwa."""
    letters = ((Permissions.CREATE, "c"), (Permissions.DELETE, "d"), (Permissions.READ, "r"),
               (Permissions.WRITE, "w"), (Permissions.ADMIN, "a"))
    return "".join(letter for bit, letter in letters if perms & bit) or "-"


def _check_setting(hosts: str, chroot: str | None) -> None:
    """A hosts list kazoo can parse, and a chroot that is an absolute ZooKeeper path."""
    from kazoo.hosts import collect_hosts

    try:
        parsed, _ = collect_hosts(hosts)
    except ValueError as exc:
        raise ZooKeeperSettingError(f'zookeeper.hosts "{hosts}" is not a list of host:port ({exc})') from None
    if not parsed:
        raise ZooKeeperSettingError("zookeeper.hosts is empty (expected host:port[,host:port...])")
    if chroot is None:
        return
    parts = chroot.split("/")
    if not chroot.startswith("/") or any(p in ("", ".", "..") for p in parts[1:]) or "\x00" in chroot:
        raise ZooKeeperSettingError(f'zookeeper.chroot "{chroot}" is not an absolute ZooKeeper path such '
                                    "as /gatekeeper")
    if parts[1] == "zookeeper":
        raise ZooKeeperSettingError(f'zookeeper.chroot "{chroot}" is inside /zookeeper, which ZooKeeper keeps for '
                                    "itself")
