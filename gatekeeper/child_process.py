"""Child processes that die with the process that started them: a SIGKILLed test run or all-in-one leaves no
ZooKeeper JVM or sshd behind.

Linux delivers a parent-death signal (prctl PR_SET_PDEATHSIG, which util-linux's `setpriv --pdeathsig` sets before
it execs the command) when the *thread* that forked the child exits, not the process. So a child started from a
short-lived thread (a request handler, a worker) would be killed as soon as that thread ends: such children are
forked from one long-lived thread instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("gatekeeper.child_process")

PR_SET_PDEATHSIG = 1


def tied_command(cmd: Sequence[str]) -> tuple[list[str], Callable[[], None] | None]:
    """`cmd` made to receive SIGKILL when its parent thread exits: prefixed with `setpriv --pdeathsig KILL` when
    util-linux has it, else with a preexec function calling prctl (the command itself, unchanged)."""
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "KILL", "--", *cmd], None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    parent = os.getpid()

    def set_pdeathsig() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return list(cmd), set_pdeathsig


class _Spawner:
    """One daemon thread, alive as long as the process, that forks the children of every other thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen], Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        if threading.current_thread() is threading.main_thread():
            return start()  # the main thread lives until the interpreter exits
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="child-process-spawner", daemon=True)
                self._thread.start()
        done: Future = Future()
        self._queue.put((start, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            start, done = self._queue.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # handed to the caller, who raises it in its own thread
                done.set_exception(exc)


_spawner = _Spawner()


def start_tied(cmd: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen(cmd, **popen_kwargs)` for a long-lived child that must not outlive this process."""
    argv, preexec = tied_command(cmd)
    if preexec is not None:
        popen_kwargs["preexec_fn"] = preexec
    return _spawner.run(lambda: subprocess.Popen(argv, **popen_kwargs))
