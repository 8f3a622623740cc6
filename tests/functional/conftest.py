"""Fixtures of the functional tests: the gate harness (real ZooKeeper, Gerrit simulator over SSH, merger, test
executor, scheduler), torn down whatever the test did."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.scheduler import locks
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import LAYOUT, GateHarness

# How long an in-process scheduler keeps a pipeline lock after its last pass. The product's 1 s lets a burst of real
# traffic cost one lock; what a pass consumed is deleted when the lock is let go, and a test's settle() waits for
# that after every step, so a short lease makes each settle short while it still waits for the same thing (a test
# that needs the lock kept sets its own lease, as monkeypatch lets it).
TEST_LOCK_LEASE = 0.2


@pytest.fixture(autouse=True)
def short_scheduler_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "LOCK_LEASE", TEST_LOCK_LEASE)


@pytest.fixture
def gate_layout() -> str:
    """The layout the `gate` fixture runs; a test module overrides this fixture to run its own."""
    return LAYOUT


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient], gate_layout: str) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory, layout_text=gate_layout)
    try:
        yield harness
    finally:
        harness.stop()
