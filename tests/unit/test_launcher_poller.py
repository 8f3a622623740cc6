"""A provider's server poller, once stopped, answers every new wait at once: nothing would ever resolve it, and a
launch or delete waiting on it would hold up the launcher's exit for its whole timeout (an hour of launch-timeout
by default)."""

from __future__ import annotations

from concurrent.futures import CancelledError

import pytest

from gatekeeper.launcher.poller import ServerPoller
from gatekeeper.launcher.providers.base import ServerInfo


class OneBuilding:
    """An adapter whose cloud has one server, s2, building for ever: a listing is all the poller asks of it."""

    def poll(self) -> dict:
        return {"s2": ServerInfo("s2", state="BUILD")}


def test_a_wait_asked_of_a_stopped_poller_is_cancelled_at_once() -> None:
    poller = ServerPoller("cloud", OneBuilding(), interval=0.01)
    poller.stop()
    settled, gone = poller.wait_settled("s1"), poller.wait_gone("s1")
    assert settled.cancelled() and gone.cancelled()
    with pytest.raises(CancelledError):
        settled.result(timeout=0)


def test_a_running_poller_resolves_a_wait_and_stop_cancels_those_left() -> None:
    poller = ServerPoller("cloud", OneBuilding(), interval=0.01)
    try:
        assert poller.wait_gone("s1").result(timeout=5) is True  # not listed: gone
        pending = poller.wait_settled("s2")  # listed, but never ACTIVE or ERROR: it waits
        assert not pending.done()
    finally:
        poller.stop()
    assert pending.cancelled()
