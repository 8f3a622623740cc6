"""The ZooKeeper client's kazoo handler: select(2) for the descriptors kazoo waits on, kazoo's own selector-based
select above FD_SETSIZE (where select(2) cannot go), with the same answers either way."""

from __future__ import annotations

import os
import resource
import socket

from gatekeeper.zk.client import ThreadingHandler

FD_SETSIZE = 1024


def test_select_answers_which_socket_is_readable_and_which_writable() -> None:
    handler = ThreadingHandler()
    a, b = socket.socketpair()
    with a, b:
        assert handler.select([a], [], [], 0) == ([], [], [])
        b.sendall(b"x")
        readable, writable, _ = handler.select([a], [b], [], 1.0)
        assert readable == [a] and writable == [b]


def test_a_descriptor_above_fd_setsize_is_served_by_kazoos_select() -> None:
    handler = ThreadingHandler()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= FD_SETSIZE + 500:  # room for the descriptor (the hard limit allows it on Debian)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FD_SETSIZE + 1000), hard))
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), FD_SETSIZE + 500)
    try:
        with socket.socket(fileno=high) as far, b:
            b.sendall(b"x")
            readable, _, _ = handler.select([far], [], [], 1.0)
            assert readable == [far]
    finally:
        a.close()
