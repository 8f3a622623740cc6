"""Fixtures of the functional tests: the gate harness (real ZooKeeper, Gerrit simulator over SSH, merger, test
executor, scheduler), torn down whatever the test did."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path, zk_factory)
    try:
        yield harness
    finally:
        harness.stop()
