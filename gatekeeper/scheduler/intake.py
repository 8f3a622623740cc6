"""The scheduler's event intake: reading the connections' and operators' queues, looking up the changes events
name, and setting aside an event that fails (retried with backoff, then a dead letter), so that one bad event
never holds up the others. A mixin of `Scheduler` (gatekeeper.scheduler.scheduler).
"""

from __future__ import annotations

import logging
import time

from kazoo.exceptions import NoNodeError

from gatekeeper.models.events import TriggerEvent, UnreadableEvent
from gatekeeper.models.interfaces import SourceUnavailable
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.timer import timer_event
from gatekeeper.zk.deadletter import ATTEMPTS_KEY
from gatekeeper.zk.management import Action, MalformedRequest, ManagementRequest, take_request
from gatekeeper.zk.record import decode

log = logging.getLogger("gatekeeper.scheduler")

MANAGEMENT = "management"
RETRY_DELAYS = (1.0, 3.0, 9.0)  # a failing event is tried again after these delays, then becomes a dead letter


class SourceOutage(Exception):
    """The change source (Gerrit) cannot be reached at all: no event is to blame; wait and try them again."""


class EventFailed(Exception):
    """Processing one event raised: that event is set aside and the pass runs again without it."""

    def __init__(self, queue: str, ident: str, event: TriggerEvent, error: BaseException) -> None:
        super().__init__(f"{queue} event {ident}: {error}")
        self.queue = queue
        self.ident = ident
        self.event = event
        self.error = error


def seq(ident: str) -> int:
    """The sequence number of a queue event id (q-0000000012 -> 12)."""
    return int(ident.rsplit("-", 1)[1])


