"""Waiting in a service's main thread for the signal that stops it.

Linux delivers a signal sent to the process (`kill`, systemd's SIGTERM, Ctrl-C's SIGINT) to any one of its threads.
Python runs the handler only when the main thread next runs Python code: a main thread blocked in a wait with no
timeout (`Event.wait()`, `Popen.wait()`) is woken only if the signal happened to reach that very thread, so with
many threads a stop signal was sometimes never acted on. Waiting in short steps bounds that delay.
"""

from __future__ import annotations

import subprocess
import threading

STEP = 0.5  # seconds: the longest a delivered stop signal waits for the main thread


def wait_until_set(event: threading.Event) -> None:
    """Block until `event` is set (by a signal handler, say); a handler that raises (KeyboardInterrupt) ends it."""
    while not event.wait(STEP):
        pass


def wait_forever() -> None:
    """Block until a signal handler raises (KeyboardInterrupt from Ctrl-C, say)."""
    wait_until_set(threading.Event())


def wait_for_process(process: subprocess.Popen) -> int:
    """`process.wait()`, in steps, so that a signal handler of ours runs while we wait."""
    while True:
        try:
            return process.wait(STEP)
        except subprocess.TimeoutExpired:
            pass
