"""An honest ETA for the items of a gate queue: a range (p50-p90) of the time to merge, not a mean.

Each job is known by the history's distribution of its durations and its pass rate.  The queue is simulated many
times (Monte Carlo): every item runs its jobs in parallel (an item takes as long as its slowest job, drawn from
each job's durations, less what a running job has already spent); it passes when every job passes (drawn from the
pass rates); it merges once it passed and every item ahead of it merged or was removed.  A failure ahead resets
the items behind it: they start their jobs again from the moment the failure is known, with new draws.  The item's
ETA is the 50th and 90th percentiles of its merge time over the simulations where it merged, and the share of
simulations where it did. In a queue whose items run one at a time (serial, supercedent) an item starts when the one
ahead of it ended, passed or failed, and nothing is reset (`simulate_in_turn`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JobModel:
    durations: Sequence[float]  # seconds, from the history (successful and failed runs)
    pass_rate: float = 1.0
    elapsed: float = 0.0  # already spent by a running build


@dataclass(frozen=True)
class ItemModel:
    jobs: Sequence[JobModel] = field(default_factory=tuple)


@dataclass(frozen=True)
class Eta:
    p50: float | None  # seconds from now; None when the item merged in no simulation
    p90: float | None
    merge_probability: float

    def to_dict(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p90": self.p90, "merge_probability": self.merge_probability}


def _run(item: ItemModel, rng: random.Random, first: bool) -> tuple[float, bool]:
    """One run of an item's jobs: (seconds, passed).  Only a first run continues from the jobs' elapsed time."""
    longest, passed = 0.0, True
    for job in item.jobs:
        spent = job.elapsed if first else 0.0
        draws = [d for d in job.durations if d > spent] if spent else job.durations
        duration = (rng.choice(draws) if draws else spent) - spent if job.durations else 0.0
        longest = max(longest, duration)
        passed = passed and rng.random() < job.pass_rate
    return longest, passed


def simulate_queue(items: Sequence[ItemModel], rng: random.Random) -> list[float | None]:
    """One simulated future of a dependent queue: each item's merge time (seconds from now) or None."""
    n = len(items)
    start = [0.0] * n
    runs = [_run(item, rng, True) for item in items]
    merged: list[float | None] = [None] * n
    last_merge = 0.0
    for i in range(n):
        duration, passed = runs[i]
        done = start[i] + duration
        if passed:
            merged[i] = last_merge = max(done, last_merge)
            continue
        for j in range(i + 1, n):  # reset behind the failure, from when it is known
            if start[j] < done:
                start[j] = done
                runs[j] = _run(items[j], rng, False)
    return merged


def simulate_in_turn(items: Sequence[ItemModel], rng: random.Random) -> list[float | None]:
    """One simulated future of a queue whose items run one at a time (a serial or supercedent pipeline's): each
    starts when the one ahead ended, whatever its result, and nothing is reset; each item's time to success
    (seconds from now) or None."""
    out: list[float | None] = []
    ended = 0.0
    for item in items:
        duration, passed = _run(item, rng, True)  # only the head has started: the others have spent nothing
        ended += duration
        out.append(ended if passed else None)
    return out


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def queue_etas(items: Sequence[ItemModel], simulations: int = 400, seed: int | None = 0,
               simulate: Callable[[Sequence[ItemModel], random.Random], list[float | None]] = simulate_queue,
               ) -> list[Eta]:
    """The ETA of every item of a queue, head first (`simulate`: a dependent queue's, or `simulate_in_turn`)."""
    rng = random.Random(seed)
    times: list[list[float]] = [[] for _ in items]
    for _ in range(simulations):
        for i, t in enumerate(simulate(items, rng)):
            if t is not None:
                times[i].append(t)
    out = []
    for ts in times:
        if ts:
            out.append(Eta(_percentile(ts, 0.5), _percentile(ts, 0.9), len(ts) / simulations))
        else:
            out.append(Eta(None, None, 0.0))
    return out
