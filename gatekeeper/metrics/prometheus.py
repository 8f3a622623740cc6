"""Metric families and the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

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


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families: list[MetricFamily]) -> str:
    """The families in Prometheus' text format, each with its HELP and TYPE lines."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
            name = family.name + sample.suffix
            lines.append(f"{name}{{{labels}}} {_number(sample.value)}" if labels else f"{name} {_number(sample.value)}")
    return "\n".join(lines) + "\n"
