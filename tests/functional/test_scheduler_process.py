"""`gatekeeper scheduler` as a real process: it runs the Gerrit event listener, tests an uploaded change in check
(with a merger and the test executor beside it), reloads its layout on SIGHUP and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import yaml

from gatekeeper.gitrepo import ssh_command
from gatekeeper.merger.service import MergerService
from gatekeeper.sim.executor import TestExecutor
from gatekeeper.sim.gerrit import GerritSimulator
from tests.functional.gate_harness import LAYOUT, PROJECTS, wait_for


def test_scheduler_process_listens_reports_reloads_and_stops(tmp_path, zk_server, zk_chroot, zk_factory):
    sim = GerritSimulator(str(tmp_path / "gerrit")).start()
    proc = merger = executor = None
    try:
        ci = sim.add_account("ci", key_dir=str(tmp_path / "keys"))
        sim.add_account("jane")
        for project in PROJECTS:
            sim.create_project(project)
        layout = tmp_path / "layout.yaml"
        layout.write_text(LAYOUT)
        config = tmp_path / "gatekeeper.yaml"
        config.write_text(yaml.safe_dump({
            "zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot},
            "gerrit": {"host": "127.0.0.1", "port": sim.port, "user": "ci", "key": ci.key_file},
            "layout": str(layout),
        }))
        merger = MergerService(zk_factory(), str(tmp_path / "merger"),
                               ssh=ssh_command(ci.key_file, str(tmp_path / "known_hosts"))).start()
        executor = TestExecutor(zk_factory()).start()
        proc = subprocess.Popen([sys.executable, "-m", "gatekeeper.cli", "scheduler", "-c", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: sim.listener_count() >= 1, 30, "the scheduler's Gerrit listener to connect")
        change = sim.create_change("org/a", "Checked by a real scheduler process", owner="jane")
        wait_for(lambda: sim.votes(change).get("ci", {}).get("Verified") == 1, 60, "check's Verified +1")

        # SIGHUP reloads the layout: a bad one is refused and the running one kept
        layout.write_text(LAYOUT.replace("manager: independent", "manager: serial-ish", 1))
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        second = sim.create_change("org/a", "Still checked after a bad reload", owner="jane")
        wait_for(lambda: sim.votes(second).get("ci", {}).get("Verified") == 1, 60, "the kept layout to work")

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-3000:]
        assert 'unknown manager (expected independent or dependent)' in out
        wait_for(lambda: sim.listener_count() == 0, 20, "the listener to disconnect")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        for part in (executor, merger):
            if part:
                part.stop()
        sim.stop()
