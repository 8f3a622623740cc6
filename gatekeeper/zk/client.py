"""The one ZooKeeper connection a service holds: retries, state listeners, optional digest ACLs and TLS."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry
from kazoo.security import make_digest_acl

log = logging.getLogger("gatekeeper.zk.client")


class ConnectionEvent(enum.Enum):
    """What a service may need to react to: pause work on SUSPENDED, rebuild ephemeral state after LOST."""

    CONNECTED = "connected"  # first connection, or back on the same session after a suspension
    SUSPENDED = "suspended"  # connection dropped; session may still be alive
    LOST = "lost"  # session expired: ephemeral nodes and locks are gone
    RECONNECTED = "reconnected"  # connected again with a new session after LOST


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
        self.chroot = chroot.rstrip("/") if chroot else None
        self.auth = auth
        self._listeners: list[Callable[[ConnectionEvent], None]] = []
        self._lost = False
        self._lock = threading.Lock()
        kwargs: dict = {}
        if auth:
            acl = make_digest_acl(auth.username, auth.password, all=True)
            kwargs["default_acl"] = [acl]
            kwargs["auth_data"] = [("digest", f"{auth.username}:{auth.password}")]
        if tls:
            kwargs.update(use_ssl=True, ca=tls.ca, certfile=tls.cert, keyfile=tls.key, verify_certs=True)
        self.client = KazooClient(
            hosts=hosts + (self.chroot or ""),
            timeout=timeout,
            connection_retry=KazooRetry(max_tries=connect_attempts, delay=0.2, max_delay=5, ignore_expire=False),
            command_retry=KazooRetry(max_tries=5, delay=0.1, max_delay=2),
            **kwargs,
        )
        self.client.add_listener(self._on_state)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ZKClient:
        """Connect (retrying until `timeout`) and make sure the chroot exists."""
        if self.chroot:
            # The chroot must exist before a chrooted client can use it: create it through a plain client.
            bootstrap = KazooClient(
                hosts=self.hosts,
                timeout=self.client._session_timeout / 1000.0,
                auth_data=[("digest", f"{self.auth.username}:{self.auth.password}")] if self.auth else None,
                **self._tls_kwargs(),
            )
            bootstrap.start(timeout=timeout)
            try:
                bootstrap.ensure_path(self.chroot)
            finally:
                bootstrap.stop()
                bootstrap.close()
        self.client.start(timeout=timeout)
        return self

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
