"""How fast the gate merges, what one event costs the scheduler, and how much ZooKeeper work a change takes.

Runs the whole gate on loopback (its own ZooKeeper, the Gerrit simulator over SSH, the Gerrit connection, the
merger, the test executor with builds lasting D seconds, one scheduler), then removes everything.

    merge_50_s            50 approved changes, all passing, unlimited window: first approval to last merge
    merge_50_head_fail_s  the same with the first change failing
    event_cpu_ms_10/_500  scheduler CPU per Gerrit event about a queued change (a comment), with 10 then 500
                          items queued (window 100, builds held so that nothing leaves the queue)
    merges_for_100_items  merges the merger did to bring the 100 active items of that 500-item queue to their
                          speculative states (incremental: one per item)
    event_cpu_ms_*_changing  the same for events that change an item (a Code-Review vote): the loop runs
    zk_ops_per_change     ZooKeeper requests (server's zk_packets_received) per merged change in merge_50, all services

    python bench/gate.py [--quick] [--duration D]

A summary for people, then the figures as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.zk.client import ZKClient  # noqa: E402
from gatekeeper.zk.server import LocalZooKeeper  # noqa: E402
from tests.functional.gate_harness import GateHarness  # noqa: E402

LAYOUT = """
pipelines:
  - name: gate
    manager: dependent
    precedence: high
    trigger:
      gerrit:
        - event: comment-added
          approval: [{{Approved: 1}}]
    require:
      open: true
      current-patchset: true
      approval: [{{Code-Review: 2}}, {{Approved: 1}}]
{start}
    success: {{gerrit: {{labels: {{Verified: 2}}, message: Build succeeded (gate pipeline)., submit: true}}}}
    failure: {{gerrit: {{labels: {{Verified: -2}}, message: Build failed (gate pipeline).}}}}
    merge-conflict: {{gerrit: {{labels: {{Verified: -2}}, message: Merge conflict.}}}}
    window: {{initial: {window}, floor: 3, increase: 1, decrease-factor: 2}}
queues:
  - name: integrated
jobs:
  - name: unit
projects:
  - name: org/a
    queue: integrated
    pipelines: {{gate: [unit]}}
