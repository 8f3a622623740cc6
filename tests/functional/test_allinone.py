"""The README's main command: `gatekeeper all-in-one` brings the demo gate up on embedded stand-ins, gates the
demo series for real (good changes merge, the broken one is rejected with logs, the conflict is reported as a
conflict) and leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

from gatekeeper.child_process import start_tied
from gatekeeper.zk.server import free_port


def leftovers(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def stop(proc: subprocess.Popen, workdir) -> None:
    """On a failed test too: stop the all-in-one as Ctrl-C would, then end whatever of it is left (its ZooKeeper
    and sshd hosts run in sessions of their own, so killing the parent alone would orphan them)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for line in leftovers(str(workdir)):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def stacks(proc: subprocess.Popen) -> str:
    """For a failing test: the output of a stuck all-in-one, ending with every thread's stack (SIGUSR2)."""
    proc.send_signal(signal.SIGUSR2)
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired as still:  # the output read so far, since communicate began
        out = still.output or ""
    out = out.decode(errors="replace") if isinstance(out, bytes) else out
    return out[-12000:]


def test_all_in_one_demo_gates_the_series_and_cleans_up(tmp_path):
    workdir = tmp_path / "aio"
    port = free_port()
    proc = start_tied(
        [sys.executable, "-m", "gatekeeper.cmd", "all-in-one", "--workdir", str(workdir), "--web-port", str(port),
         "--timeout", "400"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        stop(proc, workdir)
    assert proc.returncode == 0, out[-4000:] + err[-4000:]
    summary = out[out.index("== result of the demo gate"):]
    assert "openstack/nova                 merged" in summary
    assert "rejected: merge conflict           (expected: conflicts)" in summary
    broken = next(line for line in summary.splitlines() if "(expected: breaks devstack)" in line)
    assert "devstack FAILURE" in broken
    log_url = next(line.split("logs: ", 1)[1] for line in summary.splitlines() if "/devstack/" in line)
    assert log_url.startswith(f"http://127.0.0.1:{port}/logs/")
    # the archive is on disk where the log URL says (the web server is gone with the run)
    archived = workdir / "logs" / log_url.split("/logs/", 1)[1]
    names = {p.name for p in archived.iterdir()}
    assert {"console.txt", "syslog.txt", "index.html"} <= names and any(n.startswith("screen-") for n in names)
    assert "every change ended as expected" in out
    # build history: every gate build of the series was recorded, with its logs and node provider
    from gatekeeper.history.db import HistoryDB

    history = HistoryDB(f"sqlite:///{workdir / 'history.sqlite'}")
    try:
        failed = history.builds(pipeline="gate", job="devstack", result="FAILURE")
        assert [b.change for b in failed] == [3] and failed[0].log_url == log_url
        assert failed[0].node_provider in ("cloud-a", "cloud-b")
        gate_sets = {(s.change, s.result) for s in history.buildsets(pipeline="gate")}
        assert {(1, "SUCCESS"), (2, "SUCCESS"), (3, "FAILURE"), (4, "MERGE_CONFLICT")} <= gate_sets
    finally:
        history.close()
    assert out.rstrip().endswith("all stopped; nothing left running")
    assert leftovers(str(workdir)) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert f"gk{proc.pid:06x}" not in namespaces  # the cloud simulator's hosts are gone with it
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        raise AssertionError("the status page still answers after the run ended")
    except OSError:
        pass


def test_ctrl_c_stops_everything(tmp_path):
    import time

    workdir = tmp_path / "aio"
    proc = start_tied(
        [sys.executable, "-m", "gatekeeper.cmd", "all-in-one", "--workdir", str(workdir), "--web-port",
         str(free_port()), "--no-demo"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "serving; Ctrl-C stops everything" in line or not line:
                break
        assert "serving; Ctrl-C stops everything" in lines[-1], "".join(lines)
        assert leftovers(str(workdir)), "the embedded stand-ins should be running now"
        proc.send_signal(signal.SIGUSR2)  # as Zuul's services: every thread's stack, and it carries on
        dumped: list[str] = []
        current = False  # (other threads may be in allinone.py too: read on to the current thread's frame there)
        while not dumped or dumped[-1] and not (current and "gatekeeper/cmd/allinone.py" in dumped[-1]):
            dumped.append(proc.stdout.readline())
            current = current or dumped[-1].startswith("Current thread")
        assert current, "".join(dumped)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the all-in-one did not stop within 120 s of Ctrl-C:\n{stacks(proc)}") from None
    finally:
        stop(proc, workdir)
    assert proc.returncode == 130
    assert rest.rstrip().endswith("all stopped; nothing left running")
    assert leftovers(str(workdir)) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert f"gk{proc.pid:06x}" not in namespaces
