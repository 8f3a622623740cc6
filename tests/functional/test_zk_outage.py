"""ZooKeeper going away mid-gate: no decision on half-known state, and the gate resumes unaided when it is back,
also when the scheduler's session expired meanwhile. A ZooKeeper of these tests' own, stopped and started."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.gerrit.source import GerritChangeSource, GerritReporter
from gatekeeper.scheduler.scheduler import Scheduler
from gatekeeper.zk import paths
from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.server import LocalZooKeeper
from tests.functional.blackhole import BlackholeProxy
from tests.functional.gate_harness import CONNECTION, GateHarness
from tests.helpers import wait_for


@pytest.fixture
def own_zk() -> Iterator[LocalZooKeeper]:
    server = LocalZooKeeper(force_sync=False)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def client_factory(hosts: str, made: list[ZKClient], timeout: float = 6.0) -> Callable[..., ZKClient]:
    def make(**kwargs: object) -> ZKClient:
        kwargs.setdefault("timeout", timeout)
        client = ZKClient(hosts, chroot="/gatekeeper", **kwargs).start()
        made.append(client)
        return client
    return make


def reported_once(gate: GateHarness, *changes) -> None:
    for change in changes:
        messages = gate.ci_messages(change)
        assert sum("Starting gate jobs." in m for m in messages) == 1, messages
        assert sum("Build succeeded (gate pipeline)." in m for m in messages) == 1, messages
        assert not any("could not be merged" in m or "Build failed" in m for m in messages), messages


def test_zookeeper_stopped_mid_gate_and_started_again_the_gate_resumes_unaided(tmp_path, own_zk) -> None:
    made: list[ZKClient] = []
    # Sessions outlive this outage (the expiry case is the next test): this one is about a suspension.
    gate = GateHarness(tmp_path, client_factory(own_zk.hosts, made, timeout=20.0))
    try:
        a, b = gate.change("org/a"), gate.change("org/b")
        gate.settle()
        gate.executor.hold = True
        gate.approve(a, b)
        wait_for(lambda: {r.changes for r in gate.executor.held()} >= {"1,1", "1,1 2,1"}, 60, "both to be tested")
        own_zk.stop()
        c = gate.change("org/a")  # Gerrit moves on while ZooKeeper is away
        gate.approve(c)
        wait_for(lambda: not any(s.zk.connected for s in gate.schedulers), 20, "the scheduler to lose ZooKeeper")
        own_zk.start()
        wait_for(lambda: all(c.connected for c in made), 60, "every service back on ZooKeeper")
        gate.executor.hold = False
        gate.executor.release()
        wait_for(lambda: [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3, 120, "all three to merge")
        gate.settle()
        reported_once(gate, a, b, c)
    finally:
        gate.stop()
        for client in made:
            client.stop()


class ProxiedSchedulerGate(GateHarness):
    """The gate harness whose scheduler reaches ZooKeeper through a proxy that can blackhole its connection."""

    proxy: BlackholeProxy

    def start_scheduler(self) -> Scheduler:
        conn = self._connection(None)
        zk = ZKClient(f"127.0.0.1:{self.proxy.port}", chroot="/gatekeeper", timeout=4.0).start()
        scheduler = Scheduler(zk, self.load_layout(), GerritChangeSource(conn), GerritReporter(conn),
                              connections=(CONNECTION,), layout_loader=self.load_layout, ignore_accounts=("ci",))
        self.schedulers.append(scheduler.start())
        return scheduler


def test_scheduler_session_expired_mid_gate_resumes_unaided(tmp_path, own_zk) -> None:
    made: list[ZKClient] = []
    ProxiedSchedulerGate.proxy = BlackholeProxy(own_zk.port).start()
    gate = ProxiedSchedulerGate(tmp_path, client_factory(own_zk.hosts, made))
    try:
        [scheduler] = gate.schedulers
        events: list[ConnectionEvent] = []
        scheduler.zk.add_listener(events.append)
        a, b = gate.change("org/a"), gate.change("org/b")
        gate.settle()
        gate.executor.hold = True
        gate.approve(a, b)
        wait_for(lambda: {r.changes for r in gate.executor.held()} >= {"1,1", "1,1 2,1"}, 60, "both to be tested")
        gate.executor.hold = False
        registered = paths.component("scheduler", scheduler.component.info.ident)
        gate.proxy.blackhole(new_too=True)  # the scheduler's ZooKeeper goes silent, its locks held...
        gate.executor.release()  # ... while the results come in
        c = gate.change("org/a")
        gate.approve(c)
        wait_for(lambda: not gate.zk.client.exists(registered), 60, "ZooKeeper to expire the scheduler's session")
        gate.proxy.restore()
        wait_for(lambda: ConnectionEvent.LOST in events, 60, f"the scheduler to learn its session expired ({events})")
        wait_for(lambda: [gate.status(x) for x in (a, b, c)] == ["MERGED"] * 3, 120, "all three to merge")
        gate.settle()
        reported_once(gate, a, b, c)
        assert scheduler.stats.zk_waits >= 1 or ConnectionEvent.SUSPENDED in events
    finally:
        gate.stop()
        ProxiedSchedulerGate.proxy.stop()
        for client in made:
            client.stop()


def test_work_left_under_a_dead_schedulers_lock_is_taken_up_when_its_session_ends(
        tmp_path, zk_factory: Callable[..., ZKClient], monkeypatch) -> None:
    from gatekeeper.scheduler import locks as locks_module
    from gatekeeper.scheduler import scheduler as scheduler_module

    # No safety round and no lease expiry to fall back on: only the lock watch can wake the survivor.
    monkeypatch.setattr(scheduler_module, "SAFETY_INTERVAL", 600.0)
    monkeypatch.setattr(locks_module, "LOCK_LEASE", 600.0)
    gate = GateHarness(tmp_path, zk_factory)
    hang = threading.Event()
    try:
        [first] = gate.schedulers
        a = gate.change("org/a")
        gate.settle()
        gate.executor.hold = True
        gate.approve(a)
        wait_for(lambda: "gate" in first._held and gate.executor.held(), 60, "the first scheduler to gate it")
        first.run_round = lambda refresh=False: hang.wait()  # it hangs (or was killed): its session and lock live on
        survivor = gate.start_scheduler()
        gate.executor.hold = False
        gate.executor.release()  # the results wake the survivor, which finds the gate locked
        wait_for(lambda: "gate" in survivor._lock_watched, 60, "the survivor to find the lock held")
        first.zk.client.stop()  # the dead scheduler's session ends: its lock goes
        wait_for(lambda: gate.status(a) == "MERGED", 60, "the survivor to take up the gate")
    finally:
        hang.set()
        gate.stop()