class EventIntake:
    """Reading events and setting failing ones aside, for Scheduler."""

    # -- events that fail -------------------------------------------------------------------------------------------
    def _set_aside(self, queue: str, ident: str, event: TriggerEvent | None, error: BaseException | str,
                   attempts: int | None = None) -> None:
        """Move a failed event out of its queue: to a later retry, or after its last try to the dead letters."""
        if attempts is None:
            attempts = event.attempts if event is not None else 0
        dead = isinstance(error, UnreadableEvent | str) or attempts >= len(self.retry_delays)
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        about = f"{event.type} {event.key}" if event is not None and event.change else ""
        self._events.get(queue, {}).pop(ident, None)
        self._prefetched.discard(ident)
        assert self.dead_letters is not None
        letter = self.dead_letters.set_aside(queue, ident, text, about=about,
                                             retry_in=None if dead else self.retry_delays[attempts])
        if letter is None:
            return  # another scheduler moved or consumed it
        if dead:
            self.stats.dead_letters += 1
            log.error("%s event %s (%s) is now dead letter %s after %d attempt(s): %s; see `gatekeeper events "
                      "list`", queue, ident, about or "no change", letter.ident, letter.attempts, text)
        else:
            self.stats.events_retried += 1
            log.warning("%s event %s (%s) set aside after attempt %d, tried again in %.0fs: %s", queue, ident,
                        about or "no change", letter.attempts, self.retry_delays[attempts], text)
            if self._next_retry_at is None or letter.retry_at < self._next_retry_at:
                self._next_retry_at = letter.retry_at

    def _requeue_due_retries(self) -> None:
        """Put the set-aside events whose time has come back at the tail of their queues."""
        if self._next_retry_at is None or time.time() < self._next_retry_at:
            return
        assert self.dead_letters is not None
        now = time.time()
        upcoming = None
        for letter in self.dead_letters.retries():
            if letter.retry_at is not None and letter.retry_at > now:
                upcoming = letter.retry_at if upcoming is None else min(upcoming, letter.retry_at)
                continue
            if letter.queue not in self.queues:
                continue  # a connection this scheduler does not serve
            ident = self.dead_letters.requeue(letter)
            if ident is not None:
                log.info("%s event (%s) back in its queue as %s for attempt %d", letter.queue,
                         letter.about or "no change", ident, letter.attempts + 1)
                self._children.setdefault(letter.queue, []).append(ident)
        self._next_retry_at = upcoming

    def _read_events(self) -> None:
        for name, queue in self.queues.items():
            ids = self._children.get(name, [])
            known = self._events.setdefault(name, {})
            for gone in set(known) - set(ids):
                del known[gone]
            fresh = [i for i in ids if i not in known]
            pending = [(i, self.zk.client.get_async(f"{queue.path}/{i}")) for i in fresh]
            unreadable = []
            for ident, result in pending:
                try:
                    raw, _ = result.get()
                except NoNodeError:
                    continue
                try:
                    data = decode(raw)
                    if name == MANAGEMENT:
                        known[ident] = self._read_request(ident, data)
                    else:
                        known[ident] = timer_event(data, name, ident) or self.source.trigger_event(data, name, ident)
                        known[ident].attempts = int(data.get(ATTEMPTS_KEY, 0) or 0)
                except (ValueError, TypeError) as exc:  # UnreadableEvent, bad JSON, bad UTF-8
                    unreadable.append((ident, exc))
                    continue
                self.stats.events += 1
            for ident, exc in unreadable:
                log.warning("%s event %s does not read: %s", name, ident, exc)
                self._set_aside(name, ident, None, exc if isinstance(exc, UnreadableEvent) else
                                f"{type(exc).__name__}: {exc}")
            if name == MANAGEMENT:
                self._answered_requests.intersection_update(known)
                for ident, request in known.items():
                    if request.action is Action.RELOAD and ident not in self._answered_requests:
                        self._answered_requests.add(ident)
                        if take_request(self.zk, ident):
                            self._reload(ident)

    def _read_request(self, ident: str, data: object) -> ManagementRequest:
        """An operator request as read from its queue; a malformed one is answered with the reason (its sender
        waits for that) and raises UnreadableEvent, which makes it a dead letter."""
        try:
            return ManagementRequest.parse(data)
        except MalformedRequest as exc:
            if isinstance(data, dict) and data.get("id"):
                self._answer(ident, f"the scheduler cannot read this request: {exc}")
            raise UnreadableEvent(f"operator request {ident}: {exc}") from None

    def _prefetch(self) -> None:
        """Query, in parallel, the changes the new trigger events are about (one SSH round trip for a burst)."""
        numbers: set[int] = set()
        waiting: list[tuple[str, str]] = []  # the new events that need these lookups
        queued = {name: state.index() for name, state in self.states.items()}
        for conn in self.connections:
            for ident, event in self._events.get(conn, {}).items():
                if ident in self._prefetched or not event.change:
                    continue
                self._prefetched.add(ident)
                if any(self._relevant(p, event, queued.get(name, {}))
                       for name, p in self.layout.pipelines.items()):
                    numbers.add(event.change)
                    waiting.append((conn, ident))
        self._prefetched.intersection_update(set().union(*(self._events.get(c, {}) for c in self.connections)))
        wanted = sorted(numbers)
        lookups = self._pool.map(self._look_up, wanted) if len(wanted) > 1 else map(self._look_up, wanted)
        failed: dict[int, BaseException] = {}
        for number, (change, error) in zip(wanted, lookups, strict=True):
            if error is None:
                self._lookups[number] = change
            else:
                failed[number] = error
        if not failed:
            return
        blocked = [(conn, ident) for conn, ident in waiting if self._events[conn][ident].change in failed]
        if all(isinstance(e, SourceUnavailable) for e in failed.values()) and len(failed) == len(wanted):
            self._prefetched.difference_update(ident for _, ident in blocked)
            raise SourceOutage(f"Gerrit cannot be reached: {next(iter(failed.values()))}")
        # Gerrit answers, but not about these changes: hold up only the new events about them.
        for conn, ident in blocked:
            event = self._events[conn][ident]
            log.warning("[%s] looking up change %d for %s event %s failed: %s", conn, event.change, event.type,
                        ident, failed[event.change])
            self._set_aside(conn, ident, event, failed[event.change])

    def _look_up(self, number: int) -> tuple[Change | None, BaseException | None]:
        try:
            return self.source.get_change(number), None
        except Exception as exc:
            return None, exc
