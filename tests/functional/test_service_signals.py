"""A service stops on the signal sent to it, whichever of its threads the kernel hands the signal to: Python runs
the handler in the main thread only, so a main thread blocked in a wait with no timeout never acted on a SIGTERM
that reached another thread (real process, real signal, sent to one chosen thread with tgkill)."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.child_process import start_tied
from gatekeeper.zk.server import free_port

REPO = Path(__file__).resolve().parents[2]
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL[platform.machine()], pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


@pytest.mark.skipif(platform.machine() not in SYS_TGKILL, reason="tgkill's syscall number is known here for "
                    "x86_64 and aarch64 only")
def test_a_stop_signal_delivered_to_a_thread_other_than_the_main_one_stops_the_service(tmp_path):
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "gerrit-sim", "--data-dir", str(tmp_path / "gerrit"),
                       "--port", str(free_port()), "--project", "demo"],
                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while "Gerrit simulator on" not in (line := proc.stdout.readline()):
            assert line, "the simulator did not start"
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert others, "the service runs threads besides its main one"
        tgkill(proc.pid, others[0], signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("service", ["web", "merger"])
def test_a_service_stops_on_sigterm_while_zookeeper_is_down(tmp_path, service):
    """Its registration cannot be removed then (the record is ephemeral and goes with the session): it stops
    anyway, where it waited for ZooKeeper for as long as ZooKeeper was away."""
    from gatekeeper.zk.server import LocalZooKeeper

    zk = LocalZooKeeper(data_dir=str(tmp_path / "zk"), force_sync=False).start()
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"zookeeper:\n  hosts: {zk.hosts}\nweb:\n  port: {free_port()}\n"
                      f"merger:\n  git-dir: {tmp_path / 'git'}\n")
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", service, "-c", str(config)], cwd=REPO,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = {"web": "serving on", "merger": "started with"}[service]
        while ready not in (line := proc.stdout.readline()):
            assert line, f"the {service} did not start"
        zk.stop()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) in (0, -signal.SIGTERM)  # stopped (by its handler, or by the signal itself)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        zk.stop()
