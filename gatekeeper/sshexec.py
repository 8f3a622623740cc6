"""Starting a command on an SSH channel with a deadline (paramiko waits for the server's answer without one)."""

from __future__ import annotations

import threading

import paramiko


def exec_within(channel: paramiko.Channel, command: str, timeout: float) -> None:
    """`channel.exec_command(command)`, or TimeoutError when the server has not answered within `timeout`.

    paramiko waits for the answer without a deadline, and forever when the connection closes just as the request
    goes out (the close wakes only the requests already waiting for an answer): at the deadline the channel is
    closed and its waiter woken, as paramiko's own close wakes it."""
    if timeout <= 0:  # (what was left of a caller's deadline)
        channel.close()
        raise TimeoutError("no time left to start the command")
    expired, returned = threading.Event(), threading.Event()

    def expire() -> None:
        expired.set()
        try:
            channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the connection is gone (its caller closed it once woken): nothing to tell the server
        # What exec_command waits on; set on a closed channel, it fails without an answer. Set until it returns:
        # exec_command clears it before it sends the request, and a wake-up that fell just before was lost.
        while not returned.is_set():
            channel.event.set()
            returned.wait(0.05)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        channel.exec_command(command)
    except Exception:
        if expired.is_set():
            raise TimeoutError(f"no answer to the command's start within {timeout:.0f}s") from None
        raise
    finally:
        returned.set()
        timer.cancel()
    if expired.is_set():  # answered just as the deadline passed: the channel was closed under it
        raise TimeoutError(f"no answer to the command's start within {timeout:.0f}s")
