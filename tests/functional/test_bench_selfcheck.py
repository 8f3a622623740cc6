"""The Gerrit-events, diagnosis and faults benchmarks refuse figures from broken work: their `--self-check` modes
break the work on purpose (over the real SSH stream, ZooKeeper, sshd hosts and a scheduler process) and must see
every breakage refused, and an unbroken run accepted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def self_check(script: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), "--self-check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"bench/{script} --self-check printed nothing; stderr:\n{proc.stderr[-3000:]}"
    return proc, json.loads(lines[-1])


@pytest.mark.parametrize("script, sabotages, unbroken", [
    ("gerrit_events.py", ["drops-every-3rd-event", "writes-some-events-twice", "parser-loses-authors"],
     "the unbroken listener passes the checks"),
    ("diagnosis.py", ["classifier-returns-nothing", "executor-runs-nothing", "executor-reports-success",
                      "executor-loses-a-build"], "a build of each of the 8 causes passes the checks"),
    ("faults.py", ["reports-sent-twice"], "the unbroken scheduler passes the checks"),
])
def test_benchmark_refuses_each_broken_run_and_accepts_an_unbroken_one(script: str, sabotages: list[str],
                                                                      unbroken: str) -> None:
    proc, outcome = self_check(script)
    assert proc.returncode == 0 and outcome == {"self_check": "passed", "not_caught": []}, (
        f"bench/{script} --self-check: {outcome}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    assert f"self-check: {unbroken}" in proc.stdout
    for name in sabotages:
        # each refusal says why: a reason follows the sabotage's name
        caught = [line for line in proc.stdout.splitlines() if line.startswith(f"self-check: {name} caught: ")]
        assert caught and len(caught[0]) > len(f"self-check: {name} caught: ") + 10, proc.stdout
