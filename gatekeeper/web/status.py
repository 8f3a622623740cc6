"""The status document (schema in docs/status-api.md): pipelines, queues, items and jobs, as the page shows them.

Built from the scheduler's pipeline states (gatekeeper.models.pipeline.PipelineState, read-only), the executors'
records of the builds they run (gatekeeper.zk.builds.BuildStart: a running job's start, node and live console) and
the job duration estimates from the build history.  Everything here is a pure function of its inputs, so it is tested
without ZooKeeper.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

SCHEMA_VERSION = 1

# job states in the status document
WAITING = "waiting"  # not requested yet (the item is not merged, or outside the window)
QUEUED = "queued"  # requested, not started by an executor
RUNNING = "running"
COMPLETED = "completed"

# managers whose queue items wait for those ahead of them (the others test each item on its own)
IN_ORDER = frozenset({"dependent", "serial", "supercedent"})
IN_TURN = frozenset({"serial", "supercedent"})  # ... and run one at a time, each after the one ahead ended

Estimator = Callable[[str, str], "float | None"]  # (project, job) -> expected seconds


def _no_estimate(_project: str, _job: str) -> float | None:
    return None


def _node(node: dict[str, Any] | None) -> dict[str, str] | None:
    if not node:
        return None
    return {"name": node.get("name", ""), "label": node.get("label", ""), "provider": node.get("provider", "")}


def job_status(name: str, build: Any, project: str, now: float, estimate: Estimator,
               console_url: Callable[[str], str], build_url: Callable[[str], str],
               start: Any = None) -> dict[str, Any]:
    """One job of one item: its state, timing, links and node.

    `start` is the executor's record of the build (gatekeeper.zk.builds.BuildStart), when it runs one: from it a
    build the scheduler knows only as requested shows as running, with its start time, node and live console.
    """
    estimated = estimate(project, name)
    doc: dict[str, Any] = {
        "name": name, "state": WAITING, "result": None, "voting": True, "build": None, "attempt": 0,
        "start_time": None, "end_time": None, "elapsed": None, "estimated": estimated, "remaining": estimated,
        "progress": None, "console_url": None, "log_url": None, "build_url": None, "message": "",
        "node": None, "failure_class": None, "summary": "", "signatures": [],
    }
    if build is None:
        return doc
    doc.update(
        build=build.id, attempt=build.attempt, voting=build.voting, message=build.message or "",
        node=_node(build.node),
    )
    start_time = build.start_time
    if not build.result and start is not None and start.start_time:
        start_time = start.start_time
        doc["node"] = _node(start.node) or doc["node"]
    if build.result:
        doc.update(state=COMPLETED, result=build.result, start_time=build.start_time or None,
                   end_time=build.end_time or None, remaining=0, progress=100,
                   log_url=build.log_url or None, build_url=build_url(build.id),
                   failure_class=getattr(build, "failure_class", None) or None,
                   summary=getattr(build, "summary", "") or "", signatures=list(getattr(build, "signatures", ())))
        if build.start_time and build.end_time:
            doc["elapsed"] = max(0.0, build.end_time - build.start_time)
    elif start_time:
        elapsed = max(0.0, now - start_time)
        doc.update(state=RUNNING, start_time=start_time, elapsed=elapsed,
                   console_url=console_url(build.id), build_url=build_url(build.id))
        if estimated:
            doc["remaining"] = max(0.0, estimated - elapsed)
            doc["progress"] = min(99, int(100 * elapsed / estimated))
    else:
        doc["state"] = QUEUED
    return doc


def _start_of(build: Any, starts: Mapping[str, Any] | None) -> Any:
    return starts.get(build.id) if build is not None and starts else None


def item_status(item: Any, position: int, window: int, ahead: Any, behind: list[Any], pipeline: str, now: float,
                estimate: Estimator, console_url: Callable[[str], str],
                build_url: Callable[[str], str], starts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    change = item.change
    jobs = [job_status(name, item.builds.get(name), change.project, now, estimate, console_url, build_url,
                       _start_of(item.builds.get(name), starts))
            for name in item.jobs]
    failing = []
    if item.merge_state == "conflict":
        what = "merger failure (not the change's fault)" if item.merger_failed else "merge conflict"
        failing.append(f"{what}: {item.merge_message}".rstrip(": "))
    for job in jobs:
        if job["state"] == COMPLETED and job["voting"] and job["result"] not in ("SUCCESS", "ABORTED", "SKIPPED"):
            failing.append(f"{job['name']}: {job['result']}")
    remaining = [j["remaining"] for j in jobs if j["state"] != COMPLETED]
    unknown = any(r is None for r in remaining)
    return {
        "id": item.id,
        "change": {
            "project": change.project, "branch": change.branch, "number": change.number,
            "patchset": change.patchset, "key": change.key, "ref": change.ref, "url": change.url,
            "subject": change.subject,
        },
        "changes": item.changes,
        "live": item.live,
        "active": window == 0 or position < window,
        "position": position,
        "item_ahead": ahead.change.key if ahead is not None else None,
        "items_behind": [b.change.key for b in behind],
        "enqueue_time": item.enqueued,
        "resident_time": max(0.0, now - item.enqueued),
        "merge_state": item.merge_state or "pending",
        "failing": bool(failing),
        "failing_reasons": failing,
        # the slowest unfinished job bounds the item (jobs run in parallel); unknown while any has no history
        "remaining_time": None if unknown else max(remaining, default=0.0),
        "jobs": jobs,
    }


def is_disabled(state: Any, layout: Any, name: str) -> bool:
    """Whether Zuul's disable-after-consecutive-failures holds the pipeline now, as its scheduler decides at its
    next report: tripped under the running layout (a new one enables it again), or as many failures in a row."""
    pipeline = layout.pipelines.get(name) if layout is not None else None
    limit = getattr(pipeline, "disable_after", None)
    return state is not None and bool(limit) and state.disabled_under(limit, layout.digest)


def pipeline_status(name: str, manager: str, description: str, state: Any, now: float, estimate: Estimator,
                    console_url: Callable[[str], str], build_url: Callable[[str], str],
                    starts: Mapping[str, Any] | None = None, disabled: bool = False) -> dict[str, Any]:
    """One pipeline's entry; `starts` (build id -> BuildStart, from `started_builds`) shows running builds."""
    queues = []
    for queue in (state.queues.values() if state is not None else ()):
        items = state.queue_items(queue)
        docs = []
        for position, item in enumerate(items):
            ahead = items[position - 1] if position > 0 else None
            behind = items[position + 1:position + 2]
            docs.append(item_status(item, position, queue.window, ahead, behind, name, now, estimate,
                                    console_url, build_url, starts))
        if manager in IN_TURN:
            _after_those_ahead(docs)
        queues.append({"name": queue.name, "window": queue.window, "dynamic": queue.dynamic, "items": docs})
    # disabled: Zuul's disable-after-consecutive-failures tripped; it reports to its disabled reporters only
    return {"name": name, "manager": manager, "description": description,
            "disabled": disabled, "queues": queues}


