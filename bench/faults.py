"""Faults the gate must survive, with the scheduler as its own OS process (`gatekeeper scheduler`), its own
ZooKeeper server (a JVM), and the Gerrit simulator, the merger and the test executor in this process.

    poison                every kind of poison event on the Gerrit stream, each followed by a valid approval, and one
                          change whose Gerrit query keeps failing (a dead letter, replayed once Gerrit is mended)
    stream blackhole      the scheduler's Gerrit connections go silent (packets dropped, nothing closed) while a
                          change is approved: how long until the dead stream is noticed, and until that change merges
    ZooKeeper outage      ZooKeeper stopped for a while during a gate and started again
    scheduler SIGKILL     the scheduler killed mid-gate and a new one started

    changes, merged, lost     approved valid changes; how many merged; how many neither merged nor were reported
    double_reports            changes with a gate start or success message more than once
    false_reports             changes told something untrue (a merged change told it failed or could not merge)
    poison_kinds/_survived    kinds of poison injected; kinds after which the next valid change still merged
    stream_dead_detect_s      from the blackhole to the new stream
    max_recovery_s            the longest time from the end of a fault until the gate moved again (a change merged)

    python bench/faults.py [--quick]

A summary for people, then the figures as JSON on the last line. It exits non-zero, saying why, when a change was
lost, reported twice or told something untrue, or a poison event stopped the gate (`--self-check` shows it: a
scheduler that sends every report twice is refused).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.selfcheck import finish  # noqa: E402
from gatekeeper.child_process import start_tied
from gatekeeper.gitrepo import ssh_command  # noqa: E402
from gatekeeper.merger.service import MergerService  # noqa: E402
from gatekeeper.sim.gerrit import Change, GerritSimulator  # noqa: E402
from gatekeeper.zk.client import ZKClient  # noqa: E402
from gatekeeper.zk.server import LocalZooKeeper  # noqa: E402
from tests.executor import TestExecutor  # noqa: E402
from tests.functional.blackhole import BlackholeProxy  # noqa: E402
from tests.functional.gate_harness import LAYOUT, PROJECTS  # noqa: E402
from tests.functional.poison import poison_lines  # noqa: E402

log = logging.getLogger("gatekeeper.bench.faults")


def wait(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Wait for `predicate`; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# --self-check starts the scheduler with its Gerrit reports sent twice: the benchmark must refuse that run.
BROKEN_REVIEW = """
from gatekeeper.gerrit.connection import GerritConnection
_review = GerritConnection.review
def review_twice(self, change, patchset, message=None, *args, **kwargs):
    _review(self, change, patchset, message, *args, **kwargs)
    if message:
        _review(self, change, patchset, message)
