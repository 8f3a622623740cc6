"""The outlier sentence of failure reports, from history rows like the history database's."""

from __future__ import annotations

from types import SimpleNamespace

from gatekeeper.stats.outliers import outlier_sentence, outliers_from_history


def row(provider: str, result: str, failure_class: str = "", final: bool = True) -> SimpleNamespace:
    return SimpleNamespace(node_provider=provider, result=result, failure_class=failure_class, final=final)


def history(failures: dict[str, tuple[int, int]], extra: list | None = None) -> list:
    rows = [row(p, "FAILURE" if n < f else "SUCCESS", "change" if n < f else "")
            for p, (builds, f) in failures.items() for n in range(builds)]
    return list(reversed(rows + (extra or [])))  # newest first


def test_sentence_names_the_provider_its_rate_and_the_others():
    (flagged,) = outliers_from_history(history({"cloud-a": (30, 5), "cloud-b": (20, 12), "cloud-c": (30, 4)}))
    assert outlier_sentence(flagged) == (
        "This failure ran on cloud-b, whose job failure rate (12 of 20) is 4.0x the other providers' (9 of 60); "
        "it may not be the change's fault.")


def test_others_that_never_failed_make_the_ratio_unbounded():
    (flagged,) = outliers_from_history(history({"cloud-a": (40, 0), "cloud-b": (20, 12)}))
    assert flagged["ratio"] is None
    assert "is many times the other providers' (0 of 40)" in outlier_sentence(flagged)


def test_infrastructure_failures_retried_attempts_and_cancelled_builds_do_not_count():
    noise = [row("cloud-b", "NODE_FAILURE", "infrastructure")] * 30 + [row("cloud-b", "FAILURE", final=False)] * 30 \
        + [row("cloud-b", "ABORTED")] * 30
    assert outliers_from_history(history({"cloud-a": (30, 3), "cloud-b": (30, 3)}, noise)) == []
