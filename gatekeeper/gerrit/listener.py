"""The Gerrit event listener: stream-events in, typed events durably into the connection's ZooKeeper queue.

- Only the elected listener of a connection runs (ZooKeeper election); when it dies another takes over.
- An event counts as received once it is in ZooKeeper: each batch of events is written in one transaction
  together with the connection's state (last event time and the keys of the events of that second).
- After every (re)connect, and so after a restart or a failover, the listener queries Gerrit for changes
  updated since the last event it saw and enqueues what it missed, exactly once (see catchup.py), before
  the live events that arrived meanwhile.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError

from gatekeeper.gerrit import catchup
from gatekeeper.gerrit.client import GerritClient, GerritError
from gatekeeper.gerrit.events import DroppedOutputEvent, GerritEvent, parse_event
from gatekeeper.gerrit.source import KEEP_SUBJECT
from gatekeeper.gerrit.watcher import KEEPALIVE_INTERVAL_S, KEEPALIVE_TIMEOUT_S, StreamWatcher
from gatekeeper.zk import paths
from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.event_queue import PREFIX, EventQueue
from gatekeeper.zk.record import Record, encode

log = logging.getLogger("gatekeeper.gerrit.listener")

BATCH_MAX = 200  # events per ZooKeeper transaction
# ZooKeeper refuses a request over 1 MiB (it drops the connection): a transaction's events are kept under this many
# bytes, and an event over EVENT_MAX loses its bulky parts (the original JSON, the comment's and subject's tails;
# a subject is cut as a change's is).
TX_BYTES = 768 * 1024
EVENT_MAX = 64 * 1024
KEEP_COMMENT = 32 * 1024
SEEN_WINDOW_S = 600  # how long keys of enqueued events are remembered to drop duplicates
CATCH_UP_RETRY_S = 5.0  # after a failed catch-up query
CONNECTED = object()  # inbox marker: a new stream started; catch up before what follows
WAKE = object()  # inbox marker: look at the step-down flag now (stop, or a lost session), not at the next timeout


@dataclass
class ConnectionState(Record):
    """What the connection last enqueued: catch-up starts at `last_event_time` (epoch seconds) and skips the
    events of that second whose keys are in `boundary_keys`; an unfinished catch-up starts at `catch_up_from`."""

    VERSION = 1
    last_event_time: int | None = None
    boundary_keys: list[str] = field(default_factory=list)
    catch_up_from: int | None = None  # a catch-up that failed (Gerrit unreachable): retried from this time


class EventListener:
    """Runs the listener for one Gerrit connection while this process is its elected leader."""

    def __init__(
        self,
        name: str,
        zk: ZKClient,
        client: GerritClient,
        *,
        hostname: str,
        port: int,
        username: str,
        keyfile: str | None,
        catch_up: bool = True,
        backoff_min: float = 0.2,
        backoff_max: float = 30.0,
        identity: str | None = None,
        keepalive_interval: float = KEEPALIVE_INTERVAL_S,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.zk = zk
        self.client = client
        self.catch_up = catch_up
        self._watcher_args = dict(hostname=hostname, port=port, username=username, keyfile=keyfile,
                                  backoff_min=backoff_min, backoff_max=backoff_max, name=name,
                                  keepalive_interval=keepalive_interval, keepalive_timeout=keepalive_timeout)
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.queue = EventQueue(zk, paths.event_queue(name))
        self.state_path = paths.connection_state(name)
        self._inbox: queue.Queue = queue.Queue()
        self._stopped = threading.Event()
        self._step_down = threading.Event()
        self._leading = threading.Event()
        self._thread: threading.Thread | None = None
        self._election = None
        self._seen: dict[str, int] = {}
        self._state = ConnectionState()
        self._state_version = -1
        self._retry_catch_up_at = 0.0
        self.enqueued = 0  # events written to ZooKeeper by this process (for tests and the benchmark)
        # Called with each batch right after it is durable in ZooKeeper (metrics, the benchmark).
        self.on_enqueued: Callable[[list[GerritEvent]], None] | None = None
        self.catch_ups = 0
        self.streams = 0  # stream connections handled while leader (each one caught up before its events)
        self.watcher: StreamWatcher | None = None  # the stream while leader

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.zk.add_listener(self._on_zk_state)
        self._thread = threading.Thread(target=self._election_loop, name=f"gerrit-listener-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopped.set()
        self._leave()
        election = self._election
        if election is not None:
            try:
                election.cancel()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.zk.remove_listener(self._on_zk_state)
        except ValueError:
            pass

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def wait_leader(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    @property
    def ready(self) -> bool:
        """Leader, streaming, and caught up: every event from now on reaches the queue."""
        return self.is_leader and self.streams > 0

    def _on_zk_state(self, event: ConnectionEvent) -> None:
        # SUSPENDED: our session (and election node) may still live; writes just wait and retry, and the
        # state's version check stops us if someone else took over meanwhile. LOST: we are no longer leader.
        if event == ConnectionEvent.LOST:
            self._leave()

    def _leave(self) -> None:
        """Step down as leader: the dispatch loop sees it at once."""
        self._step_down.set()
        self._inbox.put(WAKE)

    def _election_loop(self) -> None:
        while not self._stopped.is_set():
            if not self.zk.connected:
                self._stopped.wait(0.2)
                continue
            self._step_down.clear()
            self._election = self.zk.client.Election(paths.election(f"gerrit-{self.name}"), self.identity)
            try:
                self._election.run(self._lead)
            except Exception as e:
                log.warning("[%s] leader election interrupted: %s", self.name, e)
                self._stopped.wait(0.5)

    # -- while leader -----------------------------------------------------------------------------------------
    def _lead(self) -> None:
        if self._stopped.is_set() or self._step_down.is_set():
            return
        log.info("[%s] elected Gerrit event listener (%s)", self.name, self.identity)
        self._state = self._load_state()
        self._seen = {k: self._state.last_event_time or 0 for k in self._state.boundary_keys}
        self._inbox = queue.Queue()
        self.streams = 0
        inbox = self._inbox
        watcher = StreamWatcher(
            on_line=lambda line, at: inbox.put((line, at)),
            on_connected=lambda: inbox.put(CONNECTED),
            **self._watcher_args,
        )
        self.watcher = watcher
        self._leading.set()
        watcher.start()
        try:
            self._dispatch(inbox)
        finally:
            self._leading.clear()
            watcher.stop()
            log.info("[%s] no longer the Gerrit event listener (%s)", self.name, self.identity)

    def _dispatch(self, inbox: queue.Queue) -> None:
        while not self._step_down.is_set():
            if self._state.catch_up_from is not None and time.monotonic() >= self._retry_catch_up_at:
                self._catch_up()
            try:
                item = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            batch: list[GerritEvent] = []
            while True:
                if item is WAKE:
                    break
                if item is CONNECTED:
                    self._write(batch)
                    batch = []
                    self._catch_up()
                    self.streams += 1
                else:
                    line, received_at = item
                    event = parse_event(line)
                    if isinstance(event, DroppedOutputEvent):
                        # Gerrit's per-listener buffer overflowed and it dropped events: recover them.
                        log.warning("[%s] Gerrit dropped stream output; catching up", self.name)
                        self._write(batch)
                        batch = []
                        self._catch_up()
                    elif event is not None:
                        event.received_at = received_at
                        if self._admit(event):
                            batch.append(event)
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)

    def _admit(self, event: GerritEvent) -> bool:
        key = event.dedup_key()
        if key in self._seen:
            log.debug("[%s] dropping duplicate event %s", self.name, key)
            return False
        self._seen[key] = event.event_created_on or int(time.time())
        return True

    def _catch_up(self) -> None:
        since = self._state.last_event_time
        if since is None:
            # First start ever: nothing to catch up on, but remember where we started.
            self._state.last_event_time = int(time.time())
            self._save_state()
            return
        if not self.catch_up:
            return
        if self._state.catch_up_from is not None:
            since = min(since, self._state.catch_up_from)
        age = max(60, int(time.time()) - since + 60)  # -age is relative to Gerrit's clock; allow skew
        try:
            rows = self.client.query_changes(f"-age:{age}s", *catchup.QUERY_FLAGS)
        except GerritError as e:
            log.error("[%s] catch-up query for events since %s failed (retrying in %ds): %s", self.name, since,
                      CATCH_UP_RETRY_S, e)
            self._retry_catch_up_at = time.monotonic() + CATCH_UP_RETRY_S
            if self._state.catch_up_from != since:
                self._state.catch_up_from = since
                self._save_state()
            return
        missed = []
        for row in rows:
            for event in catchup.events_from_change(row, since):
                event.received_at = time.time()
                if self._admit(event):
                    missed.append(event)
        missed.sort(key=lambda e: e.event_created_on or 0)
        self.catch_ups += 1
        log.info("[%s] caught up on %d missed event(s) from %d changes updated since %s", self.name,
                 len(missed), len(rows), since)
        for i in range(0, len(missed), BATCH_MAX):
            self._write(missed[i:i + BATCH_MAX])
        if self._state.catch_up_from is not None:
            self._state.catch_up_from = None
            self._save_state()

    # -- ZooKeeper --------------------------------------------------------------------------------------------
    def _load_state(self) -> ConnectionState:
        """Read (creating if needed) the state; its znode version fences out a deposed leader's writes."""
        while True:
            try:
                raw, stat = self.zk.client.get(self.state_path)
            except NoNodeError:
                try:
                    self.zk.client.create(self.state_path, ConnectionState().to_bytes(), makepath=True)
                except NodeExistsError:
                    pass
                continue
            self._state_version = stat.version
            return ConnectionState.from_bytes(raw) if raw else ConnectionState()

    def _next_state(self, batch: list[GerritEvent]) -> None:
        latest = max([e.event_created_on or 0 for e in batch] + [self._state.last_event_time or 0])
        self._state.last_event_time = latest
        self._state.boundary_keys = [k for k, t in self._seen.items() if t == latest]
        horizon = latest - SEEN_WINDOW_S
        if len(self._seen) > 1000:
            self._seen = {k: t for k, t in self._seen.items() if t >= horizon}

    def _save_state(self) -> None:
        stat = self.zk.client.set(self.state_path, self._state.to_bytes(), version=self._state_version)
        self._state_version = stat.version

    def _write(self, batch: list[GerritEvent]) -> None:
        """Enqueue `batch` with the new state, in as few transactions of at most TX_BYTES as it takes: each all or
        nothing, and only if no other listener wrote the state since we read it (a deposed leader cannot
        enqueue)."""
        chunk: list[tuple[GerritEvent, bytes]] = []
        size = 0
        for event in batch:
            data = self._encoded(event)
            if data is None:
                continue
            if chunk and size + len(data) > TX_BYTES:
                self._write_chunk(chunk)
                chunk, size = [], 0
            chunk.append((event, data))
            size += len(data)
        self._write_chunk(chunk)

    def _encoded(self, event: GerritEvent) -> bytes | None:
        """The event's record; an oversized event (a comment or subject of megabytes) is kept without its original
        JSON and with the heads of its comment and subject (which is what triggers match); None if even that is
        too large (logged: nothing of it would fit in ZooKeeper)."""
        data = encode(event.to_dict())
        if len(data) <= EVENT_MAX:
            return data
        size = len(data)
        event.raw = {}
        event.comment = event.comment[:KEEP_COMMENT] if event.comment else event.comment
        event.subject = event.subject[:KEEP_SUBJECT] if event.subject else event.subject
        data = encode(event.to_dict())
        if len(data) <= EVENT_MAX:
            log.warning("[%s] %s event of change %s is %d bytes: kept without its original JSON, its comment cut to "
                        "%d characters and its subject to %d", self.name, event.type, event.change_key, size,
                        KEEP_COMMENT, KEEP_SUBJECT)
            return data
        log.error("[%s] %s event of change %s is %d bytes even without its original JSON: dropped (ZooKeeper "
                  "cannot hold it)", self.name, event.type, event.change_key, len(data))
        return None

    def _write_chunk(self, chunk: list[tuple[GerritEvent, bytes]]) -> None:
        if not chunk:
            return
        batch = [event for event, _ in chunk]
        self._next_state(batch)
        while True:
            tx = self.zk.client.transaction()
            for _, data in chunk:
                tx.create(f"{self.queue.path}/{PREFIX}", data, sequence=True)
            tx.set_data(self.state_path, self._state.to_bytes(), version=self._state_version)
            try:
                results = tx.commit()
                failed = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
                if failed:
                    raise failed[0]
                self._state_version += 1
                break
            except BadVersionError:
                log.warning("[%s] another listener wrote the connection state: stepping down", self.name)
                self._step_down.set()
                raise
            except Exception as e:
                # Keep the batch: nothing counts as received until it is in ZooKeeper.
                if self._step_down.is_set():
                    log.warning("[%s] stepping down with %d event(s) not enqueued (the next leader catches up): "
                                "%s", self.name, len(batch), e)
                    raise
                log.warning("[%s] enqueueing %d event(s) failed, retrying: %s", self.name, len(batch), e)
                time.sleep(0.5)
        self.enqueued += len(batch)
        if self.on_enqueued is not None:
            self.on_enqueued(batch)
        for event in batch:
            log.debug("[%s] enqueued %s %s", self.name, event.type, event.change_key or event.ref_name)
