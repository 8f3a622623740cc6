"""Gerrit events per second and latency: simulator -> SSH stream-events -> GerritConnection -> ZooKeeper.

Sets up its own ZooKeeper, Gerrit simulator and temp dirs, and removes them all at the end. Two phases per
run: a burst (comments posted as fast as the simulator can, measuring events/s end to end) and a paced
stream (a steady rate, measuring the latency from the simulator emitting an event to its ZooKeeper
transaction having committed). Reports the median over the runs; the last output line is JSON.

Every figure counts only work that was done: after each phase, the events are read back from the connection's
ZooKeeper queue, and each comment posted must be there exactly once, parsed with its type, project, branch,
change, patch set, author and text. A phase ends when every event arrived or when the end markers posted after it
arrived (the stream is ordered, so what is missing then is lost). When the work was not done the benchmark says
why and exits 1. `--self-check` breaks the listener on purpose (it drops every 3rd event; it writes some events
twice; its parser loses the author of every 4th event) and exits 0 only when each is refused and an unbroken
run is not.

    python bench/gerrit_events.py [--quick] [--runs N] [--self-check]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.selfcheck import finish  # noqa: E402
from gatekeeper.gerrit import GerritConnection  # noqa: E402
from gatekeeper.gerrit import listener as listener_module  # noqa: E402
from gatekeeper.gerrit.events import GerritEvent  # noqa: E402
from gatekeeper.sim.gerrit import GerritSimulator  # noqa: E402
from gatekeeper.zk.client import ZKClient  # noqa: E402
from gatekeeper.zk.record import decode  # noqa: E402
from gatekeeper.zk.server import LocalZooKeeper  # noqa: E402

PROJECT, BRANCH, AUTHOR = "org/project", "master", "rita"
MARKERS = 3  # end markers after each phase: a listener that loses some events still lets one through


class BenchFailure(Exception):
    """The work the benchmark timed was not done (so its figures would mean nothing)."""


def bench_key(event: GerritEvent) -> str | None:
    """The key of a comment posted by this benchmark ("bench <run> b12"), or None for any other event."""
    if event.type == "comment-added" and event.comment and "\n\nbench " in event.comment:
        return event.comment.split("\n\n", 1)[1]
    return None


class Probe:
    """Collects, per bench comment, the time its event was durable in ZooKeeper and how many times it was."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.copies: Counter = Counter()
        self.cond = threading.Condition()

    def __call__(self, batch: list[GerritEvent]) -> None:
        now = time.time()
        with self.cond:
            for event in batch:
                key = bench_key(event)
                if key is not None:
                    self.copies[key] += 1
                    self.done.setdefault(key, now)
            self.cond.notify_all()

    def wait(self, keys: list[str], markers: list[str], timeout: float) -> None:
        """Until every key arrived, or an end marker did (events behind it in the stream are not coming)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(k in self.done for k in keys) and not any(m in self.done for m in markers):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.cond.wait(remaining)


class Rig:
    """A ZooKeeper server and a Gerrit simulator with one change to comment on, shared by the measurements."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.zk_server = LocalZooKeeper()
        self.sim = GerritSimulator(f"{tmp}/site")
        self.change = 0
        self.key = ""

    def start(self) -> None:
        self.zk_server.start()
        self.sim.start()
        self.key = self.sim.add_account("ci", key_dir=f"{self.tmp}/keys").key_file
        self.sim.add_account(AUTHOR)
        self.sim.create_project(PROJECT)
        self.change = self.sim.create_change(PROJECT, "Bench").number

    def close(self) -> None:
        self.sim.stop()
        self.zk_server.cleanup()


