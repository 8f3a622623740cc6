"""Copying directories to and from a node: a tar stream over the build's own SSH connection, or rsync.

Both verify the node's pinned host key: the tar stream rides the paramiko connection that already did, and rsync
runs OpenSSH with a known_hosts file holding only the pinned keys and StrictHostKeyChecking=yes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile

from gatekeeper.executor.remote import NodeLost, RemoteHost, known_hosts_text
from gatekeeper.zk.node_records import Node

CHUNK = 1 << 18


class TransferError(Exception):
    """A copy to or from a node failed (with the node reachable): the node or its disk is broken."""


def push_tar(remote: RemoteHost, src: str, dest: str, timeout: float = 600.0) -> int:
    """Copy the contents of local `src` into `dest` on the node (created); returns bytes sent."""
    command = f"mkdir -p {shlex.quote(dest)} && exec tar -xf - -C {shlex.quote(dest)}"
    chan = remote.open_channel(command, bulk=True)
    chan.settimeout(timeout)
    tar = subprocess.Popen(["tar", "-cf", "-", "-C", src, "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = 0
    try:
        while True:
            data = tar.stdout.read(CHUNK)
            if not data:
                break
            chan.sendall(data)
            sent += len(data)
        chan.shutdown_write()
        err = b""
        while True:
            part = chan.recv_stderr(65536)
            if not part:
                break
            err += part
        status = chan.recv_exit_status()
    except OSError as exc:
        raise NodeLost(f"{remote.where}: the connection failed while copying {src}: {exc}") from None
    finally:
        chan.close()
        tar.stdout.close()
        tar.wait()
        if tar.stderr:
            tar.stderr.close()
    if status == -1 and not remote.alive():
        raise NodeLost(f"{remote.where}: the connection died while copying {src}")
    if status != 0:
        raise TransferError(f"{remote.where}: unpacking {src} into {dest} failed ({status}): "
                            f"{err.decode(errors='replace').strip()}")
    return sent


class PinnedSSH:
    """OpenSSH (for rsync, or a bulk stream) to one node: its login key, and only its pinned host keys."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._dir = tempfile.mkdtemp(prefix="gk-rsync-")
        self.known_hosts = os.path.join(self._dir, "known_hosts")
        with open(self.known_hosts, "w") as f:
            f.write(known_hosts_text(node))

    def ssh_args(self) -> list[str]:
        parts = ["ssh", "-p", str(self.node.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                 "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                 "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.node.private_key:
            parts += ["-i", self.node.private_key, "-o", "IdentitiesOnly=yes"]
        return parts

    def ssh_command(self) -> str:
        """The ssh command line as one string, for `rsync -e`."""
        return " ".join(shlex.quote(p) for p in self.ssh_args())

    def target(self, path: str) -> str:
        host = f"[{self.node.address}]" if ":" in self.node.address else self.node.address
        return f"{self.node.username}@{host}:{path}"

    def close(self) -> None:
        for name in (self.known_hosts,):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        os.rmdir(self._dir)

    def __enter__(self) -> PinnedSSH:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rsync(node: Node, src: str, dest: str, remote: str, timeout: float) -> None:
    """rsync src/ into dest/; `remote` says which side ("src" or "dest") is on the node."""
    with PinnedSSH(node) as rs:
        src_arg = rs.target(src) if remote == "src" else src
        dest_arg = rs.target(dest) if remote == "dest" else dest
        cmd = ["rsync", "-a", "--mkpath", "--protect-args", "-e", rs.ssh_command(),
               src_arg.rstrip("/") + "/", dest_arg.rstrip("/") + "/"]
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        where = f"node {node.id} ({node.address}:{node.port})"
        if proc.returncode == 255 or "Host key verification failed" in err:
            raise NodeLost(f"{where}: rsync could not connect: {err}")
        raise TransferError(f"{where}: rsync of {src} to {dest} failed ({proc.returncode}): {err}")


def push_rsync(node: Node, src: str, dest: str, timeout: float = 600.0) -> None:
    """rsync the contents of local `src` into `dest` on the node (relative paths are under the login's home)."""
    _rsync(node, src, dest, "dest", timeout)


def pull_rsync(node: Node, src: str, dest: str, timeout: float = 600.0) -> None:
    """rsync the contents of `src` on the node into local `dest`."""
    _rsync(node, src, dest, "src", timeout)
