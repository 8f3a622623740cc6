"""The scheduler service: takes events from ZooKeeper, and runs each affected pipeline under its lock.

A round: read what is new (trigger events per connection, operator requests, merge and build results), then for
each pipeline that has something to do: lock it, load its state, apply the events past its cursor, run the queue
loop, save the state (with the requests it made) and unlock.  Rounds start from ZooKeeper watches.

Trigger and management events stay in their queues until every pipeline's cursor has passed them, so any number
of schedulers can run: each pipeline is processed by one of them at a time, and no event is applied twice.

One event never holds up the others: an event that does not read, or whose change cannot be looked up, or whose
processing raises, is moved out of its queue (gatekeeper.zk.deadletter) and tried again later with backoff, and
after its last try kept as a dead letter for operators. Only a Gerrit that cannot be reached at all (an outage,
not this event's fault) makes the scheduler wait, with backoff, before trying the same events again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kazoo.exceptions import ConnectionClosedError, ConnectionLoss, NodeExistsError, NoNodeError, SessionExpiredError
from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from gatekeeper.config.layout import Layout
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.interfaces import ChangeSource, SourceError, SourceUnavailable
from gatekeeper.models.pipeline import Change, PipelineState
from gatekeeper.models.store import PipelineStore, delete_all, encode_op
from gatekeeper.scheduler import locks
from gatekeeper.scheduler.backend import Reporter, ReportQueue, ZKBackend
from gatekeeper.scheduler.intake import (
    MANAGEMENT,
    RETRY_DELAYS,
    EventFailed,
    EventIntake,
    SourceOutage,
    seq,
)
from gatekeeper.scheduler.layouts import LayoutChanges
from gatekeeper.scheduler.locks import PipelineLocks
from gatekeeper.scheduler.manager import PipelineManager
from gatekeeper.scheduler.supersede import may_supersede
from gatekeeper.scheduler.timer import PipelineTimer
from gatekeeper.scheduler.triggers import pipeline_triggered
from gatekeeper.zk import paths
from gatekeeper.zk.builds import BuildResult
from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.components import Component
from gatekeeper.zk.deadletter import DeadLetters
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.management import Action, ManagementAnswer, ManagementRequest, NotFound, request_paths, take_request
from gatekeeper.zk.merges import MergeResult

log = logging.getLogger("gatekeeper.scheduler")

SAFETY_INTERVAL = 10.0  # a round at least this often, in case a watch was lost
EVENT_BATCH = 32  # consumed events are deleted this many at a time (or when the scheduler is quiet)
OUTAGE_BACKOFF = (0.5, 10.0)  # while the change source cannot be reached at all: first and longest wait
ZK_ERRORS = (ConnectionLoss, SessionExpiredError, ConnectionClosedError)


@dataclass
class SchedulerStats:
    rounds: int = 0
    passes: int = 0
    events: int = 0
    cpu: float = 0.0  # seconds of this scheduler's thread spent in rounds
    reports: int = 0
    events_retried: int = 0  # events set aside to be tried again
    dead_letters: int = 0  # events this scheduler moved to the dead letters
    zk_waits: int = 0  # rounds abandoned because the ZooKeeper connection was lost or suspended


class Scheduler(EventIntake, PipelineLocks, LayoutChanges):
    """One scheduler process. `source` reads changes, `reporter` sends reports (both from the Gerrit connection)."""

    def __init__(self, zk: ZKClient, layout: Layout, source: ChangeSource, reporter: Reporter,
                 connections: tuple[str, ...] = ("gerrit",), layout_loader: Callable[[], Layout] | None = None,
                 ignore_accounts: tuple[str, ...] = ()) -> None:
        self.zk = zk
        self.layout = layout
        self.source = source
        self.reporter = reporter
        self.connections = connections
        self.layout_loader = layout_loader
        self.ignore_accounts = set(ignore_accounts)  # our own reviews: events that change nothing we gate on
        self.ident = f"scheduler-{uuid.uuid4().hex[:8]}"
        self.stats = SchedulerStats()
        self.states: dict[str, PipelineState] = {}
        self.stores: dict[str, PipelineStore] = {}
        self.component = Component(zk, "scheduler")
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._watches: list = []
        self._children: dict[str, list[str]] = {}
        self._events: dict[str, dict[str, TriggerEvent | ManagementRequest]] = {}  # queue -> id -> event (read once)
        self._answered_requests: set[str] = set()  # operator requests answered outside a pipeline's pass
        self._skipped: dict[tuple[str, str], int] = {}  # (pipeline, queue) -> last seq known irrelevant
        self._merge_results: dict[str, MergeResult] = {}
        self._build_results: dict[str, BuildResult] = {}
        self._results_done: dict[str, tuple[str, bool]] = {}  # applied result id -> (its path, deleted yet)
        self._layout_version = ""  # the published layout this scheduler has read (its pointer in ZooKeeper)
        self._running_version = ""  # ... and runs (set with the layout itself, once it is parsed)
        self._retire_due = True  # pipelines the layout no longer has may be left in ZooKeeper
        self._report_queues: dict[str, ReportQueue] = {}
        self._reports_done: set[str] = set()  # pipelines with a report sent since their last pass
        self._prefetched: set[str] = set()  # trigger event ids whose change was queried ahead of the passes
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="scheduler-query")
        self._locks: dict[str, object] = {}  # pipeline -> its kazoo Lock (reused: the path is ensured once)
        self._held: dict[str, float] = {}  # pipelines whose lock this scheduler holds -> time of the last pass
        self._tidied_at = 0.0  # when consumed events and applied results were last deleted in a lull
        self._fresh: set[str] = set()  # pipelines whose cached state is current (lock held since it was saved)
        self._probed: set[str] = set()  # pipelines whose stored state was looked for
        self._lookups: dict[int, Change | None] = {}  # change queries of this round, shared by the pipelines
        self.retry_delays: tuple[float, ...] = RETRY_DELAYS
        self.dead_letters: DeadLetters | None = None
        self._next_retry_at: float | None = 0.0  # when a set-aside event is due (0: look now; None: none)
        self._outage_until = 0.0  # the change source was unreachable: no round before this (monotonic)
        self._outage_delay = 0.0
        self._zk_broken = False  # a round failed on ZooKeeper: everything cached is re-read first
        self._reconnected = threading.Event()  # set when the ZooKeeper session is usable again
        self._lock_watched: set[str] = set()  # pipelines whose lock, held elsewhere, we wait on
        self.timer: PipelineTimer | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> Scheduler:
        client = self.zk.client
        for path in (paths.MERGER_RESULTS, paths.EXECUTOR_RESULTS, paths.MERGER_REQUESTS, paths.EXECUTOR_REQUESTS,
                     paths.MANAGEMENT_RESULTS, paths.management_queue(), paths.lock("merge"), paths.lock("build"),
                     paths.history_queue()):
            client.ensure_path(path)
        self.queues = {c: EventQueue(self.zk, paths.event_queue(c)) for c in self.connections}
        self.queues[MANAGEMENT] = EventQueue(self.zk, paths.management_queue())
        self.dead_letters = DeadLetters(self.zk)
        self._publish_layout_if_absent()
        for name, queue in self.queues.items():
            self._watches.append(ChildrenWatch(client, queue.path, self._watcher(name)))
        self._watches.append(ChildrenWatch(client, paths.MERGER_RESULTS, self._watcher("merge-results")))
        self._watches.append(ChildrenWatch(client, paths.EXECUTOR_RESULTS, self._watcher("build-results")))
        self._watches.append(DataWatch(client, paths.LAYOUT, self._on_layout))
        self.component.register()
        self.zk.add_listener(self._on_connection)
        self._thread = threading.Thread(target=self._run, name=self.ident, daemon=True)
        self._thread.start()
        if hasattr(self.source, "branch_heads"):  # a source that can list branches: timer triggers work
            self.timer = PipelineTimer(self.zk, lambda: self.layout, self.source, self.connections[0], self._stopping)
            self.timer.start()
        log.info("scheduler %s started: %s", self.ident, self.layout.summary())
        return self

    def stop(self) -> None:
        if self.timer:
            self.timer.stop()
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(30)
        for reports in self._report_queues.values():
            reports.drain()
            reports.stop()
            reports.take_records(set())  # no save is coming: the "done" entries are written now
        self._pool.shutdown(wait=False)
        for watch in self._watches:
            watch._stopped = True  # kazoo watchers stop on their next call
        try:
            self.component.unregister()
        except Exception:
            pass

    def wake(self) -> None:
        self._wake.set()

    def _watcher(self, name: str) -> Callable[[list[str]], bool | None]:
        def on_children(children: list[str]) -> bool | None:
            if self._stopping.is_set():
                return False
            self._children[name] = sorted(children)
            self._idle.clear()
            self._wake.set()
            return None
        return on_children

    @property
    def idle(self) -> bool:
        """Nothing left to do from what this scheduler has seen (for tests' settle)."""
        return self._idle.is_set() and not self._wake.is_set() and not any(
            q.busy for q in self._report_queues.values())

    def _run(self) -> None:
        last_round = time.monotonic()
        while not self._stopping.is_set():
            timeout = SAFETY_INTERVAL
            if self._held:
                timeout = self._tidy_timeout(max(0.0, min(self._held.values()) + locks.LOCK_LEASE - time.monotonic()))
            if self._next_retry_at is not None:
                timeout = min(timeout, max(0.0, self._next_retry_at - time.time()))
            woke = self._wake.wait(timeout)
            self._wake.clear()
            if self._stopping.is_set():
                break
            if not self.zk.connected:
                # No decision on half-known state: wait for the session (the 1 s bound is a safety net only).
                self._idle.clear()
                self._reconnected.clear()
                if not self.zk.connected:
                    self._reconnected.wait(1.0)
                self._wake.set()
                continue
            pause = self._outage_until - time.monotonic()
            if pause > 0:
                self._wake.clear()
                self._stopping.wait(pause)
                woke = True
            started = time.thread_time()
            try:
                due = self._next_retry_at is not None and time.time() >= self._next_retry_at
                if woke or due or self._zk_broken or time.monotonic() - last_round >= SAFETY_INTERVAL:
                    self.run_round(refresh=not woke or self._zk_broken)
                    self._zk_broken = False
                    last_round = time.monotonic()
                self._outage_delay = 0.0
                self._release_idle_locks()
            except ZK_ERRORS as exc:
                self._zk_lost(exc)
            except SourceOutage as exc:
                self._outage_delay = min(OUTAGE_BACKOFF[1], max(OUTAGE_BACKOFF[0], self._outage_delay * 2))
                self._outage_until = time.monotonic() + self._outage_delay
                log.warning("%s; trying the same events again in %.1fs", exc, self._outage_delay)
                self._wake.set()
            except Exception:
                log.exception("scheduler round failed; dropping cached state")
                self._release_locks()
                self.states.clear()
                self._wake.set()
                time.sleep(0.2)  # not the hot path: only after an error, to avoid a hot failure loop
            finally:
                self.stats.cpu += time.thread_time() - started
                self.stats.rounds += 1
            if not self._wake.is_set():
                self._idle.set()
        self._release_locks()

    def _zk_lost(self, exc: BaseException) -> None:
        """A round met a lost or suspended ZooKeeper connection: forget everything read, decide nothing, and
        start again from ZooKeeper once the session is back (the connection listener wakes the loop)."""
        log.warning("ZooKeeper connection lost during a round (%s: %s); waiting for the session, then re-reading "
                    "everything", type(exc).__name__, exc)
        self.stats.zk_waits += 1
        self._forget_cached()
        self._zk_broken = True
        self._wake.set()
        if not self.zk.connected:
            self._wake.clear()  # _on_connection sets it again on reconnect

    def _forget_cached(self) -> None:
        self._fresh.clear()
        self.states.clear()
        self._events.clear()
        self._children.clear()
        self._skipped.clear()
        self._prefetched.clear()
        self._merge_results.clear()
        self._build_results.clear()
        self._results_done.clear()
        self._next_retry_at = 0.0

    def _on_connection(self, event: ConnectionEvent) -> None:
        if event in (ConnectionEvent.LOST, ConnectionEvent.SUSPENDED):
            # Ephemeral lock nodes may be gone: trust nothing cached until the lock is taken again.
            self._fresh.clear()
            self._zk_broken = True
            if event == ConnectionEvent.LOST:
                self._held.clear()
                self._locks.clear()  # a kazoo Lock still thinks it holds what the expired session held
                self._lock_watched.clear()  # the session's watches are gone with it
        else:
            self._reconnected.set()
        self.wake()

    # -- one round ------------------------------------------------------------------------------------------------
    def run_round(self, refresh: bool = False) -> None:
        client = self.zk.client
        if refresh or not self._children:
            self._next_retry_at = 0.0  # another scheduler may have set events aside: look
            for name, queue in self.queues.items():
                self._children[name] = queue.ids()
            self._children["merge-results"] = sorted(client.get_children(paths.MERGER_RESULTS))
            self._children["build-results"] = sorted(client.get_children(paths.EXECUTOR_RESULTS))
        self._lookups = {}
        self._requeue_due_retries()
        self._read_events()
        self._read_results()
        self._forget_deleted_results()
        self._prefetch()
        if self._retire_due or any(r.pipeline and r.pipeline not in self.layout.pipelines for results in (
                self._merge_results, self._build_results) for r in results.values()):
            self._retire_removed()
        for name in list(self.layout.pipelines):
            if self._has_work(name):
                self._process_isolated(name)
        self._tidy()

    def _process_isolated(self, name: str) -> None:
        """process_pipeline(), setting aside each event that makes the pass fail and running it again without."""
        for _ in range(EVENT_BATCH):
            try:
                self.process_pipeline(name)
                return
            except EventFailed as failure:
                if isinstance(failure.error, SourceUnavailable):
                    raise SourceOutage(f"Gerrit cannot be reached: {failure.error}") from failure.error
                log.warning("[%s %s] %s event %s failed: %s: %s", name, failure.event.key, failure.event.type,
                            failure.ident, type(failure.error).__name__, failure.error,
                            exc_info=not isinstance(failure.error, Exception) or _is_bug(failure.error))
                self._set_aside(failure.queue, failure.ident, failure.event, failure.error)

    def _reports(self, name: str) -> ReportQueue:
        reports = self._report_queues.get(name)
        if reports is None:
            reports = ReportQueue(self.zk, name, self.reporter, self.source, self.component.info.ident,
                                  lambda: self._reported(name))
            reports.defer_records = True  # written with the next save of the pipeline's state
            self._report_queues[name] = reports
        return reports

    def _reported(self, name: str) -> None:
        self._reports_done.add(name)
        self._idle.clear()
        self._wake.set()

    def _read_results(self) -> None:
        for kind, cache, path_of, cls in (
            ("merge-results", self._merge_results, paths.merger_result, MergeResult),
            ("build-results", self._build_results, paths.executor_result, BuildResult),
        ):
            ids = self._children.get(kind, [])
            for gone in set(cache) - set(ids):
                del cache[gone]
            pending = [(i, self.zk.client.get_async(path_of(i))) for i in ids
                       if i not in cache and i not in self._results_done]
            for ident, result in pending:
                try:
                    raw, _ = result.get()
                except NoNodeError:
                    continue
                cache[ident] = cls.from_bytes(raw)

    def _forget_deleted_results(self) -> None:
        """Stop remembering applied results once deleted and out of the listings (they cannot be read again)."""
        listed = set(self._children.get("merge-results", [])) | set(self._children.get("build-results", []))
        for ident, (_, deleted) in list(self._results_done.items()):
            if deleted and ident not in listed:
                del self._results_done[ident]

    def _has_work(self, name: str) -> bool:
        pipeline = self.layout.pipelines[name]
        if name in self._reports_done:
            return True
        if any(r.pipeline == name for results in (self._merge_results, self._build_results) for r in results.values()):
            return True
        state = self.states.get(name)
        if state is not None and state.items and state.layout is not self.layout:
            return True  # a new layout: its items' jobs are looked at again
        cursors = state.cursors if state else {}
        numbers = state.index() if state else {}
        for queue_name, events in self._events.items():
            after = max(cursors.get(queue_name, -1), self._skipped.get((name, queue_name), -1))
            for ident, event in events.items():
                n = seq(ident)
                if n <= after:
                    continue
                if queue_name == MANAGEMENT:
                    if event.pipeline == name:
                        return True
                elif self._relevant(pipeline, event, numbers):
                    return True
                self._skipped[(name, queue_name)] = max(self._skipped.get((name, queue_name), -1), n)
        if state is None and name not in self._probed:
            # A pipeline this scheduler never loaded may hold items (after a restart): load it once.
            self._probed.add(name)
            return self.zk.client.exists(paths.pipeline_state(name)) is not None
        return False

    def _relevant(self, pipeline, event: TriggerEvent, numbers: dict[int, list[str]]) -> bool:
        if not event.change:
            return pipeline_triggered(pipeline, event)  # a ref-updated: it may enqueue the ref
        if event.change in numbers:
            return event.account not in self.ignore_accounts
        return pipeline_triggered(pipeline, event)

    # -- one pipeline ---------------------------------------------------------------------------------------------
    def process_pipeline(self, name: str) -> None:
        """One pass over one pipeline under its lock; skipped when another scheduler holds the lock."""
        pipeline = self.layout.pipelines[name]
        store = self.stores.get(name) or self.stores.setdefault(name, PipelineStore(self.zk.client, name))
        if not self._acquire(name):
            return
        try:
            state = self.states.get(name) if name in self._fresh else None
            loaded = state is None
            if loaded:
                state = store.load(self.states.get(name))
                if state.version < 0 and not self._layout_current():
                    # No state: a new pipeline, or one a scheduler on a newer layout removed; not started
                    # from nothing before this scheduler has read that layout (its watch wakes it).
                    self._release(name)
                    return
            self.states[name] = state
            reported = name in self._reports_done
            self._reports_done.discard(name)
            reports = self._reports(name)
            backend = ZKBackend(self.zk, name, reports)
            manager = PipelineManager(self.layout, pipeline, state, backend, self.source)
            manager._looked_up = self._lookups
            consumed_merges, consumed_builds, answers = self._apply(manager, state)
            if loaded or reported or answers or state.dirty or state.removed or state.changed \
                    or state.layout is not self.layout:
                manager.process()  # else nothing the loop looks at changed: it would decide the same again
            extra = backend.tx_ops() + [encode_op(paths.management_result(i), ManagementAnswer.of(err).to_dict())
                                        for i, err in answers]
            if extra or state.dirty or state.removed or state.changed:  # a save anyway: "done" entries go with it
                extra += reports.take_records(set(state.items) | state.removed)
            backend.save(store, state, extra)
            self._fresh.add(name)
            self._held[name] = time.monotonic()
        except Exception:
            self.states.pop(name, None)
            self._release(name)
            raise
        self.stats.passes += 1
        self.stats.reports = sum(q.sent for q in self._report_queues.values())
        backend.flush_cancels()
        if state.left:
            reports.forget(state.left)
            state.left.clear()
        reports.saved()
        reports.flush()
        # Applied results are deleted in batches (each deletion costs every watcher a listing); one read again
        # meanwhile, by this scheduler after a restart or by another, is applied again to no effect.
        for ident in consumed_merges:
            self._merge_results.pop(ident, None)
            self._results_done[ident] = (paths.merger_result(ident), False)
        for ident in consumed_builds:
            self._build_results.pop(ident, None)
            self._results_done[ident] = (paths.executor_result(ident), False)

    def _apply(self, manager: PipelineManager, state: PipelineState) -> tuple[list[str], list[str], list]:
        name = state.name
        for queue_name in self.connections:
            last = state.cursors.get(queue_name, -1)
            events = sorted(self._events.get(queue_name, {}).items(), key=lambda kv: seq(kv[0]))
            for ident, event in events:
                n = seq(ident)
                if n <= last:
                    continue
                last = n
                if self._relevant(manager.pipeline, event, state.index()) or (
                        event.change and may_supersede(self.layout, manager.pipeline, event)):
                    try:
                        manager.apply_trigger(event)
                    except ZK_ERRORS:
                        raise
                    except Exception as exc:
                        raise EventFailed(queue_name, ident, event, exc) from exc
            state.cursors[queue_name] = last  # saved with the next change: a no-op event needs no write
        answers = []
        last = state.cursors.get(MANAGEMENT, -1)
        for ident, request in sorted(self._events.get(MANAGEMENT, {}).items(), key=lambda kv: seq(kv[0])):
            n = seq(ident)
            if n <= last:
                continue
            last = n
            if request.pipeline == name:
                if not take_request(self.zk, ident):
                    log.info("[%s] operator %s %s was withdrawn by its sender before it ran", name,
                             request.action.value, request.subject())
                    continue
                try:
                    error = manager.manage(request)
                except NotFound as exc:
                    error = exc
                except ZK_ERRORS:
                    raise
                except SourceUnavailable as exc:
                    raise SourceOutage(f"Gerrit cannot be reached: {exc}") from exc
                except Exception as exc:
                    log.exception("[%s] operator request %s failed", name, ident)
                    error = f"the scheduler failed on this request: {type(exc).__name__}: {exc}"
                log.info("[%s] operator %s %s%s: %s", name, request.action.value, request.subject(),
                         f" by {request.user}" if request.user else "", error or "done")
                answers.append((ident, error))
        state.cursors[MANAGEMENT] = last
        merges = [i for i, r in self._merge_results.items() if r.pipeline == name]
        for ident in merges:
            manager.apply_merge_result(self._merge_results[ident])
        builds = [i for i, r in self._build_results.items() if r.pipeline == name]
        for ident in builds:
            manager.apply_build_result(self._build_results[ident])
        return merges, builds, answers

    def _delete_consumed_events(self, force: bool = False) -> None:
        """Remove events every pipeline has passed (by this scheduler's knowledge, which only lags).

        Batched: deletions wait until EVENT_BATCH are due, or the scheduler is quiet (`force`)."""
        for queue_name, events in self._events.items():
            if not events:
                continue
            done = min(
                max((self.states[p].cursors.get(queue_name, -1) if p in self.states else -1),
                    self._skipped.get((p, queue_name), -1))
                for p in self.layout.pipelines
            ) if self.layout.pipelines else -1
            if queue_name == MANAGEMENT:  # requests for pipelines that do not exist are answered and dropped
                self._answer_unknown(events)
            old = [i for i in events if seq(i) <= done]
            if not old or (len(old) < EVENT_BATCH and not force):
                continue
            queue = self.queues[queue_name]
            for ident in old:
                events.pop(ident, None)
            if queue_name == MANAGEMENT:  # with the mark of the scheduler that took each
                delete_all(self.zk.client, [p for i in old for p in request_paths(i)])
            else:
                delete_all(self.zk.client, [f"{queue.path}/{i}" for i in old])

    def _answer_unknown(self, events: dict[str, ManagementRequest]) -> None:
        for ident, request in list(events.items()):
            if request.action is Action.RELOAD or request.pipeline in self.layout.pipelines \
                    or ident in self._answered_requests:
                continue
            self._answered_requests.add(ident)
            known = ", ".join(sorted(self.layout.pipelines))
            self._answer(ident, NotFound(f"no pipeline {request.pipeline!r} (pipelines: {known})"))
            for p in self.layout.pipelines:
                self._skipped[(p, MANAGEMENT)] = max(self._skipped.get((p, MANAGEMENT), -1), seq(ident))

    def _answer(self, ident: str, error: NotFound | str) -> None:
        try:
            self.zk.client.create(paths.management_result(ident), ManagementAnswer.of(error).to_bytes(), makepath=True)
        except NodeExistsError:
            pass

    # -- reading --------------------------------------------------------------------------------------------------
    def load_state(self, name: str) -> PipelineState:
        """The pipeline's state as stored (for status and tests); no lock needed."""
        store = self.stores.get(name) or PipelineStore(self.zk.client, name)
        return store.load(None)


def _is_bug(error: BaseException) -> bool:
    """Whether a failure looks like a bug here (worth a traceback in the log) rather than a refusal from Gerrit."""
    return not isinstance(error, SourceError)