class Measurement:
    """One GerritConnection (its own ZooKeeper chroot) whose listener is timed and whose queue is checked."""

    def __init__(self, rig: Rig, chroot: str) -> None:
        self.rig = rig
        self.zk = ZKClient(rig.zk_server.hosts, chroot=chroot).start()
        self.conn = GerritConnection("bench", "127.0.0.1", "ci", port=rig.sim.port, keyfile=rig.key, zk=self.zk)
        self.probe = Probe()
        self.checked: set[str] = set()  # queue entries already read back
        self.conn.start()
        listener = self.conn.listener
        assert listener is not None
        listener.on_enqueued = self.probe
        self.queue_path = listener.queue.path
        if not rig.sim.wait_for(lambda: listener.ready, 30):
            raise BenchFailure("the Gerrit listener did not start streaming within 30 s")

    def close(self) -> None:
        self.conn.stop()
        self.zk.stop()

    def post(self, key: str) -> float:
        sent = time.time()
        self.rig.sim.comment(self.rig.change, AUTHOR, key)
        return sent

    def finish_phase(self, phase: str, keys: list[str]) -> None:
        """Post the end markers, wait for the phase's events, and check them in ZooKeeper."""
        markers = [f"{keys[0][:-1]}end{i}" for i in range(MARKERS)]  # "bench 0 b0" -> "bench 0 bend1"
        for marker in markers:
            self.post(marker)
        self.probe.wait(keys, markers, 120)
        self.verify(phase, keys, markers)

    def verify(self, phase: str, keys: list[str], markers: list[str]) -> None:
        """Every key's event is in the queue exactly once with the content that was posted; nothing else from
        this benchmark is."""
        client = self.zk.client
        children = sorted(c for c in client.get_children(self.queue_path) if c not in self.checked)
        pending = [(c, client.get_async(f"{self.queue_path}/{c}")) for c in children]
        expected = set(keys) | set(markers)
        found: Counter = Counter()
        wrong: list[str] = []
        for child, reply in pending:
            self.checked.add(child)
            event = GerritEvent.from_dict(decode(reply.get(timeout=30)[0]))
            key = bench_key(event)
            if key is None:
                wrong.append(f"{child}: an event nobody posted ({event.type})")
                continue
            found[key] += 1
            got = (event.project, event.branch, event.change_number, event.patchset, event.author)
            want = (PROJECT, BRANCH, self.rig.change, 1, AUTHOR)
            if key not in expected:
                wrong.append(f"{child}: comment {key!r} was not posted in this phase")
            elif got != want:
                wrong.append(f"{child}: comment {key!r} parsed as (project, branch, change, patch set, author) "
                             f"{got}, posted as {want}")
        missing = [k for k in keys if not found[k]]
        doubled = sorted(k for k, n in found.items() if n > 1)
        doubled += sorted(k for k, n in self.probe.copies.items() if k in expected and n > 1 and k not in doubled)
        problems = []
        if missing:
            problems.append(f"{len(missing)} of {len(keys)} events never reached ZooKeeper (e.g. {missing[:3]})")
        if doubled:
            problems.append(f"{len(doubled)} events were enqueued more than once (e.g. {doubled[:3]})")
        if wrong:
            problems.append(f"{len(wrong)} events arrived wrong: {'; '.join(wrong[:2])}")
        if problems:
            raise BenchFailure(f"{phase}: " + "; ".join(problems))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_once(m: Measurement, tag: str, burst: int, paced: int, rate: float) -> dict:
    probe = m.probe
    # Burst: as fast as the simulator can emit.
    sent: dict[str, float] = {}
    keys = [f"bench {tag} b{i}" for i in range(burst)]
    start = time.time()
    for key in keys:
        sent[key] = m.post(key)
    m.finish_phase(f"run {tag} burst", keys)
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
        sent[key] = m.post(key)
    m.finish_phase(f"run {tag} paced", keys)
    lat = [(probe.done[k] - sent[k]) * 1000 for k in keys]
    return {
        "events_per_s": burst / elapsed,
        "latency_p50_ms": percentile(lat, 0.5),
        "latency_p99_ms": percentile(lat, 0.99),
        "burst_latency_p50_ms": percentile(burst_lat, 0.5),
        "burst_latency_p99_ms": percentile(burst_lat, 0.99),
    }


