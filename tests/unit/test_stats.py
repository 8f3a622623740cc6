"""Provider failure-rate outliers and the queue ETA: the statistics behind diagnosis points 4 and 5."""

from __future__ import annotations

import random

from gatekeeper.stats.eta import ItemModel, JobModel, queue_etas, simulate_queue
from gatekeeper.stats.outliers import ProviderOutliers, fisher_greater


def test_fisher_tail_matches_a_hand_computed_hypergeometric():
    # 4 builds on a provider, all failed, out of 10 builds with 4 failures: 1 / C(10, 4)
    assert abs(fisher_greater(4, 4, 4, 10) - 1 / 210) < 1e-12
    assert fisher_greater(0, 4, 4, 10) == 1.0


def test_a_provider_with_five_times_the_failures_is_flagged_and_healthy_ones_are_not():
    rng = random.Random(1)
    detector = ProviderOutliers(min_builds=10)
    flagged_at = None
    for n in range(300):
        provider = ("cloud-a", "cloud-b", "cloud-c")[n % 3]
        detector.add(provider, rng.random() < (0.5 if provider == "cloud-b" else 0.1))
        flagged = [r.provider for r in detector.outliers()]
        assert flagged in ([], ["cloud-b"]), f"healthy provider flagged after {n + 1} builds: {flagged}"
        if flagged and flagged_at is None:
            flagged_at = n + 1
    assert flagged_at is not None and flagged_at <= 90
    (rate,) = detector.outliers()
    assert rate.describe().startswith("cloud-b's failure rate is ") and "× the others'" in rate.describe()


def test_a_high_ratio_on_few_builds_is_not_an_outlier():
    detector = ProviderOutliers(min_builds=10).extend([("a", True), ("a", True), ("a", False)] +
                                                      [("b", False)] * 30)
    assert detector.outliers() == []  # too few builds
    # 4 of 10 against 10 of 100: four times the others' rate, but p = 0.03 is no evidence yet
    detector = ProviderOutliers(min_builds=10).extend([("a", n < 4) for n in range(10)] +
                                                      [("b", n < 10) for n in range(100)])
    (a, b) = detector.rates()
    assert a.ratio == 4.0 and 0.01 < a.p_value < 0.05 and not a.outlier
    detector.extend([("a", n < 4) for n in range(10)])  # 8 of 20: now it is
    assert [r.provider for r in detector.outliers()] == ["a"]


def test_equal_providers_are_never_flagged():
    rng = random.Random(7)
    detector = ProviderOutliers(min_builds=10, window=100)
    for n in range(1500):
        detector.add(f"cloud-{n % 4}", rng.random() < 0.2)
        assert detector.outliers() == [], f"flagged after {n + 1} builds"


def test_eta_of_items_behind_counts_the_resets_of_items_ahead():
    sure = ItemModel([JobModel([100.0], 1.0)])
    flaky = ItemModel([JobModel([100.0], 0.5)])
    (eta,) = queue_etas([sure])
    assert (eta.p50, eta.p90, eta.merge_probability) == (100.0, 100.0, 1.0)
    etas = queue_etas([flaky, sure], simulations=2000)
    assert 0.4 < etas[0].merge_probability < 0.6
    # behind a flaky item: half the time it merges at 100 s, half the time it is reset and merges at 200 s
    assert etas[1].p50 in (100.0, 200.0) and etas[1].p90 == 200.0 and etas[1].merge_probability == 1.0


def test_running_jobs_count_only_their_remaining_time():
    item = ItemModel([JobModel([100.0, 120.0], 1.0, elapsed=90.0)])
    times = {simulate_queue([item], random.Random(s))[0] for s in range(50)}
    assert times == {10.0, 30.0}
