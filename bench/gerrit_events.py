"""Gerrit events per second and latency: simulator -> SSH stream-events -> GerritConnection -> ZooKeeper.

Sets up its own ZooKeeper, Gerrit simulator and temp dirs, and removes them all at the end. Two phases per
run: a burst (comments posted as fast as the simulator can, measuring events/s end to end) and a paced
stream (a steady rate, measuring the latency from the simulator emitting an event to its ZooKeeper
transaction having committed). Reports the median over the runs; the last output line is JSON.

    python bench/gerrit_events.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time

from gatekeeper.gerrit import GerritConnection
from gatekeeper.gerrit.events import GerritEvent
from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.server import LocalZooKeeper


class Probe:
    """Collects, per bench comment, the time its event was durable in ZooKeeper."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.cond = threading.Condition()

    def __call__(self, batch: list[GerritEvent]) -> None:
        now = time.time()
        with self.cond:
            for event in batch:
                if event.type == "comment-added" and event.comment and "\n\nbench " in event.comment:
                    self.done[event.comment.split("\n\n", 1)[1]] = now
            self.cond.notify_all()

    def wait(self, keys: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(k in self.done for k in keys):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_once(sim: GerritSimulator, probe: Probe, change: int, tag: str, burst: int, paced: int, rate: float
             ) -> dict:
    # Burst: as fast as the simulator can emit.
    sent: dict[str, float] = {}
    keys = [f"bench {tag} b{i}" for i in range(burst)]
    start = time.time()
    for key in keys:
        sent[key] = time.time()
        sim.comment(change, "rita", key)
    if not probe.wait(keys, 120):
        raise SystemExit(f"burst: only {sum(k in probe.done for k in keys)} of {burst} events arrived")
    elapsed = max(probe.done[k] for k in keys) - start
    burst_lat = [(probe.done[k] - sent[k]) * 1000 for k in keys]
    # Paced: a steady rate, for latency without self-inflicted queueing.
    keys = [f"bench {tag} p{i}" for i in range(paced)]
    interval = 1.0 / rate
    t0 = time.monotonic()
    for i, key in enumerate(keys):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent[key] = time.time()
        sim.comment(change, "rita", key)
    if not probe.wait(keys, 120):
        raise SystemExit(f"paced: only {sum(k in probe.done for k in keys)} of {paced} events arrived")
    lat = [(probe.done[k] - sent[k]) * 1000 for k in keys]
    return {
        "events_per_s": burst / elapsed,
        "latency_p50_ms": percentile(lat, 0.5),
        "latency_p99_ms": percentile(lat, 0.99),
        "burst_latency_p50_ms": percentile(burst_lat, 0.5),
        "burst_latency_p99_ms": percentile(burst_lat, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced run (< 50 s)")
    parser.add_argument("--runs", type=int, default=None, help="repetitions (median reported)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    runs = args.runs or 3
    burst, paced, rate = (2000, 600, 300.0) if args.quick else (10000, 3000, 500.0)

    tmp = tempfile.mkdtemp(prefix="gk-bench-gerrit-")
    zk_server = LocalZooKeeper()
    sim = GerritSimulator(f"{tmp}/site")
    zk = conn = None
    try:
        zk_server.start()
        sim.start()
        key = sim.add_account("ci", key_dir=f"{tmp}/keys").key_file
        sim.add_account("rita")
        sim.create_project("org/project")
        change = sim.create_change("org/project", "Bench").number
        zk = ZKClient(zk_server.hosts, chroot="/bench").start()
        conn = GerritConnection("bench", "127.0.0.1", "ci", port=sim.port, keyfile=key, zk=zk)
        probe = Probe()
        conn.start()
        assert conn.listener is not None
        conn.listener.on_enqueued = probe
        if not sim.wait_for(lambda: conn.listener.ready, 30):
            raise SystemExit("the Gerrit listener did not start")
        results = []
        for n in range(runs):
            r = run_once(sim, probe, change, str(n), burst, paced, rate)
            results.append(r)
            print(f"run {n + 1}: {r['events_per_s']:.0f} events/s (burst of {burst}); paced {rate:.0f}/s: "
                  f"p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms; burst p50 "
                  f"{r['burst_latency_p50_ms']:.1f} ms", flush=True)
        summary = {k: round(statistics.median(r[k] for r in results), 2) for k in results[0]}
        summary["events"] = (burst + paced) * runs
        summary["runs"] = runs
        print(f"Gerrit events: {summary['events_per_s']:.0f} events/s, latency p50 {summary['latency_p50_ms']:.1f} "
              f"ms, p99 {summary['latency_p99_ms']:.1f} ms (median of {runs} runs; target >= 1000/s, p50 <= 20 ms)")
        print(json.dumps(summary), flush=True)
    finally:
        if conn is not None:
            conn.stop()
        if zk is not None:
            zk.stop()
        sim.stop()
        zk_server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