def measure(rig: Rig, chroot: str, runs: int, burst: int, paced: int, rate: float, verbose: bool = True
            ) -> list[dict]:
    m = Measurement(rig, chroot)
    try:
        results = []
        for n in range(runs):
            r = run_once(m, str(n), burst, paced, rate)
            results.append(r)
            if verbose:
                print(f"run {n + 1}: {r['events_per_s']:.0f} events/s (burst of {burst}); paced {rate:.0f}/s: "
                      f"p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms; burst p50 "
                      f"{r['burst_latency_p50_ms']:.1f} ms", flush=True)
        return results
    finally:
        m.close()


# -- --self-check: the listener broken on purpose ---------------------------------------------------------------
def _dropping_parser() -> Callable:
    real, lines = listener_module.parse_event, [0]

    def parse(line: str):  # noqa: ANN202 - the listener's own signature
        lines[0] += 1
        return None if lines[0] % 3 == 0 else real(line)
    return parse


def _forgetful_parser() -> Callable:
    real, lines = listener_module.parse_event, [0]

    def parse(line: str):  # noqa: ANN202
        event = real(line)
        lines[0] += 1
        if event is not None and lines[0] % 4 == 0:
            event.author = None
        return event
    return parse


def _doubling_write() -> Callable:
    real, batches = listener_module.EventListener._write, [0]

    def write(self, batch: list[GerritEvent]) -> None:  # noqa: ANN001
        real(self, batch)
        batches[0] += 1
        if batch and batches[0] % 5 == 0:
            real(self, batch)
    return write


@contextmanager
def sabotage(name: str) -> Iterator[None]:
    if name == "drops-every-3rd-event":
        with mock.patch.object(listener_module, "parse_event", _dropping_parser()):
            yield
    elif name == "writes-some-events-twice":
        with mock.patch.object(listener_module.EventListener, "_write", _doubling_write()):
            yield
    elif name == "parser-loses-authors":
        with mock.patch.object(listener_module, "parse_event", _forgetful_parser()):
            yield
    else:
        raise ValueError(f"unknown sabotage {name!r}")


SABOTAGES = ("drops-every-3rd-event", "writes-some-events-twice", "parser-loses-authors")


def self_check(rig: Rig) -> list[str]:
    """An unbroken small run must pass and every sabotaged one must be refused; returns what went wrong."""
    missed = []
    small = dict(runs=1, burst=60, paced=30, rate=300.0, verbose=False)
    try:
        measure(rig, "/selfcheck/unbroken", **small)
        print("self-check: the unbroken listener passes the checks")
    except BenchFailure as exc:
        missed.append(f"unbroken: refused although nothing was broken: {exc}")
    for name in SABOTAGES:
        try:
            with sabotage(name):
                measure(rig, f"/selfcheck/{name}", **small)
            missed.append(f"{name}: figures were produced")
        except BenchFailure as exc:
            print(f"self-check: {name} caught: {exc}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced run (< 50 s)")
    parser.add_argument("--runs", type=int, default=None, help="repetitions (median reported)")
    parser.add_argument("--self-check", action="store_true",
                        help="break the listener on purpose and check that the benchmark refuses to report it")
    args = parser.parse_args()
    # the self-check breaks things on purpose: the errors they log are expected there
    logging.basicConfig(level=logging.CRITICAL if args.self_check else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    runs = args.runs or 3
    burst, paced, rate = (2000, 600, 300.0) if args.quick else (10000, 3000, 500.0)

    tmp = tempfile.mkdtemp(prefix="gk-bench-gerrit-")
    rig = Rig(tmp)
    try:
        rig.start()
        if args.self_check:
            return finish("gerrit_events.py", self_check(rig))
        results = measure(rig, "/bench", runs, burst, paced, rate)
    except BenchFailure as exc:
        print(f"bench/gerrit_events.py: the measured work was not done, no figures: {exc}", file=sys.stderr)
        return 1
    finally:
        rig.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {k: round(statistics.median(r[k] for r in results), 2) for k in results[0]}
    summary["events"] = (burst + paced) * runs
    summary["runs"] = runs
    print(f"Gerrit events: {summary['events_per_s']:.0f} events/s, latency p50 {summary['latency_p50_ms']:.1f} "
          f"ms, p99 {summary['latency_p99_ms']:.1f} ms (median of {runs} runs; target >= 1000/s, p50 <= 20 ms)")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