"""


START = "    start: {gerrit: {labels: {Verified: 0}, message: Starting gate jobs.}}"


class Bench:
    def __init__(self, root: Path, server: LocalZooKeeper) -> None:
        self.root = root
        self.server = server
        self.clients: list[ZKClient] = []

    def harness(self, name: str, duration: float, window: int, start: bool = True) -> GateHarness:
        chroot = f"/bench-{name}-{uuid.uuid4().hex[:6]}"

        def factory(**kwargs: object) -> ZKClient:
            client = ZKClient(self.server.hosts, chroot=chroot, timeout=10.0).start()
            self.clients.append(client)
            return client

        text = LAYOUT.format(window=window, start=START if start else "")
        return GateHarness(self.root / name, factory, text, projects=("org/a",),
                           executor_duration=duration)

    def wait_merged(self, gate: GateHarness, changes: list, expect: int, timeout: float) -> float:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            merged = sum(gate.sim.change(c).status == "MERGED" for c in changes)
            done = sum(gate.sim.change(c).status != "NEW" or gate.ci_votes(c).get("Verified", 0) < 0
                       for c in changes)
            if merged >= expect and done >= len(changes):
                return time.monotonic()
            time.sleep(0.02)
        raise RuntimeError(f"only {merged} of {expect} changes merged within {timeout:.0f}s")

    def gate_run(self, name: str, count: int, duration: float, fail_head: bool = False) -> dict:
        gate = self.harness(name, duration, window=1000)
        try:
            changes = [gate.change("org/a", files={f"f{i}.txt": f"{i}\n"}) for i in range(count)]
            gate.settle()
            if fail_head:
                gate.executor.fail("unit", changes[0].number, "FAILURE")
            merges_before = gate.merger.counters.merges
            packets_before = self.server.packets_received()
            started = time.monotonic()
            gate.approve(*changes)
            finished = self.wait_merged(gate, changes, count - (1 if fail_head else 0), 120 + 3 * duration)
            gate.settle()
            packets = self.server.packets_received() - packets_before
            return {
                "seconds": finished - started,
                "merges": gate.merger.counters.merges - merges_before,
                "zk_ops_per_change": packets / count,
                "reports": sum(s.stats.reports for s in gate.schedulers),
            }
        finally:
            gate.stop()

    def event_cpu(self, sizes: tuple[int, ...], events: int, changing: int,
                  window: int) -> tuple[dict[int, float], int]:
        """Scheduler CPU per Gerrit event about a queued change, with the queue grown to each size in turn; and
        the merges the queue's active items took (`window` of them, once the queue is that long)."""
        gate = self.harness("cpu", 0.0, window=window, start=False)
        cpu: dict[int, float] = {}
        try:
            gate.executor.hold = True
            changes: list = []
            merges_before = gate.merger.counters.merges
            for size in sizes:
                fresh = [gate.change("org/a", files={f"f{i}.txt": f"{i}\n"}) for i in range(len(changes), size)]
                changes += fresh
                gate.approve(*fresh)
                gate.settle(timeout=300)
                assert len(gate.gate_queue()) == size, gate.gate_queue()
                scheduler = gate.schedulers[0]
                cpu_before, rounds_before = scheduler.stats.cpu, scheduler.stats.rounds
                for i in range(events):
                    gate.sim.review(changes[(i * 7) % size], "jane", message=f"Looks fine ({i}).")
                    gate.settle()  # one event at a time: the cost of one event, not of a batch
                assert scheduler.stats.rounds - rounds_before >= events
                cpu[size] = (scheduler.stats.cpu - cpu_before) / events * 1000
                # Events that change an item (a vote): the queue loop runs and the item is written.
                cpu_before, passes_before = scheduler.stats.cpu, scheduler.stats.passes
                for i in range(changing):
                    target = changes[(i // 2 * 7) % size]  # +1, then back to 0, on each change in turn
                    gate.sim.review(target, "jane", labels={"Code-Review": 1 if i % 2 == 0 else 0})
                    gate.settle()
                assert scheduler.stats.passes - passes_before >= changing
                cpu[-size] = (scheduler.stats.cpu - cpu_before) / changing * 1000
            return cpu, gate.merger.counters.merges - merges_before
        finally:
            gate.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short jobs and fewer events (under 50 s)")
    parser.add_argument("--duration", type=float, help="fake job duration D in seconds (default 10, quick 2)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    events = 4 if args.quick else 20
    root = Path(tempfile.mkdtemp(prefix="gk-bench-gate-"))
    server = LocalZooKeeper(data_dir=str(root / "zk"))
    figures: dict[str, float] = {"job_s": duration}
    try:
        server.start()
        bench = Bench(root, server)
        phases = []

        def timed(name, func, *a, **kw):
            t0 = time.monotonic()
            out = func(*a, **kw)
            phases.append(f"{name} {time.monotonic() - t0:.1f}s")
            return out

        passing = timed("merge50", bench.gate_run, "merge50", 50, duration)
        failing = timed("merge50fail", bench.gate_run, "merge50fail", 50, duration, fail_head=True)
        cpu, merges_100 = timed("cpu", bench.event_cpu, (10, 500), events, 4 if args.quick else 10, window=100)
        cpu_10, cpu_500 = cpu[10], cpu[500]
        print("phases: " + ", ".join(phases))
        figures.update(
            merge_50_s=round(passing["seconds"], 2),
            merge_50_head_fail_s=round(failing["seconds"], 2),
            event_cpu_ms_10=round(cpu_10, 2),
            event_cpu_ms_500=round(cpu_500, 2),
            merges_for_100_items=merges_100,
            zk_ops_per_change=round(passing["zk_ops_per_change"], 1),
            event_cpu_ms_10_changing=round(cpu[-10], 2),
            event_cpu_ms_500_changing=round(cpu[-500], 2),
        )
        for client in bench.clients:
            try:
                client.stop()
            except Exception:
                pass
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    print(f"job duration D               {duration:.1f} s")
    print(f"50 passing changes merged in {figures['merge_50_s']:.1f} s  (target <= {1.3 * duration + 5:.1f} s)")
    print(f"... with the head failing    {figures['merge_50_head_fail_s']:.1f} s  "
          f"(target <= {2.3 * duration + 5:.1f} s)")
    print(f"scheduler CPU per event      {figures['event_cpu_ms_10']:.1f} ms with 10 queued, "
          f"{figures['event_cpu_ms_500']:.1f} ms with 500 queued (target ratio <= 2)")
    print(f"... events changing an item  {figures['event_cpu_ms_10_changing']:.1f} ms with 10 queued, "
          f"{figures['event_cpu_ms_500_changing']:.1f} ms with 500 queued (the loop runs, the item is saved)")
    print(f"merges for 100 items         {figures['merges_for_100_items']}  (target 100)")
    print(f"ZooKeeper requests / change  {figures['zk_ops_per_change']:.1f}  (target <= 50)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
