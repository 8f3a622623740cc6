"""What wakes the launcher's main loop: the typed events on its queue.

Workers report what happened in the cloud (a launch's outcome, a server deleted); ZooKeeper answers the writes
and reads the loop sent without waiting (`Answer`); watches, timers, cleanup and the image builder hand the loop
work to do in its own thread (`Call`); `Wake` only asks it to look at its requests again, `Stop` ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gatekeeper.zk.nodes import Pending


@dataclass(frozen=True)
class LaunchResult:
    """A launch ended: the server is up (address, port, scanned host keys) or it failed, and how."""

    node_id: str
    ok: bool
    external_id: str = ""
    address: str = ""
    port: int = 22
    host_keys: list | None = None
    username: str = ""  # the login user the server says (a static host's own); "": as launched
    error: str = ""
    quota: bool = False
    image_missing: bool = False  # the cloud no longer has the image it was booted from
    tried: bool = True  # False: not sent to the cloud at all (its image upload was found bad meanwhile)


@dataclass(frozen=True)
class ServerDeleted:
    """A node's server was deleted and is gone (ok), or would not go away (cleanup retries it)."""

    provider: str
    node_id: str
    ok: bool


@dataclass(frozen=True)
class Call:
    """Run `fn` in the main loop, the only thread that changes the launcher's caches."""

    fn: Callable[[], None]


@dataclass(frozen=True)
class Answer:
    """ZooKeeper answered a request the main loop sent without waiting: run `done` with its result."""

    pending: Pending
    done: Callable[[object], None]


@dataclass(frozen=True)
class Wake:
    """Look at the requests again (a backoff ended, room was freed)."""


@dataclass(frozen=True)
class Stop:
    """The launcher is stopping: leave the loop."""


Event = LaunchResult | ServerDeleted | Answer | Call | Wake | Stop
