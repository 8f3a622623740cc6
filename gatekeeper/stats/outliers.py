"""Providers whose job failure rate is an outlier against the others' (failed jobs, not failed boots).

A cloud that hands out broken servers makes good changes fail: each failure looks like the change's.  Over a
sliding window of each provider's latest builds, a provider is flagged when

- it and the other providers together have at least `min_builds` builds in the window each,
- its failure rate is at least `min_ratio` times the others' pooled rate, and
- the excess is significant: a one-sided Fisher exact test (hypergeometric tail) of its failures against the
  pooled builds gives p below `alpha` divided by the number of providers tested (Bonferroni).

A raw ratio alone would flag a provider that had two failures out of three builds.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProviderRate:
    provider: str
    builds: int
    failures: int
    rate: float
    others_rate: float  # the pooled rate of every other provider
    ratio: float  # rate / others_rate (inf when the others never failed)
    p_value: float
    outlier: bool
    others_builds: int = 0
    others_failures: int = 0

    def describe(self) -> str:
        """For a report: "cloud-b's failure rate is 5.0× the others' (12 of 20 jobs failed; p=0.0001)"."""
        times = "∞" if math.isinf(self.ratio) else f"{self.ratio:.1f}"
        return (f"{self.provider}'s failure rate is {times}× the others' ({self.failures} of {self.builds} jobs "
                f"failed; p={self.p_value:.2g})")


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(failures: int, builds: int, total_failures: int, total_builds: int) -> float:
    """P(X >= failures) for X ~ Hypergeometric(total_builds, total_failures, builds): how likely a provider
    would see this many failures or more if failures fell on builds regardless of provider."""
    top = min(builds, total_failures)
    denom = _log_comb(total_builds, builds)
    p = 0.0
    for x in range(failures, top + 1):
        if builds - x > total_builds - total_failures:
            continue
        p += math.exp(_log_comb(total_failures, x) + _log_comb(total_builds - total_failures, builds - x) - denom)
    return min(1.0, p)


class ProviderOutliers:
    """Keeps each provider's latest `window` job outcomes and says which providers are outliers."""

    def __init__(self, window: int = 200, min_builds: int = 10, min_ratio: float = 2.0, alpha: float = 0.01) -> None:
        self.window = window
        self.min_builds = min_builds
        self.min_ratio = min_ratio
        self.alpha = alpha
        self._outcomes: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=window))

    def add(self, provider: str, failed: bool) -> None:
        """One finished job (SUCCESS or a failure of the job's steps) that ran on `provider`."""
        self._outcomes[provider].append(bool(failed))

    def extend(self, outcomes: Iterable[tuple[str, bool]]) -> ProviderOutliers:
        for provider, failed in outcomes:
            self.add(provider, failed)
        return self

    def rates(self) -> list[ProviderRate]:
        counts = {p: (len(o), sum(o)) for p, o in self._outcomes.items() if o}
        total_builds = sum(n for n, _ in counts.values())
        total_failures = sum(f for _, f in counts.values())
        tested = [p for p, (n, _) in counts.items() if n >= self.min_builds and total_builds - n >= self.min_builds]
        out = []
        for provider, (n, f) in sorted(counts.items()):
            rest_n, rest_f = total_builds - n, total_failures - f
            rate = f / n
            others = rest_f / rest_n if rest_n else 0.0
            ratio = rate / others if others else (math.inf if f else 0.0)
            p = fisher_greater(f, n, total_failures, total_builds) if provider in tested else 1.0
            outlier = (provider in tested and ratio >= self.min_ratio
                       and p < self.alpha / max(1, len(tested)))
            out.append(ProviderRate(provider, n, f, rate, others, ratio, p, outlier, rest_n, rest_f))
        return out

    def outliers(self) -> list[ProviderRate]:
        return [r for r in self.rates() if r.outlier]


def outliers_from_history(rows: Iterable[Any], window: int = 600) -> list[dict[str, Any]]:
    """The outlier providers, JSON-able, over history rows (newest first, like HistoryDB.builds): final builds
    with a provider that were neither cancelled nor infrastructure failures count."""
    detector = ProviderOutliers(window=window)
    kept = [r for r in rows if r.final and r.node_provider and r.result not in ("ABORTED", "SKIPPED")
            and r.failure_class != "infrastructure"]
    for r in reversed(kept):  # oldest first
        detector.add(r.node_provider, r.result != "SUCCESS")
    return [{"provider": o.provider, "builds": o.builds, "failures": o.failures,
             "others_builds": o.others_builds, "others_failures": o.others_failures,
             "rate": round(o.rate, 3), "others_rate": round(o.others_rate, 3),
             "ratio": None if math.isinf(o.ratio) else round(o.ratio, 2),
             "p_value": o.p_value, "description": o.describe()} for o in detector.outliers()]


def outlier_sentence(outlier: dict[str, Any]) -> str:
    """What a failure report says of a failed job that ran on a flagged provider (`outlier` as
    `outliers_from_history` gives it)."""
    ratio = outlier.get("ratio")
    times = "many times" if ratio is None else f"{ratio:.1f}x"
    return (f"This failure ran on {outlier['provider']}, whose job failure rate ({outlier['failures']} of "
            f"{outlier['builds']}) is {times} the other providers' ({outlier.get('others_failures', 0)} of "
            f"{outlier.get('others_builds', 0)}); it may not be the change's fault.")
