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
    zk_ops_per_change     ZooKeeper requests per merged change in merge_50, from every service's session (the
                          server's per-session `recved` counts), the harness's own polling session excluded
    report_ms_p50         median time from the scheduler asking for a head item's success report to Gerrit's
                          answer that the change merged (one `gerrit review --submit`, ledger writes included);
                          for a report asked for early, behind the head's, from the head's outcome

CPU figures are the scheduler's, all its threads: its main loop, its report threads, its query pool, its
ZooKeeper client's threads and its Gerrit SSH transport (per-thread CPU clocks).  Each phase checks that its
work was done (every change merged or rejected, every event consumed by the scheduler, every vote seen on its
item) and the benchmark exits 1, saying why, when it was not.

    python bench/gate.py [--quick] [--duration D]

A summary for people, then the figures as JSON on the last line.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatekeeper.scheduler.scheduler import Scheduler  # noqa: E402
from gatekeeper.zk import paths  # noqa: E402
from gatekeeper.zk.client import ZKClient  # noqa: E402
from gatekeeper.zk.server import LocalZooKeeper, four_letter_word  # noqa: E402
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


class CheckFailed(Exception):
    """The work a figure measures was not done: the figure would be meaningless."""


def check(condition: object, why: str) -> None:
    if not condition:
        raise CheckFailed(why)


def scheduler_cpu(scheduler: Scheduler) -> float:
    """CPU seconds of every thread the scheduler runs on (main loop, reports, queries, ZooKeeper, SSH)."""
    threads = [scheduler._thread, *scheduler._pool._threads]
    threads += [t for t in threading.enumerate() if t.name.startswith("reports-")]
    client = scheduler.zk.client
    threads += [*client.handler._workers, client._connection._connection_routine]
    transport = scheduler.source.connection.client.client
    if transport is not None and transport.get_transport() is not None:
        threads.append(transport.get_transport())
    total = 0.0
    for thread in {id(t): t for t in threads if t is not None and t.is_alive()}.values():
        try:
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):
            pass  # ended meanwhile
    return total


def session_packets(server: LocalZooKeeper, sessions: set[int]) -> int:
    """Requests the server received from these sessions (its `cons` per-connection counters)."""
    total = 0
    for line in four_letter_word(server.host, server.port, "cons").splitlines():
        fields = dict(kv.split("=", 1) for kv in line[line.find("(") + 1:line.rfind(")")].split(",") if "=" in kv)
        if "sid" in fields and int(fields["sid"], 16) in sessions:
            total += int(fields["recved"])
    return total