GerritConnection.review = review_twice
import sys
from gatekeeper.cmd import main
sys.exit(main(sys.argv[1:]))
"""


class Rig:
    def __init__(self, root: Path, broken: bool = False) -> None:
        self.root = root
        self.broken = broken
        self.procs: list[subprocess.Popen] = []
        self.clients: list[ZKClient] = []
        self.zk = LocalZooKeeper(data_dir=str(root / "zk"))
        self.zk.start()
        self.sim = GerritSimulator(str(root / "gerrit")).start()
        ci = self.sim.add_account("ci", key_dir=str(root / "keys"))
        for name in ("jane", "rita"):
            self.sim.add_account(name)
        for project in PROJECTS:
            self.sim.create_project(project)
        self.proxy = BlackholeProxy(self.sim.port).start()  # the scheduler reaches Gerrit through it
        layout = root / "layout.yaml"
        layout.write_text(LAYOUT)
        self.config = root / "gatekeeper.yaml"
        self.config.write_text(yaml.safe_dump({
            "zookeeper": {"hosts": self.zk.hosts, "chroot": "/gatekeeper", "timeout": 4},
            # Git fetches go straight to Gerrit: the faults here are about events, queries and reports.
            "gerrit": {"host": "127.0.0.1", "port": self.proxy.port, "user": "ci", "key": ci.key_file,
                       "timeout": 5, "git-url": f"ssh://ci@127.0.0.1:{self.sim.port}"},
            "layout": str(layout),
        }))
        self.merger = MergerService(self._zk(), str(root / "merger"),
                                    ssh=ssh_command(ci.key_file, str(root / "known_hosts"))).start()
        self.executor = TestExecutor(self._zk()).start()
        self.changes: list[Change] = []  # every valid approved change
        self.recoveries: dict[str, float] = {}
        self.false: list[str] = []  # the false reports, for the summary
        self.doubles: list[str] = []
        self.phase = "start"
        self.phase_of: dict[int, str] = {}  # change number -> the scenario it was approved in

    def _zk(self) -> ZKClient:
        client = ZKClient(self.zk.hosts, chroot="/gatekeeper", timeout=10.0).start()
        self.clients.append(client)
        return client

    def scheduler(self) -> subprocess.Popen:
        out = open(self.root / f"scheduler-{len(self.procs)}.log", "w")
        command = ["-c", BROKEN_REVIEW] if self.broken else ["-m", "gatekeeper.cmd"]
        proc = start_tied([sys.executable, *command, "scheduler", "-c", str(self.config)],
                          stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.procs.append(proc)
        return proc

    def start_and_gate_one(self, what: str) -> Change:
        """Start a scheduler, and approve a change once it listens; returns the change once it merged."""
        self.scheduler()
        wait(lambda: self.sim.listener_count() >= 1, 60, "the scheduler's Gerrit listener")
        change = self.approve_new()
        wait(lambda: self.merged(change), 60, what)
        return change

    def approve_new(self, project: str = "org/a") -> Change:
        change = self.sim.create_change(project, f"Change {len(self.sim.changes) + 1}", owner="jane")
        self.sim.approve(change, "rita")
        self.changes.append(change)
        self.phase_of[change.number] = self.phase
        return change

    def merged(self, *changes: Change) -> bool:
        return all(self.sim.change(c).status == "MERGED" for c in changes)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for part in (self.executor, self.merger):
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s", part)
        for client in self.clients:
            try:
                client.stop()
            except Exception:
                pass
        self.proxy.stop()
        self.sim.stop()
        self.zk.cleanup()

    # -- scenarios ----------------------------------------------------------------------------------------------
    def poison(self) -> tuple[int, int]:
        kinds = poison_lines()
        survived = 0
        for raw in kinds.values():
            self.sim.faults.inject_raw(raw)
            change = self.approve_new()
            try:
                wait(lambda c=change: self.merged(c), 30, "a valid change after poison")
                survived += self.procs[-1].poll() is None
            except RuntimeError as exc:
                print(f"poison: {exc}")
        # A change whose query keeps failing: held up alone, a dead letter, replayed once Gerrit is mended.
        stuck = self.sim.create_change("org/b", "Stuck", owner="jane")
        wait(lambda: self.sim.votes(stuck).get("ci", {}).get("Verified") == 1, 60, "check to test it")
        self.sim.faults.fail_matching("query", f"change:{stuck.number}")
        self.sim.approve(stuck, "rita")
        self.changes.append(stuck)
        self.phase_of[stuck.number] = "poison (query failing)"
        after = self.approve_new()
        moved = False
        try:
            wait(lambda: self.merged(after), 60, "a change approved after the stuck one")
            wait(lambda: self._dead_letters(), 60, "the stuck change's event to become a dead letter")
            moved = True
        except RuntimeError as exc:
            print(f"poison: {exc}")
        self.sim.faults.clear()
        fault_end = time.monotonic()
        subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "events", "replay", "--all", "-c",
                        str(self.config)], check=False, capture_output=True)
        try:
            self.recoveries["replayed dead letter"] = wait(lambda: self.merged(stuck), 60, "the replay") - fault_end
        except RuntimeError as exc:
            print(f"poison: {exc}")
        return len(kinds) + 1, survived + moved

    def _dead_letters(self) -> int:
        out = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "events", "list", "--json", "-c",
                              str(self.config)], capture_output=True, text=True, check=False).stdout
        try:
            return len(json.loads(out)["dead_letters"])
        except (ValueError, KeyError):
            return 0

    def stream_blackhole(self) -> float:
        before = self.sim.listener_count()
        self.proxy.blackhole()
        started = time.monotonic()
        change = self.approve_new()
        detected = wait(lambda: self.sim.listener_count() > before, 60, "a new stream after the blackhole")
        merged = wait(lambda: self.merged(change), 90, "the change approved during the blackhole")
        self.recoveries["stream blackhole"] = merged - detected
        return detected - started

    def zookeeper_outage(self, seconds: float) -> None:
        change = self.approve_new()
        self.zk.stop()
        during = self.approve_new("org/b")  # Gerrit moves on while ZooKeeper is away
        time.sleep(seconds)  # the length of the outage (the fault itself), not a wait for a condition
        self.zk.start()
        back = time.monotonic()
        merged = wait(lambda: self.merged(change, during), 90, "the changes approved around the outage")
        self.recoveries["ZooKeeper outage"] = merged - back

    def scheduler_kill(self) -> None:
        self.executor.hold = True
        changes = [self.approve_new(), self.approve_new("org/b")]
        wait(lambda: len([r for r in self.executor.held() if r.pipeline == "gate"]) >= 2, 60, "gate builds")
        self.procs[-1].kill()
        self.procs[-1].wait(10)
        self.executor.hold = False
        self.executor.release()
        self.scheduler()
        back = time.monotonic()
        merged = wait(lambda: self.merged(*changes), 90, "the changes gating when the scheduler was killed")
        self.recoveries["scheduler SIGKILL"] = merged - back

    # -- counting -----------------------------------------------------------------------------------------------
    def tally(self) -> dict[str, int]:
        merged = lost = double = false = 0
        for change in self.changes:
            messages = self.sim.messages(change)
            status = self.sim.change(change).status
            failed = [m for m in messages if "Build failed" in m or "could not be merged" in m]
            merged += status == "MERGED"
            lost += status != "MERGED" and not failed
            starts = sum("Starting gate jobs." in m for m in messages)
            successes = sum("Build succeeded (gate pipeline)." in m for m in messages)
            if starts > 1 or successes > 1:
                double += 1
                self.doubles.append(f"{change.number} ({self.phase_of.get(change.number, '?')}): {starts} start, "
                                    f"{successes} success messages")
            if status == "MERGED" and failed:
                false += 1
                self.false.append(f"{change.number} ({self.phase_of.get(change.number, '?')}): "
                                  f"{failed[0].splitlines()[-1][:120]}")
        return {"changes": len(self.changes), "merged": merged, "lost": lost, "double_reports": double,
                "false_reports": false}


def problems(figures: dict) -> list[str]:
    """What makes the figures meaningless: the gate's work was not done right."""
    found = []
    for key, what in (("lost", "changes lost"), ("double_reports", "changes reported twice"),
                      ("false_reports", "changes told something untrue")):
        if figures.get(key):
            found.append(f"{figures[key]} {what}")
    if "poison_kinds" in figures and figures["poison_survived"] < figures["poison_kinds"]:
        found.append(f"the gate stopped after {figures['poison_kinds'] - figures['poison_survived']} poison kinds")
    return found


