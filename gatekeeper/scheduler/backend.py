"""The pipeline managers' work, sent through ZooKeeper: requests batched into the pass's save, reports ledgered.

Reports go out on a thread per pipeline, in order, so that the queue loop never waits for Gerrit: a head item
whose report is in flight stays at the head, and the pass that follows its completion takes it out.  The success
report of an item right behind a succeeding head may be asked for early, `after` the head's: it is sent as soon
as that one's outcome is known and good (no round trip through the queue loop between two merges), and
withdrawn, never sent, when that one failed or its item was reset or left.

Each report is reported exactly once, as Gerrit sees it.  It is recorded in `/pipelines/<p>/reported/<item>:<action>`
before it is sent ("pending", with the scheduler that sends it) and after ("done", with the outcome).  Its message
carries a marker unique to it.  A report whose answer is lost, or whose entry a dead scheduler left pending, is
settled by reading Gerrit (is the marker there? is the change merged?) before anything is sent again; while
Gerrit cannot be asked, the report stays in flight (its item stays at the head) and is tried again.  A ZooKeeper
outage while a report is ledgered never changes its outcome: the ledger write waits for ZooKeeper to return.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionExpiredError,
)
from kazoo.recipe.watchers import DataWatch

from gatekeeper.models.interfaces import ChangeSource, Report, ReportOutcome
from gatekeeper.models.pipeline import PipelineState
from gatekeeper.models.store import PipelineStore, StateConflict, TxOp, delete_all, encode_op, raw_create_op
from gatekeeper.zk import paths
from gatekeeper.zk.builds import BUILDS, BuildRequest
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.history import BuildEvent, BuildsetEvent, history_tx_op
from gatekeeper.zk.jobs import JobKind
from gatekeeper.zk.merges import MERGES, MergeRequest
from gatekeeper.zk.record import decode, encode

log = logging.getLogger("gatekeeper.scheduler.backend")

HEAD_ACTIONS = frozenset({"success", "failure", "merge-conflict"})
BATCH = 32  # ledger entries deleted per transaction
RETRY_MIN, RETRY_MAX = 0.5, 10.0  # backoff while Gerrit or ZooKeeper cannot be reached
ZK_TRANSIENT = (ConnectionLoss, SessionExpiredError)


class Reporter(Protocol):
    """Sends one report to the code review system; returns whether a requested submit happened."""

    def report(self, report: Report) -> ReportOutcome: ...


class ReportQueue:
    """One pipeline's reports, sent in order on a thread of their own, each through the ledger."""

    def __init__(self, zk: ZKClient, pipeline: str, reporter: Reporter, source: ChangeSource, owner: str,
                 wake: Callable[[], None]) -> None:
        self.zk = zk
        self.pipeline = pipeline
        self.reporter = reporter
        self.source = source
        self.owner = owner
        self.wake = wake
        self.sent = 0
        self.completed = 0  # report outcomes that reached the pipeline (each may let the queue loop move on)
        # (action, seconds from the pass asking for the report to Gerrit's answer, of which in Gerrit's command),
        # the latest ones, for benchmarks
        self.latencies: collections.deque[tuple[str, float, float]] = collections.deque(maxlen=10000)
        self._asked: dict[str, float] = {}  # report key -> when it was first asked for (monotonic)
        self._outcomes: dict[str, ReportOutcome] = {}
        self._forgotten: list[str] = []
        self._settled_refusals: list[str] = []  # refusal reports with a known outcome, forgotten at the next save
        self._inflight: set[str] = set()
        self._after: dict[str, str] = {}  # report key -> the report whose good outcome it waits for
        self._held: dict[str, list[Report]] = {}  # report key -> reports held until its outcome is known
        self._settled_at: dict[str, float] = {}  # report key -> when its outcome became known (monotonic)
        self._sending: str = ""  # the key of the report being sent on the head lane
        # With `defer_records`, "done" entries wait for the scheduler's next save (`take_records`), which writes
        # them in its transaction instead of one request each.
        self.defer_records = False
        self._records: dict[str, tuple[str, ReportOutcome]] = {}  # report key -> (ledger path, outcome)
        self._claimed: set[str] = set()  # reports whose pending entry the scheduler wrote with its state
        zk.client.ensure_path(paths.pipeline_reported(pipeline))
        self._lock = threading.Condition()
        self._stopped = threading.Event()
        # Two lanes: the head's verdicts (which the gate waits for) do not queue behind "starting" messages.
        self._lanes = {"head": queue.Queue(), "other": queue.Queue()}
        for lane, q in self._lanes.items():
            threading.Thread(target=self._work, args=(q,), name=f"reports-{pipeline}-{lane}", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        for q in self._lanes.values():
            q.put(None)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued report was sent (for an orderly stop)."""
        events = []
        for q in self._lanes.values():
            events.append(threading.Event())
            q.put(events[-1])
        for event in events:
            event.wait(timeout)

    @property
    def busy(self) -> bool:
        return bool(self._inflight)

    def submit(self, report: Report, after: str = "", claimed: bool = False) -> ReportOutcome | None:
        """The outcome once the report was sent; None while it is on its way (it is queued on the first call).
        With `after` (a head-lane report's key) it is sent only once that report's outcome is known and good.
        `claimed`: its pending ledger entry, ours, was written with the state that asked for it."""
        with self._lock:
            if report.key in self._outcomes:
                return self._outcomes[report.key]
            if report.key in self._inflight:
                return None
            self._inflight.add(report.key)
            if claimed:
                self._claimed.add(report.key)
            self._asked.setdefault(report.key, time.monotonic())
            if after:
                self._after[report.key] = after
        self._lanes["head" if report.action in HEAD_ACTIONS else "other"].put(report)
        return None

    def withdraw(self, key: str) -> None:
        """Take back a report asked for `after` another, unless it is being sent (its item was reset or left)."""
        with self._lock:
            if key not in self._after or key == self._sending or key in self._outcomes:
                return
            self._drop(key)
        self.wake()

    def _drop(self, key: str) -> None:
        """Forget an unsent report and those held behind it (with the lock held)."""
        self._after.pop(key, None)
        self._inflight.discard(key)
        self._asked.pop(key, None)
        for held in self._held.pop(key, []):
            self._drop(held.key)
        for waiting in self._held.values():
            waiting[:] = [r for r in waiting if r.key != key]
        self._lock.notify_all()

    def _ready(self, report: Report, lane: queue.Queue) -> bool:
        """Whether a report taken from its lane is to be sent now: not withdrawn, and not held behind another
        (then it is put back on the lane when that one's outcome is good)."""
        with self._lock:
            if report.key not in self._inflight:
                return False  # withdrawn
            after = self._after.get(report.key)
            if not after:
                return True
            ahead = self._outcomes.get(after)
            if ahead is None and after in self._inflight:
                self._held.setdefault(after, []).append(report)
                return False
            if ahead is None or not ahead.ok:
                self._drop(report.key)
                dropped = True
            else:
                dropped = False
                # Decided when the report ahead settled: that is when the queue loop would have asked for it.
                self._asked[report.key] = max(self._asked.get(report.key, 0.0), self._settled_at.get(after, 0.0))
        if dropped:
            self.wake()
        return not dropped

    def _settle_held(self, key: str, ok: bool) -> None:
        """`key`'s outcome is known: the reports held behind it go out (ok) or are dropped."""
        with self._lock:
            self._settled_at[key] = time.monotonic()
            held = self._held.pop(key, [])
            if not ok:
                for report in held:
                    self._drop(report.key)
        if held and not ok:
            self.wake()
        for report in held if ok else []:
            self._lanes["head"].put(report)

    def take_records(self, items: set[str]) -> list[tuple[int, TxOp]]:
        """The "done" entries of the reports sent since the last call, as operations for the state's transaction
        (those of items in `items`: their entries are there until forgotten); the others are written now."""
        with self._lock:
            records, self._records = self._records, {}
        ops: list[tuple[int, TxOp]] = []
        for key, (path, outcome) in records.items():
            if key.split(":", 1)[0] in items:
                ops.append(record_op(path, outcome))
            else:
                try:
                    self._record(path, outcome)
                except Exception:
                    log.exception("[%s] recording the %s report failed; it stays pending (Gerrit settles it)",
                                  self.pipeline, key)
        return ops

    def forget(self, left: list[tuple[str, list[str]]]) -> None:
        """Mark the ledger entries of items that left the queue for deletion (`flush`, batched)."""
        keys = [f"{ident}:{action}" for ident, actions in left for action in actions]
        for key in keys:
            self.withdraw(key)
        with self._lock:
            for key in keys:
                self._outcomes.pop(key, None)
                self._asked.pop(key, None)
                self._settled_at.pop(key, None)
                self._after.pop(key, None)
            self._forgotten.extend(keys)

    def saved(self) -> None:
        """The pipeline's state was saved: the events behind the refusals already settled are past its cursors
        and never applied again, so those ledger entries (keyed by event, not by item) go with the next flush."""
        with self._lock:
            keys, self._settled_refusals = self._settled_refusals, []
            for key in keys:
                self._outcomes.pop(key, None)
                self._asked.pop(key, None)
            self._forgotten.extend(keys)

    def flush(self, force: bool = False) -> None:
        """Delete forgotten ledger entries, in one transaction once enough are waiting (or when `force`)."""
        with self._lock:
            if not self._forgotten or (len(self._forgotten) < BATCH and not force):
                return
            keys, self._forgotten = self._forgotten, []
        base = paths.pipeline_reported(self.pipeline)
        delete_all(self.zk.client, [f"{base}/{key}" for key in keys])

    def _work(self, lane: queue.Queue) -> None:
        while True:
            report = lane.get()
            if report is None:
                return
            if isinstance(report, threading.Event):
                report.set()
                continue
            if not self._ready(report, lane):
                continue
            if report.action in HEAD_ACTIONS:  # after the item's "starting" message, never before it
                started = report.key.split(":", 1)[0] + ":start"
                with self._lock:
                    self._lock.wait_for(lambda k=started: k not in self._inflight, timeout=60)
                    if report.key not in self._inflight:
                        continue  # withdrawn meanwhile
                    self._sending = report.key
            try:
                outcome, unrecorded = self._ledgered(report)
            except _Stopped:
                return  # the scheduler is going away: the entry stays pending, for the next one to settle
            except Exception:
                # Nothing is decided on an unknown outcome: the report stays in flight and is tried again.
                log.exception("[%s %s] %s report failed; trying again", self.pipeline, report.change.key,
                              report.action)
                if self._stopped.wait(RETRY_MAX):
                    return
                with self._lock:
                    self._sending = ""
                lane.put(report)
                continue
            if outcome is None:
                with self._lock:
                    self._sending = ""
                self._settle_held(report.key, False)  # its outcome will not be known here in time
                continue  # another live scheduler is sending it: its ledger watch will wake us
            with self._lock:
                self._sending = ""
                self._outcomes[report.key] = outcome
                self._inflight.discard(report.key)
                self._after.pop(report.key, None)
                self.completed += 1
                if report.action == "refused":
                    self._settled_refusals.append(report.key)
                self._lock.notify_all()
            self._settle_held(report.key, outcome.ok)
            self.wake()
            if unrecorded and self.defer_records:
                with self._lock:
                    self._records[report.key] = (unrecorded, outcome)
            elif unrecorded:
                # Recorded after the outcome is published, off the gate's path: an entry left pending meanwhile
                # (a crash) is settled from Gerrit's state by whoever asks next.
                try:
                    self._record(unrecorded, outcome)
                except _Stopped:
                    return
                except Exception:
                    log.exception("[%s %s] recording the %s report failed; it stays pending (Gerrit settles it)",
                                  self.pipeline, report.change.key, report.action)

    def _record(self, path: str, outcome: ReportOutcome) -> None:
        done = encode(done_entry(outcome))
        try:
            self._zk(lambda: self.zk.client.set(path, done))
        except NoNodeError:
            pass  # its item left and the entry was forgotten already

    def _ledgered(self, report: Report) -> tuple[ReportOutcome | None, str]:
        """The report's outcome (None: another live scheduler sends it), and the ledger entry still to be marked
        done with it ("" when there is none)."""
        path = f"{paths.pipeline_reported(self.pipeline)}/{report.key}"
        with self._lock:
            claimed = report.key in self._claimed
            self._claimed.discard(report.key)  # a second attempt reads the entry, as after a restart
        entry = None if claimed else self._zk(lambda: self._claim(path))
        outcome: ReportOutcome | None = None
        if entry is not None:
            if entry.get("state") == "done":
                log.info("[%s %s] %s already reported", self.pipeline, report.change.key, report.action)
                return ReportOutcome(bool(entry.get("ok", True)), entry.get("message", "")), ""
            owner = entry.get("owner", "")
            if owner and owner != self.owner and self._zk(
                    lambda: self.zk.client.exists(paths.component("scheduler", owner))):
                self._wait_for_owner(path, report)
                return None, ""
            # Left pending by a scheduler that died, or by our own earlier attempt: Gerrit knows if it arrived.
            outcome = self._as_gerrit_shows(report)
            log.info("[%s %s] an interrupted %s report %s", self.pipeline, report.change.key, report.action,
                     "had arrived" if outcome is not None else "had not arrived; sending it")
            if outcome is None:
                self._zk(lambda: self.zk.client.set(path, encode({"state": "pending", "owner": self.owner})))
        if outcome is None:
            outcome = self._deliver(report)
        return outcome, path

    def _claim(self, path: str) -> dict | None:
        """Create our pending entry; None when created, else the entry found there."""
        try:
            self.zk.client.create(path, encode({"state": "pending", "owner": self.owner}), makepath=True)
            return None
        except NodeExistsError:
            pass
        try:
            raw, _ = self.zk.client.get(path)
        except NoNodeError:  # forgotten meanwhile: its item left the queue
            return {"state": "done", "ok": True, "message": ""}
        return decode(raw)

    def _zk(self, operation: Callable[[], object]):
        """Run a ZooKeeper operation, waiting out a connection loss (a report's outcome never depends on it)."""
        delay = RETRY_MIN / 5
        while True:
            if self._stopped.is_set():
                raise _Stopped()
            try:
                return operation()
            except ZK_TRANSIENT as exc:
                log.warning("[%s] ZooKeeper unavailable while ledgering a report (%s); waiting", self.pipeline,
                            type(exc).__name__)
            except ConnectionClosedError:
                raise _Stopped() from None
            if self._stopped.wait(delay):
                raise _Stopped()
            delay = min(RETRY_MAX, delay * 2)

    def _deliver(self, report: Report) -> ReportOutcome:
        """Send the report until Gerrit's answer is known (asking Gerrit before every resend)."""
        delay = RETRY_MIN
        outcome = self._send(report)
        while not outcome.settled:
            log.warning("[%s %s] %s report unsettled (%s); asking Gerrit again in %.1fs", self.pipeline,
                        report.change.key, report.action, outcome.message, delay)
            if self._stopped.wait(delay):
                raise _Stopped()
            delay = min(RETRY_MAX, delay * 2)
            known = self._as_gerrit_shows(report)
            if known is not None and not known.settled:
                outcome = known
                continue
            outcome = known if known is not None else self._send(report)
        return outcome

    def _send(self, report: Report) -> ReportOutcome:
        self.sent += 1
        sending = time.monotonic()
        try:
            outcome = self.reporter.report(report)
        except Exception as exc:  # a report that cannot be sent must not stop the gate
            log.exception("[%s %s] %s report failed", self.pipeline, report.change.key, report.action)
            outcome = ReportOutcome(not report.submit, str(exc))
        asked = self._asked.get(report.key)
        if outcome.settled and asked is not None:
            now = time.monotonic()
            self.latencies.append((report.action, now - asked, now - sending))
        return outcome

    def _as_gerrit_shows(self, report: Report) -> ReportOutcome | None:
        """The report's outcome as Gerrit shows it (None: nothing of it arrived)."""
        reported = getattr(self.reporter, "reported", None)
        if reported is not None:
            return reported(report)
        if not report.submit:
            return None  # a reporter without markers cannot tell; sending again is the lesser harm
        change = self.source.get_change(report.change.number)
        return ReportOutcome() if change is not None and change.status == "MERGED" else None

    def _wait_for_owner(self, path: str, report: Report) -> None:
        def on_change(data: bytes | None, stat: object) -> bool | None:
            if data is not None and decode(data).get("state") == "pending":
                return None
            with self._lock:
                self._inflight.discard(report.key)
                self.completed += 1
            self.wake()
            return False

        DataWatch(self.zk.client, path, on_change)


def done_entry(outcome: ReportOutcome) -> dict:
    return {"state": "done", "ok": outcome.ok, "message": outcome.message}


def record_op(path: str, outcome: ReportOutcome) -> tuple[int, TxOp]:
    raw = encode(done_entry(outcome))
    return len(raw), lambda tx: tx.set_data(path, raw)


class _Stopped(Exception):
    """The report queue was stopped while a report was on its way."""


class ZKBackend:
    """Collects one pass's merge and build requests (written with the state) and queues its reports."""

    def __init__(self, zk: ZKClient, pipeline: str, reports: ReportQueue) -> None:
        self.zk = zk
        self.pipeline = pipeline
        self.reports = reports
        self.merges: list[MergeRequest] = []
        self.builds: dict[str, BuildRequest] = {}
        self.cancels: list[str] = []
        self.history: list = []
        self.first: list[tuple[Report, str]] = []  # reports asked for the first time, with what they wait for

    def request_merge(self, request: MergeRequest) -> None:
        self.merges.append(request)

    def request_build(self, request: BuildRequest) -> None:
        self.builds[request.id] = request

    def cancel_build(self, build_id: str) -> None:
        if self.builds.pop(build_id, None) is None:  # requested and withdrawn in the same pass: never written
            self.cancels.append(build_id)

    def report(self, report: Report) -> ReportOutcome | None:
        return self.reports.submit(report)

    def report_after(self, report: Report, after: str) -> None:
        """Ask for `report` now, to be sent once the report `after` (a key) has a good outcome."""
        self.reports.submit(report, after=after)

    def report_first(self, report: Report, after: str = "") -> None:
        """Ask for a report never asked for before (its item says so): its pending ledger entry is written with
        the state that records the asking, and it is queued once that is saved (`submit_first`)."""
        self.first.append((report, after))

    def save(self, store: PipelineStore, state: PipelineState, extra: list[tuple[int, TxOp]]) -> None:
        """Save the pass: its state, `extra`, and the pending ledger entries of the reports it asked for first;
        then queue those reports."""
        base = paths.pipeline_reported(self.pipeline)
        pending = {"state": "pending", "owner": self.reports.owner}
        claims = [encode_op(f"{base}/{report.key}", pending) for report, _ in self.first]
        try:
            store.save(state, extra + claims)
        except StateConflict:
            if not claims:
                raise
            # An entry already there (left by an earlier version, or another scheduler): the report thread
            # claims these as it does any other, reading what is there.
            store.save(state, extra)
            claims = []
        for report, after in self.first:
            self.reports.submit(report, after=after, claimed=bool(claims))
        self.first.clear()

    def withdraw_report(self, key: str) -> None:
        self.reports.withdraw(key)

    def progress(self) -> int:
        """How many report outcomes have come back (a new one may let the queue loop move on)."""
        return self.reports.completed

    def record_history(self, event: BuildEvent | BuildsetEvent) -> None:
        self.history.append(event)

    def tx_ops(self) -> list[tuple[int, TxOp]]:
        """The requests, each with the parent of the lock its taker will hold (so taking it costs less)."""
        ops = [raw_create_op(path, data) for r in self.merges for path, data in MERGES.submit_writes(r)]
        ops += [raw_create_op(path, data) for r in self.builds.values() for path, data in BUILDS.submit_writes(r)]
        # finished builds and buildsets go to the history queue in the same transaction as the state that
        # records them: neither is ever written without the other
        ops += [history_tx_op(event) for event in self.history]
        return ops

    def flush_cancels(self) -> None:
        """Withdraw cancelled builds (after the state that forgets them is saved)."""
        withdraw_requests(self.zk, BUILDS, self.cancels)
        self.cancels.clear()


def withdraw_requests(zk: ZKClient, kind: JobKind, ids: list[str]) -> None:
    """Withdraw requests (builds or merges) and the parents of their takers' locks: an executor running one
    aborts it and gives back its nodes; one not taken yet is never taken."""
    pending = [zk.client.delete_async(kind.request_path(i)) for i in ids]
    locks = [zk.client.delete_async(kind.lock_path(i)) for i in ids]
    for p in pending + locks:
        try:
            p.get()
        except (NoNodeError, NotEmptyError):
            pass  # it had finished (its result is ignored), or a worker still holds its lock
