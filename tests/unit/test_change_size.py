"""A change too large to keep in an item is refused with a reason, not written until ZooKeeper drops the
connection (a refused write would stop its pipeline's every round)."""

from __future__ import annotations

import pytest

from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.enqueue import CHANGE_BUDGET, Refusal, check_size


def test_a_change_of_usual_size_passes() -> None:
    check_size(Change(project="org/a", number=1, patchset=1, subject="Fix it", files=["a.py"] * 1000,
                      needs=[f"{n},1" for n in range(100)]))


def test_a_change_needing_thousands_of_others_is_refused_with_its_size() -> None:
    change = Change(project="org/a", number=7, patchset=2, needs=[f"{n},1" for n in range(100000)])
    with pytest.raises(Refusal, match=rf"change 7,2 is too large for gatekeeper to keep \(\d+ bytes .*at most "
                                      rf"{CHANGE_BUDGET}\)"):
        check_size(change)
