"""A Gerrit event stream that dies silently (packets dropped, nothing closed) is noticed by an SSH keepalive that
wants an answer, within 15 s; the listener reconnects, catches up by query, and what happened meanwhile gates. A
stream whose start Gerrit never answers is given up at the connection's timeout and opened again."""

from __future__ import annotations

import time
from collections.abc import Callable

from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.watcher import StreamWatcher
from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.zk.client import ZKClient
from tests.functional.blackhole import BlackholeProxy
from tests.functional.gate_harness import CONNECTION, GateHarness
from tests.helpers import wait_for


class ProxiedGate(GateHarness):
    """The gate harness with the event listener's SSH connections going through a proxy that can blackhole."""

    proxy: BlackholeProxy | None = None

    def _connection(self, zk: ZKClient | None) -> GerritConnection:
        if zk is None:
            return super()._connection(zk)
        self.proxy = BlackholeProxy(self.sim.port).start()
        conn = GerritConnection(CONNECTION, "127.0.0.1", "ci", port=self.proxy.port, keyfile=self.ci.key_file,
                                web_url=self.sim.web_url, zk=zk, ssh_timeout=10.0, ssh_retries=2, retry_delay=0.1,
                                stream_backoff_min=0.1, stream_backoff_max=0.5)
        conn.start()
        self.connections.append(conn)
        return conn

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.proxy is not None:
                self.proxy.stop()


def test_blackholed_stream_is_detected_within_15s_and_an_approval_made_meanwhile_gates(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    gate = ProxiedGate(tmp_path, zk_factory)
    try:
        a = gate.change("org/a")
        gate.settle()
        listener = gate.connection.listener
        watcher, streams = listener.watcher, listener.streams
        assert gate.proxy.blackhole() >= 1
        blackholed = time.monotonic()
        gate.approve(a)  # its event goes into the dead stream and never arrives
        wait_for(lambda: watcher.dead_streams >= 1, 20, "the dead stream to be noticed")
        detected = time.monotonic() - blackholed
        assert detected <= 15, f"the dead stream was noticed after {detected:.1f}s"
        wait_for(lambda: listener.streams > streams, 20, "a new stream, caught up")
        wait_for(lambda: gate.status(a) == "MERGED", 60, "the approval made while the stream was dead to gate")
        gate.settle()
        starts = [m for m in gate.ci_messages(a) if "Starting gate jobs." in m]
        assert len(starts) == 1 and listener.catch_ups >= 1
    finally:
        gate.stop()


def test_a_stream_whose_start_gerrit_never_answers_is_opened_again(tmp_path) -> None:
    sim = GerritSimulator(str(tmp_path / "site")).start()
    watcher: StreamWatcher | None = None
    try:
        ci = sim.add_account("ci", name="CI", email="ci@example.com", key_dir=str(tmp_path / "keys"))
        sim.faults.unanswered("stream-events")  # the connection goes silent as the command arrives, and stays so
        watcher = StreamWatcher("127.0.0.1", sim.port, "ci", ci.key_file, on_line=lambda line, at: None,
                                connect_timeout=1.0, backoff_min=0.1, backoff_max=0.5)
        watcher.start()
        wait_for(lambda: watcher.connects >= 1, 30, "a stream started on a new connection")
        assert sim.faults.pending("stream-events") == 0 and sim.listener_count("ci") == 1
    finally:
        if watcher is not None:
            watcher.stop()
        sim.stop()