class Bench:
    def __init__(self, root: Path, server: LocalZooKeeper) -> None:
        self.root = root
        self.server = server
        self.clients: list[ZKClient] = []
        self.chroots: dict[str, list[ZKClient]] = {}

    def service_sessions(self, gate: GateHarness) -> set[int]:
        """The ZooKeeper sessions of the gate's services (the harness's own polling client left out)."""
        for clients in self.chroots.values():
            if gate.zk in clients:
                return {c.client.client_id[0] for c in clients if c is not gate.zk and c.client.client_id}
        raise CheckFailed("the gate's ZooKeeper clients are unknown")

    def harness(self, name: str, duration: float, window: int, start: bool = True) -> GateHarness:
        chroot = f"/bench-{name}-{uuid.uuid4().hex[:6]}"

        def factory(**kwargs: object) -> ZKClient:
            client = ZKClient(self.server.hosts, chroot=chroot, timeout=10.0).start()
            self.clients.append(client)
            self.chroots.setdefault(chroot, []).append(client)
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
            sessions = self.service_sessions(gate)
            packets_before = session_packets(self.server, sessions)
            started = time.monotonic()
            gate.approve(*changes)
            finished = self.wait_merged(gate, changes, count - (1 if fail_head else 0), 120 + 3 * duration)
            gate.settle()
            packets = session_packets(self.server, sessions) - packets_before
            merged = [c for c in changes if gate.status(c) == "MERGED"]
            check(len(merged) == count - (1 if fail_head else 0), f"{name}: {len(merged)} of {count} merged")
            if fail_head:
                check(gate.status(changes[0]) == "NEW" and gate.ci_votes(changes[0]).get("Verified") == -2,
                      f"{name}: the failing head was not rejected")
            timed = [(d, g) for s in gate.schedulers for q in s._report_queues.values()
                     for action, d, g in q.latencies if action == "success"]
            latencies = sorted(d for d, _ in timed)
            check(len(latencies) >= len(merged) - 1, f"{name}: {len(latencies)} success reports timed")
            return {
                "seconds": finished - started,
                "merges": gate.merger.counters.merges - merges_before,
                "zk_ops_per_change": packets / count,
                "reports": sum(s.stats.reports for s in gate.schedulers),
                "report_ms_p50": statistics.median(latencies) * 1000,
                "report_gerrit_ms_p50": statistics.median(g for _, g in timed) * 1000,
            }
        finally:
            gate.stop()

    @staticmethod
    def consumed(gate: GateHarness, scheduler: Scheduler) -> int:
        """The sequence number of the last Gerrit event the gate pipeline has passed (applied or known irrelevant)."""
        state = scheduler.states.get("gate")
        return max(state.cursors.get("gerrit", -1) if state else -1, scheduler._skipped.get(("gate", "gerrit"), -1))

    def check_consumed(self, gate: GateHarness, scheduler: Scheduler) -> None:
        """Every Gerrit event in ZooKeeper has been passed by the gate pipeline."""
        waiting = gate.zk.client.get_children(paths.event_queue("gerrit"))
        last = max((int(i.rsplit("-", 1)[1]) for i in waiting), default=-1)
        check(last <= self.consumed(gate, scheduler), f"event {last} was not consumed by the scheduler")

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
                check(len(gate.gate_queue()) == size, f"{len(gate.gate_queue())} of {size} changes queued")
                scheduler = gate.schedulers[0]
                cpu_before, consumed_before = scheduler_cpu(scheduler), self.consumed(gate, scheduler)
                for i in range(events):
                    gate.sim.review(changes[(i * 7) % size], "jane", message=f"Looks fine ({i}).")
                    gate.settle()  # one event at a time: the cost of one event, not of a batch
                    self.check_consumed(gate, scheduler)
                cpu[size] = (scheduler_cpu(scheduler) - cpu_before) / events * 1000
                check(self.consumed(gate, scheduler) - consumed_before >= events,
                      f"the scheduler consumed {self.consumed(gate, scheduler) - consumed_before} of {events} events")
                # Events that change an item (a vote): the queue loop runs and the item is written.
                cpu_before, consumed_before = scheduler_cpu(scheduler), self.consumed(gate, scheduler)
                for i in range(changing):
                    target = changes[(i // 2 * 7) % size]  # +1, then back to 0, on each change in turn
                    vote = 1 if i % 2 == 0 else 0
                    gate.sim.review(target, "jane", labels={"Code-Review": vote})
                    gate.settle()
                    self.check_consumed(gate, scheduler)
                    item = scheduler.states["gate"].find(f"{target.number},1")
                    seen = item is not None and item.change.has_approval("Code-Review", 1)
                    check(seen == bool(vote), f"the vote on {target.number},1 is not on its item")
                cpu[-size] = (scheduler_cpu(scheduler) - cpu_before) / changing * 1000
                check(self.consumed(gate, scheduler) - consumed_before >= changing,
                      "the scheduler did not consume every vote event")
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
    failed = ""
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
            report_ms_p50=round(passing["report_ms_p50"], 1),
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
    except CheckFailed as exc:
        failed = str(exc)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)
    if failed:
        print(f"benchmark invalid: {failed}", file=sys.stderr)
        return 1
    print(f"job duration D               {duration:.1f} s")
    print(f"50 passing changes merged in {figures['merge_50_s']:.1f} s  (target <= {1.3 * duration + 5:.1f} s)")
    print(f"... with the head failing    {figures['merge_50_head_fail_s']:.1f} s  "
          f"(target <= {2.3 * duration + 5:.1f} s)")
    print(f"scheduler CPU per event      {figures['event_cpu_ms_10']:.1f} ms with 10 queued, "
          f"{figures['event_cpu_ms_500']:.1f} ms with 500 queued (target ratio <= 1.5)")
    print(f"... events changing an item  {figures['event_cpu_ms_10_changing']:.1f} ms with 10 queued, "
          f"{figures['event_cpu_ms_500_changing']:.1f} ms with 500 queued (the loop runs, the item is saved)")
    print(f"merges for 100 items         {figures['merges_for_100_items']}  (target 100)")
    print(f"ZooKeeper requests / change  {figures['zk_ops_per_change']:.1f}  (target <= 35; services only)")
    print(f"report, decided to merged    {figures['report_ms_p50']:.1f} ms median  (target <= 40), of which "
          f"{passing['report_gerrit_ms_p50']:.1f} ms in Gerrit's `review --submit`")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
