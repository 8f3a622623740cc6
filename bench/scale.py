"""Scale-out: a three-member ZooKeeper ensemble and every service as several processes, each on its own host
(network namespace), gating changes while one ZooKeeper member and one process of each service are killed and
restarted. Shows that nothing is lost and nothing is reported twice, and what it costs.

    zk_members          ZooKeeper ensemble members (3)
    service_processes   service processes: 2 schedulers, 2 mergers, 2 launchers, 3 executors, web
    changes             changes approved into one shared gate queue (100; --quick 30)
    merged / lost       changes Gerrit shows merged / approved changes that never merged
    double_reports      start or success reports a change received more than once
    seconds             first approval to last merge
    zk_ops_per_change   ZooKeeper requests (zk_packets_received summed over the members) per change, every
                        service and ping included, from the first approval to the last merge (the killed
                        member's count before its kill is added to what it counted after its restart)

Faults, once a third of the changes have merged: SIGKILL the ZooKeeper leader and one scheduler, merger,
launcher and executor; restart them once the survivors have merged one more change (or after 20 s).

    python bench/scale.py [--quick]        (needs root: network namespaces)

A summary for people, then the figures as JSON on the last line. Exits non-zero, saying why, when a change was
lost or reported twice, or a service process did not survive.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.functional.scale_rig import Accounting, ScaleRig  # noqa: E402


def say(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)


def problems(all_merged: bool, account: Accounting, dead: list) -> list[str]:
    """What makes the figures meaningless: a change lost or reported twice, a service process that did not
    survive."""
    found = []
    if not all_merged or account.lost:
        found.append(f"changes not merged: {account.not_merged}")
    if account.double_reports:
        found.append(f"{account.double_reports} reports sent twice")
    if dead:
        found.append(f"service processes died: {dead}")
    return found


def run(count: int, workdir: Path) -> dict:
    t0 = time.monotonic()
    rig = ScaleRig(workdir).start()
    say(t0, f"up: {len(rig.zookeepers)} ZooKeeper members, {len(rig.services)} service processes")
    try:
        changes = rig.create_changes(count)
        before = [m.packets_received() for m in rig.zookeepers]
        started = time.monotonic()
        rig.approve(changes)
        third = max(1, count // 3)
        if not rig.wait_merged(changes, third, 300):
            raise SystemExit(f"scale: only {rig.merged_count(changes)} of {third} changes merged before the faults")
        say(t0, f"{rig.merged_count(changes)} merged; killing the ZooKeeper leader and one scheduler, merger, "
                "launcher and executor")
        leader = rig.leader_index()
        leader_at_kill = rig.zookeepers[leader].packets_received()
        rig.kill_zookeeper(leader)
        for kind in ("scheduler", "merger", "launcher", "executor"):
            rig.kill(kind, 0)
        at_kill = rig.merged_count(changes)
        rig.wait_merged(changes, at_kill + 1, 20)
        say(t0, f"{rig.merged_count(changes)} merged with the survivors; restarting what was killed")
        rig.restart_killed()
        ok = rig.wait_merged(changes, count, 60 + count * 4)
        seconds = time.monotonic() - started
        say(t0, f"{rig.merged_count(changes)} merged")
        account = rig.account(changes)
        after = [m.packets_received() for m in rig.zookeepers]
        # the killed member's counter starts again from zero: count what it saw before the kill and since
        packets = sum(a - b for i, (a, b) in enumerate(zip(after, before, strict=True)) if i != leader)
        packets += leader_at_kill - before[leader] + after[leader]
        dead = rig.dead_services()
        result = {
            "zk_members": len(rig.zookeepers),
            "service_processes": len(rig.services),
            "changes": account.changes,
            "merged": account.merged,
            "lost": account.lost,
            "double_reports": account.double_reports,
            "seconds": round(seconds, 1),
            "zk_ops_per_change": round(packets / count, 1),
        }
        return {"result": result, "problems": problems(ok, account, dead)}
    finally:
        rig.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 changes instead of 100")
    args = parser.parse_args()
    count = 30 if args.quick else 100
    with tempfile.TemporaryDirectory(prefix="gk-bench-scale-") as tmp:
        out = run(count, Path(tmp))
    r = out["result"]
    print(f"{r['changes']} changes through {r['service_processes']} service processes on {r['zk_members']}-member "
          f"ZooKeeper, with the leader and one process of each service killed and restarted: {r['merged']} merged, "
          f"{r['lost']} lost, {r['double_reports']} double reports, {r['seconds']} s, "
          f"{r['zk_ops_per_change']} ZooKeeper requests per change")
    for problem in out["problems"]:
        print(f"scale: FAILED: {problem}", file=sys.stderr)
    print(json.dumps(r))
    return 1 if out["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