def _after_those_ahead(docs: list[dict[str, Any]]) -> None:
    """In a queue whose items run one at a time, an item's remaining time counts those ahead of it (unknown when
    one of theirs is)."""
    ahead: float | None = 0.0
    for doc in docs:
        if ahead is None or doc["remaining_time"] is None:
            ahead = doc["remaining_time"] = None
        else:
            ahead = doc["remaining_time"] = ahead + doc["remaining_time"]


def started_builds(zk: Any) -> dict[str, Any]:
    """The builds executors run now (build id -> gatekeeper.zk.builds.BuildStart), for `pipeline_status`."""
    from gatekeeper.zk.builds import running_builds

    return running_builds(zk)


def signature_status(zk: Any, layout: Any, now: float | None = None, days: int = 7,
                     recent: int = 5) -> list[dict[str, Any]]:
    """Each known-bug signature (the layout's, then any other with hits) with its hits per day over the last
    `days` days (oldest first), its counts, and its `recent` newest hits: what the signatures page shows."""
    from gatekeeper.zk.signatures import hit_counts, read_hits

    now = time.time() if now is None else now
    hits = read_hits(zk)
    rows = hit_counts(layout.signatures.values() if layout is not None else (), hits, now)
    for row in rows:
        mine = [h for h in hits if h.signature == row["id"]]
        row["per_day"] = [sum(1 for h in mine if days - 1 - d == int((now - h.time) // 86400)) for d in range(days)]
        row["recent"] = [{k: v for k, v in h.to_dict().items() if k != "_v"} for h in reversed(mine[-recent:])]
    return rows


def status_document(pipelines: list[dict[str, Any]], event_queues: dict[str, int], now: float | None = None,
                    ) -> dict[str, Any]:
    """The whole document: wrap already-built pipeline entries with the schema version and counters."""
    return {
        "schema": SCHEMA_VERSION,
        "generated": now if now is not None else time.time(),
        "event_queues": event_queues,
        "pipelines": pipelines,
    }


def find_item(status: dict[str, Any], change: str, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Items whose change is `change` ("N,P" or "N"), with their pipeline name added, for the CLI and the API."""
    found = []
    for p in status.get("pipelines", []):
        if pipeline and p["name"] != pipeline:
            continue
        for q in p["queues"]:
            for item in q["items"]:
                key = item["change"]["key"]
                if change in (key, key.split(",")[0]):
                    found.append({**item, "pipeline": p["name"], "queue": q["name"]})
    return found


# -- from the build history: item ETAs (p50-p90) and provider outliers ----------------------------------------------
class HistoryInsight:
    """What the status document adds from the build history, recomputed at most every `ttl` seconds:

    - each item's ETA as a range (`eta`: p50, p90, merge_probability; gatekeeper.stats.eta), from each job's
      recent durations and pass rate, counting the chance that an item ahead fails and resets it;
    - providers whose job failure rate is an outlier against the others' (`provider_outliers`;
      gatekeeper.stats.outliers), over the latest final builds that were not infrastructure failures;
    - how many of the latest builds failed for each class (`failure_classes`: change, infrastructure, unknown).
    """

    def __init__(self, history: Any, ttl: float = 60.0, samples: int = 50, window: int = 600,
                 simulations: int = 200) -> None:
        self.history = history
        self.ttl = ttl
        self.samples = samples
        self.window = window
        self.simulations = simulations
        self._jobs: dict[tuple[str, str], tuple[float, tuple[list[float], float] | None]] = {}
        self._outliers: tuple[float, tuple[list[dict[str, Any]], dict[str, int]]] | None = None

    def job(self, project: str, job: str) -> tuple[list[float], float] | None:
        """(recent durations, pass rate) of a job for a project; None when it never finished."""
        now = time.monotonic()
        hit = self._jobs.get((project, job))
        if hit is None or now - hit[0] > self.ttl:
            rows = [r for r in self.history.builds(project=project, job=job, final=True, limit=self.samples)
                    if r.result not in ("ABORTED", "SKIPPED") and r.failure_class != "infrastructure"]
            durations = [r.duration for r in rows if r.start_time and r.duration > 0]
            passed = sum(r.result == "SUCCESS" for r in rows)
            # a job seen a few times is not trusted to always pass: (passed + 1) / (runs + 2)
            hit = (now, (durations, (passed + 1) / (len(rows) + 2)) if durations else None)
            self._jobs[(project, job)] = hit
        return hit[1]

    def provider_outliers(self) -> list[dict[str, Any]]:
        return self._recent()[0]

    def failure_classes(self) -> dict[str, int]:
        """How many of the latest builds (retried attempts included) failed for each class."""
        return self._recent()[1]

    def _recent(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        from gatekeeper.stats.outliers import outliers_from_history

        now = time.monotonic()
        if self._outliers is None or now - self._outliers[0] > self.ttl:
            every = self.history.builds(limit=self.window)
            classes = {"change": 0, "infrastructure": 0, "unknown": 0}
            for r in every:
                if r.failure_class in classes:
                    classes[r.failure_class] += 1
            self._outliers = (now, (outliers_from_history(every, self.window), classes))
        return self._outliers[1]

    def _item_model(self, item: dict[str, Any]) -> Any:
        from gatekeeper.stats.eta import ItemModel, JobModel

        jobs = []
        for job in item["jobs"]:
            if job["state"] == COMPLETED:
                ok = job["result"] == "SUCCESS" or not job["voting"]
                jobs.append(JobModel([0.0], 1.0 if ok else 0.0))
                continue
            known = self.job(item["change"]["project"], job["name"])
            if known is None:
                return None
            durations, pass_rate = known
            jobs.append(JobModel(durations, pass_rate if job["voting"] else 1.0, job["elapsed"] or 0.0))
        return ItemModel(jobs)

    def annotate(self, status: dict[str, Any]) -> dict[str, Any]:
        """Add `eta` to every item, and `provider_outliers` and `failure_classes` to the document; returns it."""
        from gatekeeper.stats.eta import queue_etas, simulate_in_turn, simulate_queue

        for pipeline in status.get("pipelines", []):
            for queue in pipeline["queues"]:
                items = [i for i in queue["items"] if i["live"]]
                models = [self._item_model(i) for i in items]
                # in a dependent, serial or supercedent queue an item waits for those ahead; elsewhere each item
                # stands alone
                manager = pipeline.get("manager")
                if manager in IN_ORDER:
                    simulate = simulate_queue if manager == "dependent" else simulate_in_turn
                    known = next((n for n, m in enumerate(models) if m is None), len(models))
                    # each from those ahead of it
                    etas = queue_etas(models[:known], self.simulations, seed=0, simulate=simulate)
                    for item, eta in zip(items, etas, strict=False):
                        item["eta"] = eta.to_dict()
                else:
                    for item, model in zip(items, models, strict=True):
                        if model is not None:
                            item["eta"] = queue_etas([model], self.simulations, seed=0)[0].to_dict()
                for item in queue["items"]:
                    item.setdefault("eta", None)
        status["provider_outliers"] = self.provider_outliers()
        status["failure_classes"] = self.failure_classes()
        return status
