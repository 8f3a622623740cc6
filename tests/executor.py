"""An in-process executor for tests and benchmarks: takes build requests from ZooKeeper and answers at will.

It speaks the real contract (gatekeeper.zk.builds: claim with a lock, complete, notice cancellation), so the
scheduler cannot tell it from the real executor.  Builds succeed at once unless told otherwise:

    ex = TestExecutor(zk).start()
    ex.hold = True                        # keep every new build running until released
    ex.fail("unit", 1, "FAILURE")         # change 1's next "unit" build fails (more results: later attempts)
    ex.release("unit", 1)                 # finish held builds (job and change optional)
    ex.history                            # [BuildRecord(job, result, changes, ...)], in completion order
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kazoo.recipe.watchers import ChildrenWatch, DataWatch

from gatekeeper.zk import builds, paths
from gatekeeper.zk.builds import ABORTED, SUCCESS, BuildRequest, BuildResult
from gatekeeper.zk.client import ZKClient

log = logging.getLogger("gatekeeper.tests.executor")


@dataclass
class BuildRecord:
    job: str
    result: str
    changes: str
    change: int
    attempt: int
    pipeline: str
    id: str
    label: str = ""
    priority: list = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<{self.job} {self.result} changes={self.changes!r}>"


class TestExecutor:
    __test__ = False  # not a pytest class

    def __init__(self, zk: ZKClient, name: str = "test-executor", duration: float = 0.0,
                 log_url: str = "https://logs.example.com") -> None:
        self.zk = zk
        self.name = name
        self.duration = duration  # seconds a build runs when not held
        self.log_url = log_url.rstrip("/")
        self.hold = False
        self.history: list[BuildRecord] = []
        self.requests: dict[str, BuildRequest] = {}  # every request claimed, by id (what each build was given)
        self.running: dict[str, tuple[BuildRequest, object, float]] = {}  # id -> (request, lock, start)
        self._results: dict[tuple[str, int], list[str]] = {}
        self._diagnoses: dict[tuple[str, int], dict] = {}  # (job, change) -> failure_class, summary, signatures
        self._seen: set[str] = set()
        self._lock = threading.RLock()
        self._stopping = False
        self._timers: list[threading.Timer] = []

    def start(self) -> TestExecutor:
        builds.ensure_paths(self.zk)
        ChildrenWatch(self.zk.client, paths.EXECUTOR_REQUESTS, self._on_requests)
        return self

    def stop(self) -> None:
        self._stopping = True
        for timer in self._timers:
            timer.cancel()

    # -- control --------------------------------------------------------------------------------------------------
    def fail(self, job: str, change: int, *results: str) -> None:
        """The next builds of `job` for change `change` end with `results`, in turn (default FAILURE)."""
        with self._lock:
            self._results.setdefault((job, change), []).extend(results or ("FAILURE",))

    def diagnose(self, job: str, change: int, failure_class: str, summary: str = "",
                 signatures: tuple[dict, ...] = ()) -> None:
        """What the failed builds of `job` for change `change` are diagnosed as (the executor's diagnosis)."""
        with self._lock:
            self._diagnoses[(job, change)] = {"failure_class": failure_class, "summary": summary,
                                              "signatures": [dict(s) for s in signatures]}

    def release(self, job: str | None = None, change: int | None = None, result: str | None = None,
                pipeline: str | None = None) -> int:
        """Finish the held builds that match; returns how many."""
        with self._lock:
            matching = [i for i, (r, _, _) in self.running.items()
                        if (job is None or r.job == job) and (change is None or r.change.get("number") == change)
                        and (pipeline is None or r.pipeline == pipeline)]
        for ident in matching:
            self._finish(ident, result)
        return len(matching)

    def held(self) -> list[BuildRequest]:
        with self._lock:
            return [r for r, _, _ in self.running.values()]

    def records(self, job: str | None = None) -> list[BuildRecord]:
        return [b for b in self.history if job is None or b.job == job]

    # -- work -----------------------------------------------------------------------------------------------------
    def _on_requests(self, children: list[str]) -> bool | None:
        if self._stopping:
            return False
        fresh = [c for c in children if c not in self._seen]
        self._seen.intersection_update(children)
        self._seen.update(fresh)
        if fresh:
            threading.Thread(target=self._take, args=(fresh,), daemon=True).start()
        return None

    def _take(self, idents: list[str]) -> None:
        for ident in idents:
            claimed = builds.claim_build(self.zk, ident, self.name)
            if claimed is None:
                continue
            lock, request = claimed
            with self._lock:
                self.running[request.id] = (request, lock, time.time())
                self.requests[request.id] = request
                hold = self.hold
            if hold:
                DataWatch(self.zk.client, paths.executor_request(request.id), self._watcher(request.id))
                continue
            if self.duration > 0:
                timer = threading.Timer(self.duration, self._finish, args=(request.id, None))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            else:
                self._finish(request.id, None)

    def _watcher(self, ident: str):
        def on_change(data: bytes | None, stat: object) -> bool | None:
            if data is None and stat is None:  # the request is gone: cancelled by the scheduler
                threading.Thread(target=self._finish, args=(ident, ABORTED), daemon=True).start()
                return False
            return None if ident in self.running else False
        return on_change

    def _finish(self, ident: str, result: str | None) -> None:
        with self._lock:
            entry = self.running.pop(ident, None)
            if entry is None:
                return
            request, lock, started = entry
            if result is None:
                turns = self._results.get((request.job, request.change.get("number", 0)))
                result = turns.pop(0) if turns else SUCCESS
            diagnosis = self._diagnoses.get((request.job, request.change.get("number", 0)), {})
        outcome = BuildResult(
            id=request.id, pipeline=request.pipeline, item=request.item, job=request.job, result=result,
            log_url=f"{self.log_url}/{request.id[:2]}/{request.id}/", executor=self.name, attempt=request.attempt,
            node={"name": f"node-{request.id[:6]}", "label": request.label, "provider": "test"},
            start_time=started, end_time=time.time(), message="" if result == SUCCESS else f"{result} (test)",
            **(diagnosis if result not in (SUCCESS, ABORTED) else {}),
        )
        delivered = result != ABORTED and builds.complete_build(self.zk, outcome, lock)
        record = BuildRecord(request.job, result if delivered else ABORTED, request.changes,
                             request.change.get("number", 0), request.attempt, request.pipeline, request.id,
                             request.label, list(request.priority))
        with self._lock:
            self.history.append(record)
        try:
            builds.release_claim(self.zk, request.id, lock)
        except Exception:
            log.debug("lock cleanup for %s failed", request.id, exc_info=True)
