"""Puts developers' SSH keys on held nodes and takes them off again, as the access grants in ZooKeeper say.

One keeper is active at a time (a ZooKeeper lock among the launchers). Each pass: a requested grant on a node that
is still held gets its key appended to the node's authorized_keys, marked with the grant's id; an installed grant
whose time is up, that was revoked, or whose node is no longer held has exactly that line removed. Grants of
deleted nodes end without SSH. Every change is in the audit log (`gatekeeper.audit`).
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable

import paramiko
from kazoo.exceptions import BadVersionError, LockTimeout, NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

from gatekeeper.launcher import model
from gatekeeper.launcher.client import connect_ssh, read_node
from gatekeeper.launcher.model import Node
from gatekeeper.sshexec import exec_within
from gatekeeper.zk import access, paths
from gatekeeper.zk.access import FAILED, INSTALLED, REMOVED, REQUESTED, AccessGrant
from gatekeeper.zk.client import ZKClient

log = logging.getLogger("gatekeeper.launcher.access")
audit = logging.getLogger("gatekeeper.audit")

INSTALL_ATTEMPTS = 5
ACCESS_TIMEOUT_S = 30.0  # each wait of a key's install or removal on a node
KEEP_ENDED_S = 24 * 3600  # ended grants stay listed for a day, then go


class AccessKeeper:
    def __init__(self, zk: ZKClient, ssh_key: str = "", interval: float = 5.0,
                 connect: Callable[[Node], paramiko.SSHClient] | None = None) -> None:
        self.zk = zk
        self.ssh_key = ssh_key
        self.interval = interval
        self.connect = connect or self._connect
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = zk.client.Lock(paths.lock("access-keeper"))
        self._attempts: dict[str, int] = {}

    def start(self) -> AccessKeeper:
        self.zk.client.ensure_path(paths.ACCESS)
        ChildrenWatch(self.zk.client, paths.ACCESS, self._on_children)
        self._thread = threading.Thread(target=self._run, name="access-keeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self._lock.release()
        except Exception:
            pass

    def _on_children(self, children: list[str]) -> bool | None:
        if self._stop.is_set():
            return False
        self._wake.set()
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._active():
                    self.run_once()
            except Exception:
                log.exception("access keeper pass failed; trying again")
            self._wake.wait(self.interval)
            self._wake.clear()

    def _active(self) -> bool:
        if self._lock.is_acquired:
            return True
        try:
            return self._lock.acquire(blocking=False)
        except (LockTimeout, NoNodeError):
            return False

    def run_once(self, now: float | None = None) -> None:
        for grant, version in access.list_grants(self.zk):
            try:
                self._step(grant, version, now or time.time())
            except BadVersionError:
                continue  # changed under us (revoked): the next pass sees the new record

    def _step(self, grant: AccessGrant, version: int, now: float) -> None:
        node = self._node(grant.node)
        held = node is not None and node.state == model.HOLD
        due = grant.expires <= now
        if grant.state == REQUESTED:
            if not held or due:
                self._end(grant, version, FAILED, "the node is no longer held" if not held else "it expired first")
                return
            try:
                self._ssh(node, f"umask 077 && mkdir -p ~/.ssh && printf '%s\\n' "
                                f"{shlex.quote(grant.public_key + ' ' + grant.marker)} >> ~/.ssh/authorized_keys")
            except Exception as exc:  # the node may be rebooting: retry a few passes, then give up
                self._attempts[grant.id] = self._attempts.get(grant.id, 0) + 1
                log.warning("access %s: installing the key on node %s failed: %s", grant.id, grant.node, exc)
                if self._attempts[grant.id] >= INSTALL_ATTEMPTS:
                    self._end(grant, version, FAILED, f"the key could not be installed: {exc}")
                return
            grant.state = INSTALLED
            access.save(self.zk, grant, version)
            audit.info("access %s: %s's key installed on node %s (%s) by %s, until %s", grant.id, grant.user,
                       grant.node, node.address, grant.requested_by, _utc(grant.expires))
        elif grant.state == INSTALLED:
            if node is None:
                self._end(grant, version, REMOVED, "the node was deleted")
            elif not held or due:
                why = grant.message or ("the node was released" if not held else "its time was up")
                try:
                    self._ssh(node, f"test ! -f ~/.ssh/authorized_keys || sed -i '/ {grant.marker}$/d' "
                                    "~/.ssh/authorized_keys")
                except Exception as exc:
                    if node.state in (model.HOLD, model.READY, model.IN_USE):
                        log.warning("access %s: removing the key from node %s failed: %s; retrying", grant.id,
                                    grant.node, exc)
                        return
                    why += f" (the node is {node.state}; its key went with it)"
                self._end(grant, version, REMOVED, why)
        elif now - max(grant.expires, grant.created) > KEEP_ENDED_S:
            access.delete(self.zk, grant.id)

    def _end(self, grant: AccessGrant, version: int, state: str, why: str) -> None:
        grant.state, grant.message = state, why
        access.save(self.zk, grant, version)
        self._attempts.pop(grant.id, None)
        audit.info("access %s: %s's key %s node %s: %s", grant.id, grant.user,
                   "removed from" if state == REMOVED else "not installed on", grant.node, why)

    def _node(self, node_id: str) -> Node | None:
        try:
            return read_node(self.zk, node_id)[0]
        except NoNodeError:
            return None
        except (ValueError, TypeError):
            log.warning("access: node %s's record cannot be read", node_id)
            return None

    def _connect(self, node: Node) -> paramiko.SSHClient:
        if self.ssh_key and not node.private_key:
            node.private_key = self.ssh_key
        return connect_ssh(node)

    def _ssh(self, node: Node, command: str) -> None:
        client = self.connect(node)
        try:
            # every wait bounded (paramiko's exec_command and recv_exit_status have none): a node gone silent
            # fails the access request instead of holding it for ever
            channel = client.get_transport().open_session(timeout=ACCESS_TIMEOUT_S)
            channel.settimeout(ACCESS_TIMEOUT_S)
            exec_within(channel, command, ACCESS_TIMEOUT_S)
            channel.set_combine_stderr(True)
            output = bytearray()
            while data := channel.recv(65536):
                output += data
            if not channel.status_event.wait(ACCESS_TIMEOUT_S):
                raise TimeoutError(f"no exit status within {ACCESS_TIMEOUT_S:g}s")
            if channel.exit_status != 0:
                raise RuntimeError(f"exit {channel.exit_status}: {output.decode(errors='replace').strip()}")
        finally:
            client.close()


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))
