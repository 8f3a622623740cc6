"""A provider's health: a circuit breaker on boot failures, and the figures operators read.

healthy ──(`threshold` consecutive failures, or most recent boots failing)──▶ backing off (for `backoff`,
doubling on each re-opening up to `backoff_cap`) ──(backoff over)──▶ probing (one launch allowed) ──▶ healthy if
the probe boots, backing off again (longer) if it fails.

Quota refusals are not health failures (the cloud is well, only full), nor are boots whose image is gone (the
upload is bad, not the cloud). Owned by the launcher's main loop.
"""

from __future__ import annotations

import logging
import time
from collections import deque

log = logging.getLogger("gatekeeper.launcher.health")

HEALTHY = "healthy"
BACKING_OFF = "backing-off"
PROBING = "probing"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ProviderHealth:
    def __init__(self, name: str, *, threshold: int = 3, backoff: float = 5.0, backoff_cap: float = 300.0,
                 window: float = 300.0) -> None:
        self.name = name
        self.threshold = threshold
        self.backoff_base = backoff
        self.backoff_cap = backoff_cap
        self.window = window
        self.state = HEALTHY
        self.consecutive = 0
        self.openings = 0  # consecutive re-openings without a good boot: the backoff doubles with each
        self.until = 0.0  # monotonic end of the current backoff
        self.until_wall = 0.0
        self.probe_in_flight = False
        self.last_error = ""
        self.boots: deque[tuple[float, bool, float]] = deque()  # (wall time, ok, seconds) within the window

    # -- decisions -------------------------------------------------------------------------------------------
    def allows_launch(self, now: float | None = None) -> bool:
        """May a new server be started on this provider now?"""
        now = time.monotonic() if now is None else now
        if self.state == BACKING_OFF and now >= self.until:
            self.state = PROBING
            log.info("provider %s: backoff over; one probe boot allowed", self.name)
        if self.state == PROBING:
            return not self.probe_in_flight
        return self.state == HEALTHY

    def launch_started(self) -> None:
        if self.state == PROBING:
            self.probe_in_flight = True

    def not_counted(self) -> None:
        """A launch ended in a way that says nothing about health (a quota refusal): a probe may go again."""
        self.probe_in_flight = False

    def due(self, now: float | None = None) -> bool:
        """A backoff ended and the launcher should look again at what it could launch."""
        now = time.monotonic() if now is None else now
        return self.state == BACKING_OFF and now >= self.until

    # -- outcomes --------------------------------------------------------------------------------------------
    def record(self, ok: bool, seconds: float = 0.0, error: str = "") -> None:
        """A boot ended (quota refusals and vanished images are not reported here)."""
        now = time.time()
        self.boots.append((now, ok, seconds))
        while self.boots and self.boots[0][0] < now - self.window:
            self.boots.popleft()
        if ok:
            if self.state != HEALTHY:
                log.info("provider %s: a boot succeeded; healthy again", self.name)
            self.state, self.consecutive, self.openings, self.probe_in_flight = HEALTHY, 0, 0, False
            return
        self.consecutive += 1
        self.last_error = error[:300]
        recent = [b for b in self.boots if not b[1]]
        failing_mostly = len(self.boots) >= 2 * self.threshold and len(recent) >= 0.8 * len(self.boots)
        if self.state == PROBING or (self.state == HEALTHY and (self.consecutive >= self.threshold
                                                                 or failing_mostly)):
            self._open()

    def _open(self) -> None:
        backoff = min(self.backoff_cap, self.backoff_base * (2 ** self.openings))
        self.openings += 1
        self.state = BACKING_OFF
        self.probe_in_flight = False
        self.until = time.monotonic() + backoff
        self.until_wall = time.time() + backoff
        log.warning("provider %s: %d consecutive boot failures (last: %s); backing off for %.0fs", self.name,
                    self.consecutive, self.last_error, backoff)

    # -- what operators see ----------------------------------------------------------------------------------
    def status(self) -> dict:
        now = time.time()
        recent = [b for b in self.boots if b[0] >= now - self.window]
        failed = sum(1 for b in recent if not b[1])
        times = [b[2] for b in recent if b[1]]
        return {
            "name": self.name,
            "state": self.state,
            "consecutive_failures": self.consecutive,
            "recent_boots": len(recent),
            "recent_failures": failed,
            "error_rate": round(failed / len(recent), 3) if recent else 0.0,
            "boot_p50_s": percentile(times, 0.5),
            "boot_p95_s": percentile(times, 0.95),
            "backing_off_until": self.until_wall if self.state == BACKING_OFF else None,
            "last_error": self.last_error,
        }
