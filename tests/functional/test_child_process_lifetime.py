"""No server outlives the run that started it: a local ZooKeeper and the cloud simulator's sshd hosts die with
the process that started them, even a SIGKILLed one, whichever thread started them; only `gatekeeper zookeeper
start` leaves a server running on purpose (real processes, real JVMs, real sshd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gatekeeper.sim.openstack.hosts import sweep_stale_netns
from gatekeeper.zk.server import four_letter_word, free_port, pid_alive
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]

# Starts a server (from the main thread or from a thread that ends at once; with setpriv or, as where util-linux
# lacks it, with prctl), says its pid and whether it still answers once that thread is gone, then waits for its
# stdin to close: it never stops the server itself. Its `ruok` may wait 10 s: a JVM on a loaded two-core machine
# has been seen to take more than the default 2 s to answer, though it was serving.
CHILD = textwrap.dedent("""
    import os, shutil, sys, threading, time
    from gatekeeper.zk.server import LocalZooKeeper, four_letter_word

    if sys.argv[3] == "prctl":
        which = shutil.which
        shutil.which = lambda name, *args, **kwargs: None if name == "setpriv" else which(name, *args, **kwargs)
    server = LocalZooKeeper(data_dir=sys.argv[1], force_sync=False)
    if sys.argv[2] == "thread":
        starter = threading.Thread(target=server.start)
        starter.start()
        starter.join()
        while os.path.exists(f"/proc/self/task/{starter.native_id}"):  # until the kernel has ended the thread
            time.sleep(0.01)
    else:
        server.start()
    print(server.process.pid, four_letter_word(server.host, server.port, "ruok", timeout=10), flush=True)
    sys.stdin.read()
""")


def _runs(pid: int, program: bytes) -> bool:
    """Alive (not a zombie) and still running `program` (not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z" and program in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _is_jvm(pid: int) -> bool:
    return _runs(pid, b"ZooKeeperServerMain")


@pytest.mark.parametrize("started_from", ["main", "thread"])
@pytest.mark.parametrize("armed_by", ["setpriv", "prctl"])
def test_a_local_zookeeper_dies_with_the_process_that_started_it(tmp_path, started_from, armed_by):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "zk"), started_from, armed_by], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jvm = None
    try:
        line = child.stdout.readline().split()
        assert len(line) == 2, f"the child did not start ZooKeeper: {child.stderr.read() if not line else line}"
        jvm, answer = int(line[0]), line[1]
        assert answer == "imok"  # started from a thread that has ended, and still serving
        assert _is_jvm(jvm)
        child.kill()
        child.wait(10)
        wait_for(lambda: not _is_jvm(jvm), timeout=10, what=f"the ZooKeeper JVM {jvm} to die with its parent")
    finally:
        child.kill()
        child.wait(10)
        if jvm is not None and _is_jvm(jvm):
            os.kill(jvm, signal.SIGKILL)


def test_zookeeper_start_leaves_a_server_running_after_the_command_exits(tmp_path):
    data, port = str(tmp_path / "zk"), free_port()

    def gatekeeper(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "zookeeper", *argv, "--data-dir", data],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    started = gatekeeper("start", "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        pid = int((tmp_path / "zk" / "zookeeper.pid").read_text())
        assert four_letter_word("127.0.0.1", port, "ruok", timeout=10) == "imok"
        assert _is_jvm(pid)
    finally:
        stopped = gatekeeper("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not pid_alive(pid) or not _is_jvm(pid)


# Boots one simulated server from the main thread or from a thread that ends at once (as the cloud API's request
# threads do), says the pids of its host (sshd, or unshare and the sshd it forked in the server's namespace), then
# waits as above.
HOST_CHILD = textwrap.dedent("""
    import os, sys, threading, time
    from gatekeeper.sim.openstack.hosts import HostSpec, LoopbackBackend, NetnsBackend, _descendants

    backend = (NetnsBackend if sys.argv[2] == "netns" else LoopbackBackend)(sys.argv[1])
    if sys.argv[3] == "thread":
        booter = threading.Thread(target=backend.boot, args=(HostSpec("s1", "h1"),))
        booter.start()
        booter.join()
        while os.path.exists(f"/proc/self/task/{booter.native_id}"):
            time.sleep(0.01)
    else:
        backend.boot(HostSpec("s1", "h1"))
    pid = backend.hosts["s1"].procs[0].pid  # sshd itself, or unshare with sshd as its child

    def parent(child):
        try:
            return open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[1]
        except OSError:  # gone since it was listed
            return None

    # not sshd's children for connections, which come and go (one can end between its listing and its reading)
    sshd = [c for c in _descendants(pid) if parent(c) == str(pid)]
    print(pid, *(sshd if sys.argv[2] == "netns" else []), flush=True)
    sys.stdin.read()
""")


@pytest.mark.parametrize("started_from", ["main", "thread"])
@pytest.mark.parametrize("backend", ["loopback", pytest.param("netns", marks=pytest.mark.netns)])
def test_a_simulated_server_dies_with_the_process_that_booted_it(tmp_path, backend, started_from):
    child = subprocess.Popen([sys.executable, "-c", HOST_CHILD, str(tmp_path / "hosts"), backend, started_from],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        line = child.stdout.readline()
        assert line, f"the child did not boot a host: {child.stderr.read()}"
        pids = [int(p) for p in line.split()]
        # the thread that booted it has ended, the host is up
        alive = {pid: _runs(pid, b"") and Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids}
        assert all(alive.values()) and any(b"sshd" in cmd for cmd in alive.values()), alive
        child.kill()
        child.wait(10)
        # a signal is immediate; a short wait also leaves little time for another run's sweep of stale namespaces
        # (which kills what a dead process left in them) to make a missing signal pass unnoticed
        wait_for(lambda: not any(_runs(pid, b"") for pid in pids), timeout=5,
                 what=f"the host's processes {pids} to die with the simulator")
    finally:
        child.kill()
        child.wait(10)
        for pid in pids:
            if _runs(pid, b"sshd") or _runs(pid, b"unshare"):
                os.kill(pid, signal.SIGKILL)
        if backend == "netns":
            sweep_stale_netns()  # the dead child's namespace and link
