"""Scale-out, as separate hosts would run it: a three-member ZooKeeper ensemble and 2 schedulers, 2 mergers,
2 launchers, 3 executors and the web, each its own process in its own network namespace, gate a queue of changes
while the ZooKeeper leader and one process of each service are SIGKILLed and later restarted: every change merges,
none is reported twice, and every process is running at the end."""

from __future__ import annotations

import time

import pytest

from tests.functional.scale_rig import ScaleRig
from tests.helpers import wait_for

pytestmark = [pytest.mark.netns]  # separate hosts need root (network namespaces): see tests/conftest.py

CHANGES = 12


@pytest.fixture
def rig(tmp_path):
    r = ScaleRig(tmp_path / "scale")
    try:
        yield r.start()
    finally:
        r.stop()


@pytest.mark.timeout(540)  # above the sum of the bounds below, so that a stall is reported by the test's own message
def test_gate_survives_the_loss_of_a_zookeeper_member_and_one_process_of_each_service(rig):
    assert len(rig.zookeepers) == 3 and len(rig.services) == 10
    changes = rig.create_changes(CHANGES)
    rig.approve(changes)
    started = time.monotonic()
    assert rig.wait_merged(changes, 3, 180), f"only 3 merged before the faults:\n{rig.report(changes)}"

    leader = rig.leader_index()
    rig.kill_zookeeper(leader)
    killed = [rig.kill(kind, 0).name for kind in ("scheduler", "merger", "launcher", "executor")]
    at_kill, faulted = rig.merged_count(changes), time.monotonic()
    # the survivors keep the gate moving on a two-member quorum
    assert rig.wait_merged(changes, at_kill + 1, 120), \
        f"the gate did not move with one process of each killed:\n{rig.report(changes)}"

    rig.restart_killed()
    restarted = time.monotonic()
    assert rig.wait_merged(changes, CHANGES, 180), (
        f"not all merged after the restart (phases {faulted - started:.0f}s, {restarted - faulted:.0f}s, "
        f"{time.monotonic() - restarted:.0f}s):\n{rig.report(changes)}")
    account = rig.account(changes)
    assert (account.merged, account.lost, account.double_reports) == (CHANGES, 0, 0)
    # the restarted member rejoins the ensemble (it may still be syncing with the leader when the last change merges)
    wait_for(lambda: sorted(m.mode() for m in rig.zookeepers) == ["follower", "follower", "leader"], 60,
             "the restarted ZooKeeper member to rejoin the ensemble")
    dead = [s for s in rig.services if not s.alive()]
    assert not dead, "\n".join(f"== {s.name} exited with {s.proc.returncode}:\n{rig.log_tail(s)}" for s in dead)
    assert all(s.restarts == 1 for s in rig.services if s.name in killed)
