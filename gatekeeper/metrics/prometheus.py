"""Metric families, and their exposition for Prometheus through `prometheus_client` (text format 0.0.4 by default,
OpenMetrics when the scraper asks for it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass
class Sample:
    labels: dict[str, str]
    value: float
    suffix: str = ""  # "_sum", "_count" for summaries


@dataclass
class MetricFamily:
    """One metric name with its type, help text and samples (one per label set)."""

    name: str
    kind: str  # gauge, counter, summary
    help: str
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} is not a valid Prometheus name")

    def add(self, value: float, suffix: str = "", **labels: object) -> MetricFamily:
        self.samples.append(Sample({k: str(v) for k, v in labels.items()}, float(value), suffix))
        return self


class _Families:
    """A prometheus_client collector over families computed elsewhere (one snapshot, one scrape)."""

    def __init__(self, families: list[MetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            # prometheus_client names a counter without its _total; its samples keep the full name
            name = family.name.removesuffix("_total") if family.kind == "counter" else family.name
            metric = Metric(name, family.help, family.kind)
            for sample in family.samples:
                metric.add_sample(family.name + sample.suffix, dict(sorted(sample.labels.items())), sample.value)
            yield metric


def _registry(families: list[MetricFamily]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))  # type: ignore[arg-type]  (a collector needs only collect())
    return registry


def render(families: list[MetricFamily]) -> str:
    """The families in Prometheus' text format 0.0.4, each with its HELP and TYPE lines."""
    return generate_latest(_registry(families)).decode()


def exposition(families: list[MetricFamily], accept: str = "") -> tuple[bytes, str]:
    """The families in the format the scraper's Accept header asks for, and its content type."""
    encoder, content_type = choose_encoder(accept)
    return encoder(_registry(families)), content_type
