"""Events that failed: set aside to be tried again later, or, when they keep failing, kept as dead letters.

An event whose processing fails is moved out of its queue in one transaction (so nothing waits behind it and
nothing is lost): to `/events/retries` with the time of its next try, or, after its last try, to
`/events/dead-letters` with its error. A retry that is due goes back to the tail of its queue, counting its
attempts; a dead letter stays until an operator replays it (back into its queue, attempts reset) or discards it.

    letters = DeadLetters(zk)
    for letter in letters.list(): print(letter.ident, letter.queue, letter.error)
    letters.replay("d-0000000003"); letters.discard("d-0000000004"); letters.total()
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import BadVersionError, NoNodeError, RolledBackError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import PREFIX
from gatekeeper.zk.record import Record, decode, encode

log = logging.getLogger("gatekeeper.zk.deadletter")

MANAGEMENT = "management"
ATTEMPTS_KEY = "_attempts"  # in a queued record: how many times it failed before (absent: never)
FIRST_FAILED_KEY = "_first_failed_at"


def queue_path(queue: str) -> str:
    """The ZooKeeper queue of `queue`: a connection's name, or "management"."""
    return paths.management_queue() if queue == MANAGEMENT else paths.event_queue(queue)


@dataclass
class FailedEvent(Record):
    """One event out of its queue after a failure: what it was, why it failed, and when it is tried again."""

    VERSION = 1
    queue: str = ""  # the queue it came from: a connection's name, or "management"
    event: Any = None  # the record as it was queued (without the attempt bookkeeping)
    error: str = ""  # the last failure, for people
    attempts: int = 0  # failed tries so far
    first_failed_at: float = 0.0
    failed_at: float = 0.0
    retry_at: float | None = None  # None: a dead letter, tried again only when an operator replays it
    about: str = ""  # what the event concerns, for people ("comment-added 5,1")
    ident: str = field(default="", compare=False)  # its znode name (not stored)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.pop("ident", None)
        return data


class DeadLetters:
    """The retry area and the dead letters of every event queue (a small API the CLI and the web call)."""

    def __init__(self, zk: ZKClient) -> None:
        self.zk = zk
        for path in (paths.EVENT_RETRIES, paths.DEAD_LETTERS):
            zk.client.ensure_path(path)

    # -- moving a failed event out of its queue ---------------------------------------------------------------
    def set_aside(self, queue: str, ident: str, error: str, *, retry_in: float | None,
                  about: str = "") -> FailedEvent | None:
        """Move queued event `ident` of `queue` out: to the retries when `retry_in` (seconds) is given, else to
        the dead letters. None when the event is no longer in its queue (another scheduler moved it)."""
        source = f"{queue_path(queue)}/{ident}"
        client = self.zk.client
        for _ in range(10):
            try:
                raw, stat = client.get(source)
            except NoNodeError:
                return None
            try:
                record = decode(raw)
            except ValueError:
                record = raw.decode("utf-8", "replace")
            attempts, first = 0, time.time()
            if isinstance(record, dict):
                record = dict(record)
                attempts = int(record.pop(ATTEMPTS_KEY, 0) or 0)
                first = float(record.pop(FIRST_FAILED_KEY, first) or first)
            now = time.time()
            letter = FailedEvent(queue=queue, event=record, error=error[:2000], attempts=attempts + 1,
                                 first_failed_at=first, failed_at=now,
                                 retry_at=now + retry_in if retry_in is not None else None, about=about)
            tx = client.transaction()
            tx.delete(source, version=stat.version)
            if retry_in is not None:
                tx.create(paths.event_retry("r-"), letter.to_bytes(), sequence=True)
            else:
                total, counter = self._counter()
                tx.create(paths.dead_letter("d-"), letter.to_bytes(), sequence=True)
                tx.set_data(paths.DEAD_LETTERS, encode({"total": total + 1}), version=counter)
            results = tx.commit()
            failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
            if not failed:
                letter.ident = results[1].rsplit("/", 1)[1]
                return letter
            if isinstance(failed[0], NoNodeError):
                return None
            if not isinstance(failed[0], BadVersionError):
                raise failed[0]
            # The event was rewritten or another dead letter was counted meanwhile: read again.
        raise RuntimeError(f"could not set aside event {ident} of {queue}: ZooKeeper kept changing under it")

    def _counter(self) -> tuple[int, int]:
        raw, stat = self.zk.client.get(paths.DEAD_LETTERS)
        try:
            total = int(decode(raw).get("total", 0)) if raw else 0
        except (ValueError, AttributeError):
            total = 0
        return total, stat.version

    # -- retries ----------------------------------------------------------------------------------------------
    def retries(self) -> list[FailedEvent]:
        """Events waiting for their next try, oldest first."""
        return self._read(paths.EVENT_RETRIES, paths.event_retry)

    def requeue(self, letter: FailedEvent) -> str | None:
        """Put a waiting retry back at the tail of its queue (its attempts travel with it); returns the new
        event id, or None if another scheduler already did."""
        return self._move(paths.event_retry(letter.ident), letter, keep_attempts=True)

    # -- dead letters -----------------------------------------------------------------------------------------
    def list(self) -> list[FailedEvent]:
        """Every dead letter, oldest first."""
        return self._read(paths.DEAD_LETTERS, paths.dead_letter)

    def get(self, ident: str) -> FailedEvent | None:
        if not _is_name(ident):
            return None
        try:
            raw, _ = self.zk.client.get(paths.dead_letter(ident))
        except NoNodeError:
            return None
        letter = FailedEvent.from_bytes(raw)
        letter.ident = ident
        return letter

    def replay(self, ident: str) -> str | None:
        """Put dead letter `ident` back into its queue as a new event, with its attempts reset; returns the new
        event id, or None when there is no such dead letter."""
        letter = self.get(ident)
        if letter is None:
            return None
        return self._move(paths.dead_letter(ident), letter, keep_attempts=False)

    def discard(self, ident: str) -> bool:
        """Delete dead letter `ident`; False when there is none."""
        if not _is_name(ident):
            return False
        try:
            self.zk.client.delete(paths.dead_letter(ident))
        except NoNodeError:
            return False
        return True

    def total(self) -> int:
        """How many events ever became dead letters here (a counter for metrics)."""
        return self._counter()[0]

    # -- internals --------------------------------------------------------------------------------------------
    def _read(self, parent: str, path_of: Any) -> list[FailedEvent]:
        out = []
        for ident in sorted(self.zk.client.get_children(parent)):
            try:
                raw, _ = self.zk.client.get(path_of(ident))
            except NoNodeError:
                continue
            letter = FailedEvent.from_bytes(raw)
            letter.ident = ident
            out.append(letter)
        return out

    def _move(self, source: str, letter: FailedEvent, keep_attempts: bool) -> str | None:
        record = letter.event
        if isinstance(record, dict) and keep_attempts:
            record = {**record, ATTEMPTS_KEY: letter.attempts, FIRST_FAILED_KEY: letter.first_failed_at}
        tx = self.zk.client.transaction()
        tx.delete(source)
        tx.create(f"{queue_path(letter.queue)}/{PREFIX}", encode(record), sequence=True)
        results = tx.commit()
        failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
        if failed:
            if isinstance(failed[0], NoNodeError):
                return None
            raise failed[0]
        return results[1].rsplit("/", 1)[1]


def _is_name(ident: str) -> bool:
    """Whether `ident` can name a dead letter at all (one znode name: not empty, no "/", not "." or "..")."""
    return bool(ident) and "/" not in ident and "\0" not in ident and ident not in (".", "..")
