"""Node providers' health as metric families: from the JSON-able rows of gatekeeper.zk.nodes.providers_status(),
for Prometheus (/metrics) and statsd alike."""

from __future__ import annotations

import time
from typing import Any

from gatekeeper.metrics.prometheus import MetricFamily

STATES = ("healthy", "backing-off", "probing", "drained")


def provider_metrics(rows: list[dict[str, Any]], now: float | None = None) -> list[MetricFamily]:
    now = time.time() if now is None else now
    state = MetricFamily("gatekeeper_provider_state", "gauge",
                         "1 for the state each node provider is in (healthy, backing-off, probing, drained)")
    error_rate = MetricFamily("gatekeeper_provider_boot_error_rate", "gauge",
                              "Share of a provider's recent boots that failed (quota refusals not counted)")
    failures = MetricFamily("gatekeeper_provider_consecutive_boot_failures", "gauge",
                            "Boot failures in a row on a provider")
    boot = MetricFamily("gatekeeper_provider_boot_seconds", "gauge", "Boot time percentiles of recent good boots")
    backoff = MetricFamily("gatekeeper_provider_backoff_remaining_seconds", "gauge",
                           "How long a failing provider keeps backing off (0 when it is not)")
    for row in rows:
        name = row["name"]
        current = "drained" if row.get("drained") else row.get("state", "healthy")
        for s in STATES:
            state.add(1 if s == current else 0, provider=name, state=s)
        error_rate.add(row.get("error_rate") or 0.0, provider=name)
        failures.add(row.get("consecutive_failures") or 0, provider=name)
        for quantile, key in (("0.5", "boot_p50_s"), ("0.95", "boot_p95_s")):
            if row.get(key) is not None:
                boot.add(row[key], provider=name, quantile=quantile)
        until = row.get("backing_off_until")
        backoff.add(max(0.0, until - now) if until else 0.0, provider=name)
    return [state, error_rate, failures, boot, backoff]
