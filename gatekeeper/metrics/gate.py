"""The gate's measurements, computed from one snapshot of its state: the same numbers for Prometheus and statsd.

Inputs are plain documents (the status document, node and request records, queue depths, history totals), so
this module knows nothing about where they come from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.metrics.prometheus import MetricFamily
from gatekeeper.metrics.providers import provider_metrics
from gatekeeper.metrics.statsd import StatsdClient, key_part

log = logging.getLogger("gatekeeper.metrics.gate")


@dataclass
class GateSnapshot:
    status: dict[str, Any]  # the status document (gatekeeper.web.status)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    event_queues: dict[str, int] = field(default_factory=dict)
    job_totals: list[dict[str, Any]] = field(default_factory=list)  # HistoryDB.job_totals()
    signature_hits: dict[str, int] = field(default_factory=dict)  # gatekeeper.zk.signatures.signature_totals()
    now: float = field(default_factory=time.time)


def gate_metrics(snap: GateSnapshot) -> list[MetricFamily]:
    queue_len = MetricFamily("gatekeeper_queue_items", "gauge", "Items in each change queue")
    window = MetricFamily("gatekeeper_queue_window", "gauge", "Active window of each change queue (0: unlimited)")
    resident = MetricFamily("gatekeeper_item_resident_seconds_max", "gauge",
                            "How long the oldest item of each queue has been in it")
    jobs_running = MetricFamily("gatekeeper_jobs", "gauge", "Jobs of queued items by state")
    for p in snap.status.get("pipelines", []):
        for q in p.get("queues", []):
            labels = {"pipeline": p["name"], "queue": q["name"]}
            items = q.get("items", [])
            queue_len.add(len(items), **labels)
            window.add(q.get("window", 0), **labels)
            resident.add(max((snap.now - i["enqueue_time"] for i in items), default=0.0), **labels)
            states = Counter(j["state"] for i in items for j in i.get("jobs", []))
            for state, n in sorted(states.items()):
                jobs_running.add(n, pipeline=p["name"], state=state)

    results = MetricFamily("gatekeeper_job_results_total", "counter", "Finished builds per project, job and result")
    durations = MetricFamily("gatekeeper_job_duration_seconds", "summary",
                             "Duration of finished builds per project and job")
    per_job: dict[tuple[str, str], list[float]] = {}
    for row in snap.job_totals:
        results.add(row["count"], project=row["project"], job=row["job"], result=row["result"])
        acc = per_job.setdefault((row["project"], row["job"]), [0, 0.0])
        acc[0] += row["count"]
        acc[1] += row["seconds"]
    for (project, job), (count, seconds) in sorted(per_job.items()):
        durations.add(seconds, "_sum", project=project, job=job)
        durations.add(count, "_count", project=project, job=job)

    nodes = MetricFamily("gatekeeper_nodes", "gauge", "Nodes by state, label and provider")
    failures = MetricFamily("gatekeeper_launch_failures", "gauge", "Nodes in state failed, per provider")
    by_node = Counter((n.get("state", ""), n.get("label", ""), n.get("provider", "")) for n in snap.nodes)
    for (state, label, provider), n in sorted(by_node.items()):
        nodes.add(n, state=state, label=label, provider=provider)
    for provider, n in sorted(Counter(n.get("provider", "") for n in snap.nodes if n.get("state") == "failed")
                              .items()):
        failures.add(n, provider=provider)

    requests = MetricFamily("gatekeeper_node_requests", "gauge", "Open node requests by state")
    wait = MetricFamily("gatekeeper_node_request_wait_seconds_max", "gauge",
                        "How long the oldest open node request of each state has waited")
    oldest: dict[str, float] = {}
    for r in snap.requests:
        state = r.get("state", "")
        oldest[state] = max(oldest.get(state, 0.0), snap.now - float(r.get("created", snap.now)))
    for state, n in sorted(Counter(r.get("state", "") for r in snap.requests).items()):
        requests.add(n, state=state)
        wait.add(oldest[state], state=state)

    events = MetricFamily("gatekeeper_event_queue_depth", "gauge", "Pending events per ZooKeeper event queue")
    for name, depth in sorted(snap.event_queues.items()):
        events.add(depth, queue=name)

    # diagnosis, from the status document's history insight (gatekeeper.web.status.HistoryInsight)
    classes = MetricFamily("gatekeeper_recent_failures", "gauge",
                           "Failed builds among the latest in the history, per failure class")
    for cls, n in sorted((snap.status.get("failure_classes") or {}).items()):
        classes.add(n, failure_class=cls)
    outliers = MetricFamily("gatekeeper_provider_failure_outlier", "gauge",
                            "Providers whose job failure rate is an outlier: their rate over the others'")
    for o in snap.status.get("provider_outliers") or []:
        outliers.add(o["ratio"] if o.get("ratio") is not None else float("inf"), provider=o["provider"])
    hits = MetricFamily("gatekeeper_signature_hits_total", "counter",
                        "Failed builds that matched each known-bug signature, ever")
    for ident, n in sorted(snap.signature_hits.items()):
        hits.add(n, signature=ident)
    dead = snap.status.get("dead_letters") or {}
    letters = MetricFamily("gatekeeper_events_set_aside", "gauge",
                           "Events taken out of their queue after failing: dead letters (waiting for an operator) "
                           "and those waiting for a retry")
    letters_total = MetricFamily("gatekeeper_dead_letters_total", "counter", "Events that ever became dead letters")
    if dead:
        letters.add(dead.get("dead", 0), state="dead")
        letters.add(dead.get("retrying", 0), state="retrying")
        letters_total.add(dead.get("total", 0))
    return [queue_len, window, resident, jobs_running, results, durations, nodes, failures, requests, wait, events,
            classes, outliers, hits, letters, letters_total, *provider_metrics(snap.status.get("providers") or [],
                                                                          snap.now)]


def statsd_lines(families: list[MetricFamily], prefix: str) -> list[str]:
    """Every sample as a statsd gauge: `<prefix>.<name>.<label values in label order>:<value>|g`."""
    lines = []
    for family in families:
        base = family.name.removeprefix("gatekeeper_")
        for sample in family.samples:
            parts = [base + sample.suffix] + [key_part(v) for _, v in sorted(sample.labels.items())]
            key = ".".join(parts)
            value = sample.value
            text = str(int(value)) if float(value).is_integer() else f"{value:.3f}"
            lines.append(f"{prefix}.{key}:{text}|g" if prefix else f"{key}:{text}|g")
    return lines


class StatsdReporter:
    """Every `interval` seconds, take a snapshot and send its measurements to statsd (a thread; start/stop)."""

    def __init__(self, client: StatsdClient, snapshot: Callable[[], GateSnapshot], interval: float = 10.0) -> None:
        self.client = client
        self.snapshot = snapshot
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StatsdReporter:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="statsd-reporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.close()

    def report_once(self) -> int:
        lines = statsd_lines(gate_metrics(self.snapshot()), self.client.prefix)
        self.client.send(lines)
        return len(lines)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.report_once()
            except Exception:
                log.exception("statsd report failed")
            self._stop.wait(self.interval)
