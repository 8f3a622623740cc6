"""Spare hosts: SSH hosts started ahead of any boot, so that a boot only binds one to its server.

In a real cloud the hypervisors that start servers are other machines; here every host (a network namespace and an
sshd) is started on the machine that also runs what is being measured. A pool of spares moves that start-up out of
the boot: the pool is filled before, and refilled after, the boots that matter, never during them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("gatekeeper.sim.openstack.spares")

H = TypeVar("H")


@dataclass(frozen=True)
class SpareStatus:
    """How many spares are wanted, ready to be taken, and being started."""

    target: int
    ready: int
    starting: int

    def to_dict(self) -> dict[str, int]:
        return {"target": self.target, "ready": self.ready, "starting": self.starting}


class SparePool(Generic[H]):
    """Keeps `target` hosts started by `start` ready to be taken; `end` ends one that is not needed any more.

    `workers` background threads start them (a start mostly waits for processes it forked: two keep two cores
    busy), and only when nothing boots: not while a boot is in progress (the backend's own, or one a busy check
    reports, such as a cloud's server still in BUILD), and not before `settle` seconds have passed since the last
    one, so that the pool never takes the CPU from a boot being timed.
    """

    MAX = 250  # spares at most (a netns backend's bridge holds 253 hosts, spares and servers together)
    RETRY_AFTER = 1.0  # seconds to wait after a start failed, so that a broken setup does not spin
    POLL = 0.1  # how often to look again while something boots

    def __init__(self, start: Callable[[], H], end: Callable[[H], None], *, settle: float = 1.0, workers: int = 2,
                 name: str = "spare-hosts") -> None:
        self._start = start
        self._end = end
        self.settle = settle
        self.workers = workers
        self.name = name
        self._busy_checks: list[Callable[[], bool]] = []
        self._ready: list[H] = []
        self._target = 0
        self._refill_taken = True  # a spare taken is replaced (False: the pool is a stock, filled once)
        self._starting = 0
        self._boots = 0
        self._quiet_since = time.monotonic()
        # Counts what can turn busy() true or change the need (a take, a boot's start and end, a busy check added,
        # a cloud's server going into BUILD through changed(), a new target): a refill starts a host only if it has
        # not moved since its busy() said nothing boots.
        self._changes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []

    # -- what the backend and the clouds use -----------------------------------------------------
    def set_target(self, count: int, refill: bool = True) -> SpareStatus:
        """Keep `count` spares from now on; spares beyond it are ended at once. `refill` False: start them once, and
        replace none that a boot takes (nothing then starts while timed boots run, however long they take)."""
        if count < 0 or count > self.MAX:
            raise ValueError(f"spare hosts: {count} is not between 0 and {self.MAX}")
        with self._cond:
            if self._closed:
                raise RuntimeError("spare hosts: the pool is closed")
            self._target = count
            self._refill_taken = refill
            self._changes += 1
            surplus, self._ready = self._ready[count:], self._ready[:count]
            if count and not self._threads:
                self._threads = [threading.Thread(target=self._refill, name=f"{self.name}-{i}", daemon=True)
                                 for i in range(self.workers)]
                for thread in self._threads:
                    thread.start()
            self._cond.notify_all()
        for host in surplus:
            self._end_quietly(host)
        return self.status()

    def take(self) -> H | None:
        """A ready spare, or None when there is none (the caller then starts a host itself)."""
        with self._cond:
            host = self._ready.pop(0) if self._ready else None
            if host is not None and not self._refill_taken:
                self._target -= 1
            self._changes += 1
            self._cond.notify_all()
            return host

    @contextlib.contextmanager
    def booting(self) -> Iterator[None]:
        """Around a boot: no spare is started while it runs, nor `settle` seconds after."""
        with self._cond:
            self._boots += 1
            self._changes += 1
        try:
            yield
        finally:
            with self._cond:
                self._boots -= 1
                self._quiet_since = time.monotonic()
                self._changes += 1
                self._cond.notify_all()

    def add_busy_check(self, check: Callable[[], bool]) -> None:
        """`check()` true means a boot is in progress elsewhere (a cloud's server not ACTIVE yet): wait."""
        with self._cond:
            self._busy_checks.append(check)
            self._changes += 1

    def changed(self) -> None:
        """What a busy check reports may have changed (a cloud's server went into BUILD): a refill that asked
        before this must ask again before it starts a host."""
        with self._cond:
            self._changes += 1

    def remove_busy_check(self, check: Callable[[], bool]) -> None:
        with self._cond:
            if check in self._busy_checks:
                self._busy_checks.remove(check)

    def status(self) -> SpareStatus:
        with self._cond:
            return SpareStatus(self._target, len(self._ready), self._starting)

    def hosts(self) -> list[H]:
        """The spares ready to be taken, in the order boots take them."""
        with self._cond:
            return list(self._ready)

    def busy(self) -> bool:
        """Whether a boot is in progress (the backend's own, or one a busy check reports): no spare starts then."""
        with self._cond:
            if self._boots:
                return True
            checks = list(self._busy_checks)
        # outside the pool's lock: a check takes its cloud's lock, and a cloud's boot takes the pool's
        return any(check() for check in checks)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the pool holds its target (False when `timeout` seconds pass first)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or len(self._ready) >= self._target, timeout)

    def close(self) -> None:
        """Stop refilling and end every spare (one being started is ended once it is up)."""
        with self._cond:
            self._closed = True
            threads, self._threads = self._threads, []
            ready, self._ready = self._ready, []
            self._cond.notify_all()
        for thread in threads:
            thread.join()
        for host in ready:
            self._end_quietly(host)

    # -- the refill threads ----------------------------------------------------------------------
    def _wait(self, seconds: float | None) -> None:
        with self._cond:
            if not self._closed:
                self._cond.wait(seconds)

    def _refill(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if not self._short():
                    self._cond.wait()
                    continue
                seen = self._changes
            if self.busy():
                with self._cond:
                    self._quiet_since = time.monotonic()
                self._wait(self.POLL)
                continue
            quiet = time.monotonic() - self._quiet_since
            if quiet < self.settle:
                self._wait(self.settle - quiet)
                continue
            with self._cond:
                # another worker may have taken the last place meanwhile, or something counted in _changes happened
                # since busy() answered (a thread can be held up between the two on a loaded machine): look again
                if self._closed or not self._short() or self._changes != seen:
                    continue
                self._starting += 1
            self._start_one()

    def _short(self) -> bool:
        return len(self._ready) + self._starting < self._target

    def _start_one(self) -> None:
        host: H | None = None
        try:
            host = self._start()
        except Exception as e:
            log.warning("%s: a spare host could not be started: %s", self.name, e)
        with self._cond:
            self._starting -= 1
            keep = host is not None and not self._closed and len(self._ready) < self._target
            if keep:
                self._ready.append(host)  # type: ignore[arg-type]
            self._cond.notify_all()
        if host is None:
            self._wait(self.RETRY_AFTER)
        elif not keep:
            self._end_quietly(host)

    def _end_quietly(self, host: H) -> None:
        try:
            self._end(host)
        except Exception:
            log.exception("%s: ending a spare host", self.name)
