"""A project's branches as Gerrit's git serves them: the ref advertisement of `git-upload-pack` over the
connection's SSH (what `git ls-remote` reads), without fetching anything."""

from __future__ import annotations

import time

import paramiko


class AdvertisementError(ValueError):
    """What the server sent is not a git ref advertisement."""


def read_advertisement(channel: paramiko.Channel, timeout: float) -> dict[str, str]:
    """Ref name -> revision, from the pkt-lines an upload-pack sends first (protocol v0), up to the flush packet;
    then tells the server that nothing is wanted. Raises TimeoutError, or AdvertisementError with the server's
    text when it is no advertisement (an unknown project)."""
    deadline = time.monotonic() + timeout
    buffer = bytearray()
    refs: dict[str, str] = {}

    def take(n: int) -> bytes:
        while len(buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no ref advertisement within {timeout:.0f}s")
            channel.settimeout(remaining)
            data = channel.recv(65536)
            if not data:
                raise AdvertisementError(_stderr(channel, deadline) or "the connection closed before the ref "
                                                                      "advertisement ended")
            buffer.extend(data)
        chunk = bytes(buffer[:n])
        del buffer[:n]
        return chunk

    while True:
        head = take(4)
        try:
            size = int(head, 16)
        except ValueError:
            raise AdvertisementError(f"not a git pkt-line: {head!r}") from None
        if size == 0:
            break
        line = take(size - 4).rstrip(b"\n").split(b"\0", 1)[0].decode("utf-8", "replace")
        sha, _, name = line.partition(" ")
        if name and name != "capabilities^{}":
            refs[name] = sha
    channel.sendall(b"0000")  # a flush: we want nothing
    return refs


def branch_heads(refs: dict[str, str]) -> dict[str, str]:
    """Branch name -> tip revision, from an advertisement's refs."""
    return {name[len("refs/heads/"):]: sha for name, sha in refs.items() if name.startswith("refs/heads/")}


def _stderr(channel: paramiko.Channel, deadline: float) -> str:
    """What the command wrote to stderr, once it has ended (waiting for its exit status until `deadline`)."""
    channel.status_event.wait(max(0.0, deadline - time.monotonic()))
    err = bytearray()
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)
    return err.decode("utf-8", "replace").strip()
