"""Who is up: each running service registers an ephemeral znode that operators and other services can list.

A registration survives connection loss: when the session expires, the ephemeral node is gone, and it is
created again as soon as the client reconnects with a new session.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from kazoo.exceptions import NodeExistsError, NoNodeError

import gatekeeper
from gatekeeper.zk import paths
from gatekeeper.zk.client import ConnectionEvent, ZKClient, through_outages
from gatekeeper.zk.record import Record

log = logging.getLogger("gatekeeper.zk.components")

UNREGISTER_WAIT_S = 5.0  # how long a stopping service waits for ZooKeeper to remove its registration


@dataclass
class ComponentInfo(Record):
    """One running service: what it is, where, which version, and what it is doing."""

    VERSION = 1
    kind: str = ""
    ident: str = ""
    hostname: str = ""
    pid: int = 0
    version: str = gatekeeper.__version__
    state: str = "initializing"  # initializing, running, paused, stopped
    started: float = field(default_factory=time.time)
    extra: dict = field(default_factory=dict)


class Component:
    """This process's registration as one `kind` of service."""

    def __init__(self, zk: ZKClient, kind: str, extra: dict | None = None) -> None:
        self.zk = zk
        host = socket.gethostname()
        self.info = ComponentInfo(
            kind=kind,
            ident=f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            hostname=host,
            pid=os.getpid(),
            extra=extra or {},
        )
        self.path = paths.component(kind, self.info.ident)
        self._lock = threading.Lock()
        self._registered = False

    def register(self, state: str = "running") -> None:
        """Register, trying again through connection losses and session expiry (`through_outages`): the write is a
        create or a set of this process's own record, harmless sent twice."""
        self.info.state = state
        with self._lock:
            through_outages(self._write)
            self._registered = True
        self.zk.add_listener(self._on_connection)

    def set_state(self, state: str) -> None:
        with self._lock:
            self.info.state = state
            if self._registered:
                self._write()

    def unregister(self, timeout: float = UNREGISTER_WAIT_S) -> None:
        """Remove the registration, waiting at most `timeout` seconds for ZooKeeper: a service stopping while
        ZooKeeper cannot be reached must still stop (the record is ephemeral: it goes with the session)."""
        with self._lock:
            self._registered = False
            try:
                self.zk.client.delete_async(self.path).get(timeout=timeout)
            except NoNodeError:
                pass
            except Exception as exc:  # unreachable or slow: the session's end removes the record
                log.warning("%s %s: could not remove its registration (%s); it goes when the session ends",
                            self.info.kind, self.info.ident, type(exc).__name__)
        try:
            self.zk.remove_listener(self._on_connection)
        except ValueError:
            pass

    def _write(self) -> None:
        data = self.info.to_bytes()
        try:
            self.zk.client.create(self.path, data, ephemeral=True, makepath=True)
        except NodeExistsError:
            self.zk.client.set(self.path, data)

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event is ConnectionEvent.RECONNECTED:
            with self._lock:
                if self._registered:
                    log.info("re-registering %s %s after session loss", self.info.kind, self.info.ident)
                    self._write()


def list_components(zk: ZKClient, kind: str | None = None) -> list[ComponentInfo]:
    """Every registered service (of one kind, or all), sorted by kind and id."""
    kinds = [kind] if kind else _children(zk, paths.COMPONENTS)
    out = []
    for k in kinds:
        for ident in _children(zk, paths.component(k)):
            try:
                raw, _ = zk.client.get(paths.component(k, ident))
            except NoNodeError:
                continue
            out.append(ComponentInfo.from_bytes(raw))
    return sorted(out, key=lambda c: (c.kind, c.ident))


def _children(zk: ZKClient, path: str) -> list[str]:
    try:
        return sorted(zk.client.get_children(path))
    except NoNodeError:
        return []
