"""Starting a command on an SSH channel with a deadline (paramiko waits for the server's answer without one)."""

from __future__ import annotations

import threading

import paramiko


def exec_within(channel: paramiko.Channel, command: str, timeout: float) -> None:
    """`channel.exec_command(command)`, or TimeoutError when the server has not answered within `timeout`.

    paramiko waits for the answer without a deadline, and forever when the connection closes just as the request
    goes out (the close wakes only the requests already waiting for an answer): at the deadline the channel is
    closed and its waiter woken, as paramiko's own close wakes it."""
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        try:
            channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the connection is gone (its caller closed it once woken): nothing to tell the server
        finally:
            channel.event.set()  # what exec_command waits on; set on a closed channel, it fails without an answer

    timer = threading.Timer(max(0.0, timeout), expire)
    timer.daemon = True
    timer.start()
    try:
        channel.exec_command(command)
    except Exception:
        if expired.is_set():
            raise TimeoutError(f"no answer to the command's start within {timeout:.0f}s") from None
        raise
    finally:
        timer.cancel()
    if expired.is_set():  # answered just as the deadline passed: the channel was closed under it
        raise TimeoutError(f"no answer to the command's start within {timeout:.0f}s")
