"""The consumer's side of the node pool: ask for nodes, wait, lock them, use them over SSH, give them back.

Example (what the executor does for one build)::

    from gatekeeper.launcher.client import NodeRequestClient

    nodes_client = NodeRequestClient(zk, requestor="executor-1 build 42")
    req_id = nodes_client.request(["debian"], priority=nodes_client.priority(precedence=1, position=3))
    req = nodes_client.wait(req_id, timeout=600)          # NodeRequest: state "fulfilled" or "failed"
    if req.state != "fulfilled":
        raise RuntimeError(req.reason)
    nodes = nodes_client.lock_nodes(req)                  # locked, marked in-use; the request is removed
    with nodes_client.ssh(nodes[0]) as ssh:               # paramiko, host key verified against the pinned keys
        _, out, _ = ssh.exec_command("uname -a")
    for node in nodes:                                    # success: delete; failure: hold for 24 h
        nodes_client.release(node, held=failed, reason="build 42 failed", hold_hours=24)

`release_after_build` applies autohold requests instead of a caller-chosen hold.
"""

from __future__ import annotations

import logging

import paramiko
from kazoo.exceptions import NoNodeError

from gatekeeper.launcher.model import Node, NodeRequest
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.node_changes import (  # noqa: F401 (the operators' node changes, re-exported for the CLI)
    NodeChangeError,
    add_autohold,
    change_node,
    claim_autohold,
    delete_autohold,
    hold_node,
    list_autoholds,
    release_node,
)
from gatekeeper.zk.node_consumer import NodeConsumer
from gatekeeper.zk.node_host_keys import pinned_host_keys
from gatekeeper.zk.nodes import NodeStore, NodeStoreError

log = logging.getLogger("gatekeeper.launcher.client")



class NodeRequestError(Exception):
    pass


def request_path(request_id: str) -> str:
    return paths.node_request(request_id)


def read_node(zk: ZKClient, node_id: str) -> tuple[Node, int]:
    found = NodeStore(zk).read_node(node_id)
    if found is None:
        raise NoNodeError(paths.node(node_id))
    return found


def connect_ssh(node: Node, timeout: float = 10.0) -> paramiko.SSHClient:
    """An SSH connection to `node` that refuses any host key but the ones pinned in its record."""
    ssh = paramiko.SSHClient()
    ssh._host_keys = pinned_host_keys(node)  # paramiko has no public setter for a HostKeys object
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(node.address, node.port, node.username, key_filename=node.private_key or None,
                look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                auth_timeout=timeout)
    return ssh


class NodeRequestClient(NodeConsumer):
    """Request, lock, use (over SSH with pinned host keys) and release nodes. One per consumer process."""

    def request(self, labels: list[str], requestor: str | None = None, priority: int = 100,
                provider: str = "") -> str:
        return super().request(labels, requestor, priority, provider)

    def wait(self, request_id: str, timeout: float | None = None) -> NodeRequest:
        """Block until the request is fulfilled or failed; raises TimeoutError, NodeRequestError if it vanished."""
        try:
            return super().wait(request_id, timeout)
        except NodeStoreError as e:
            raise NodeRequestError(str(e)) from None

    def lock_nodes(self, request: NodeRequest) -> list[Node]:
        """Lock the request's nodes, mark them in-use, and remove the request (one transaction). Returns the nodes."""
        try:
            return super().lock_nodes(request)
        except NodeStoreError as e:
            raise NodeRequestError(str(e)) from None

    def release(self, node: Node, held: bool = False, reason: str = "", hold_hours: float = 24.0,
                change: str = "", owner: str = "") -> None:
        """Give a node back: used (the launcher deletes it) or held for `hold_hours` with `reason` (for the build
        of `change`, "N,P", owned by `owner`, who may then ask for access to it)."""
        try:
            super().release(node, held, reason, hold_hours, change, owner)
        except NodeStoreError as e:
            raise NodeRequestError(str(e)) from None

    def ssh(self, node: Node, timeout: float = 10.0) -> paramiko.SSHClient:
        """A paramiko client connected to the node, host key verified against the pinned keys."""
        return connect_ssh(node, timeout)

    def release_after_build(self, node: Node, failed: bool, project: str, job: str, change: str,
                            reason: str = "") -> bool:
        """Release after a build: held if an autohold matches a failed build, else used. True if held."""
        if failed:
            hold = claim_autohold(self.zk, project, job, change, node.id)
            if hold is not None:
                self.release(node, held=True, reason=hold.reason or reason or f"autohold {hold.id}",
                             hold_hours=hold.hold_hours)
                return True
        self.release(node)
        return False
