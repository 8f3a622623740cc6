"""Operator requests through ZooKeeper: one no scheduler answers is withdrawn, so that it never runs after the
operator was told it failed."""

from __future__ import annotations

import pytest

from gatekeeper.zk import paths
from gatekeeper.zk.management import ManagementTimeout, send_management


def test_an_unanswered_request_is_withdrawn_and_never_runs_later(zk):
    with pytest.raises(ManagementTimeout, match="the request was withdrawn and will not run"):
        send_management(zk, {"action": "dequeue", "pipeline": "gate", "change": "1,1"}, timeout=0.5)
    assert zk.client.get_children(paths.management_queue()) == []