def self_check() -> int:
    """One change through the scheduler as it is, then one through a scheduler that sends every report twice: the
    benchmark must accept the first and refuse the second. The last line is JSON, as for the other benchmarks."""
    root = Path(tempfile.mkdtemp(prefix="gk-bench-faults-check-"))
    rig = Rig(root)
    not_caught = []
    try:
        rig.start_and_gate_one("the change to merge")
        found = problems(rig.tally())
        if found:
            print(f"self-check FAILED: the unbroken scheduler was refused: {'; '.join(found)}", file=sys.stderr)
            not_caught.append("unbroken-run-refused")
        else:
            print("self-check: the unbroken scheduler passes the checks")
        rig.procs[-1].kill()
        rig.procs[-1].wait(10)
        rig.broken = True
        change = rig.start_and_gate_one("the second change to merge")
        # the doubled success report follows the merge
        wait(lambda: sum("Build succeeded" in m for m in rig.sim.messages(change)) >= 2, 30, "the second report")
        found = problems(rig.tally())
        if any("reported twice" in p for p in found):
            print(f"self-check: reports-sent-twice caught: {'; '.join(found)}")
        else:
            not_caught.append("reports-sent-twice")
    finally:
        rig.stop()
        shutil.rmtree(root, ignore_errors=True)
    return finish("faults.py", not_caught)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter outages (within 120 s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (service logs) and say where")
    parser.add_argument("--self-check", action="store_true",
                        help="send every report twice on purpose and show that the benchmark refuses it")
    args = parser.parse_args(argv)
    if args.self_check:
        return self_check()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    outage = 4.0 if args.quick else 20.0
    root = Path(tempfile.mkdtemp(prefix="gk-bench-faults-"))
    rig = Rig(root)
    figures: dict[str, float] = {}
    phases = []
    try:
        rig.start_and_gate_one("the first change to merge")

        def timed(name: str, func: Callable, *a: object) -> object:
            t0 = time.monotonic()
            rig.phase = name
            out = func(*a)
            phases.append(f"{name} {time.monotonic() - t0:.1f}s")
            return out

        kinds, survived = timed("poison", rig.poison)
        detect = timed("blackhole", rig.stream_blackhole)
        timed("zookeeper", rig.zookeeper_outage, outage)
        timed("sigkill", rig.scheduler_kill)
        figures.update(rig.tally())
        figures.update(poison_kinds=kinds, poison_survived=survived, stream_dead_detect_s=round(detect, 2),
                       max_recovery_s=round(max(rig.recoveries.values()), 2))
    except Exception:
        for logfile in sorted(root.glob("scheduler-*.log")):
            print(f"--- {logfile.name} (last lines)", file=sys.stderr)
            print("\n".join(logfile.read_text(errors="replace").splitlines()[-150:]), file=sys.stderr)
        raise
    finally:
        rig.stop()
        if args.keep:
            print(f"logs and state kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("phases: " + ", ".join(phases))
    for name, seconds in rig.recoveries.items():
        print(f"recovery after {name:22s} {seconds:.1f} s")
    print(f"changes {figures['changes']}, merged {figures['merged']}, lost {figures['lost']} (target 0)")
    print(f"double reports {figures['double_reports']}, false reports {figures['false_reports']} (targets 0)")
    for text in rig.false:
        print(f"false report on merged change {text}")
    for text in rig.doubles:
        print(f"double report on change {text}")
    print(f"poison kinds survived        {figures['poison_survived']} of {figures['poison_kinds']} (target all, >= 10)")
    print(f"dead stream noticed after    {figures['stream_dead_detect_s']:.1f} s (target <= 15)")
    print(f"longest recovery             {figures['max_recovery_s']:.1f} s (target <= 10)")
    print(json.dumps(figures))
    wrong = problems(figures)
    if wrong:
        print(f"bench/faults.py: the gate's work was not done right: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
