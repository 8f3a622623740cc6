"""The executor against real sshd hosts (the cloud simulator's loopback hosts), real git and real HTTP.

A build here is a BuildRequest run by BuildRunner with nodes from FixedNodes; the ZooKeeper service around it is
tested in test_executor_service.py.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gatekeeper import gitrepo
from gatekeeper.executor import logs
from gatekeeper.executor.build import BuildRunner, ExecutorSettings
from gatekeeper.executor.console import Console, ConsoleRegistry, ConsoleServer
from gatekeeper.executor.masking import MASK
from gatekeeper.executor.nodes import FixedNodes
from gatekeeper.executor.remote import HostKeyMismatch, NodeLost, RemoteHost
from gatekeeper.executor.transfer import push_rsync, push_tar
from gatekeeper.executor.workspace import GitCache
from gatekeeper.launcher.model import Node
from gatekeeper.sim.devstack import BROKEN_NOVA_COMPUTE, seed_devstack, seed_files, seed_nova
from gatekeeper.sim.openstack.hosts import HostBackend, HostSpec, default_backend
from gatekeeper.zk.builds import ABORTED, FAILURE, NODE_FAILURE, SUCCESS, TIMED_OUT, BuildRequest
from gatekeeper.zk.merges import MergeStep, RepoState
from tests.helpers import wait_for

LOCALRC = {
    "ADMIN_PASSWORD": "s3cr3t-admin-pw",
    "SERVICE_PASSWORD": "s3cr3t-service-pw",
    "ENABLED_SERVICES": "key,g-api,n-api,n-cpu",
    "SCREEN_LOGDIR": "logs",
    "LOGFILE": "logs/stack.sh.log",
}
COLLECT = ["logs/screen-*.log", "logs/stack.sh.log", "/var/log/syslog"]


# -- hosts ------------------------------------------------------------------------------------------------------
@dataclass
class Hosts:
    backend: HostBackend
    key: str
    pubkey: str
    count: int = 0

    def boot(self, label: str = "ubuntu-jammy") -> Node:
        self.count += 1
        server_id = f"srv{self.count}"
        address = self.backend.boot(HostSpec(server_id, f"node-{self.count}", authorized_keys=self.pubkey))
        host = self.backend.hosts[server_id]
        with open(os.path.join(host.workdir, "ssh_host_ed25519_key.pub")) as f:
            host_key = f.read().strip()
        return Node(id=f"{self.count:010d}", provider="loopback", label=label, address=address, port=host.port,
                    username=os.environ.get("USER") or "root", private_key=self.key,
                    host_keys=[" ".join(host_key.split()[:2])], external_id=server_id)

    def home(self, node: Node) -> str:
        return self.backend.hosts[node.external_id].home

    def destroy(self, node: Node) -> None:
        self.backend.destroy(node.external_id)


@pytest.fixture
def hosts(tmp_path) -> Iterator[Hosts]:
    key = str(tmp_path / "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as f:
        pub = f.read()
    # netns hosts when root: their home is the host's own directory, so a login runs none of the machine's shell
    # startup files (a loopback host's login would, and some of those block for a long time)
    backend = default_backend(str(tmp_path / "hosts"))
    try:
        yield Hosts(backend, key, pub)
    finally:
        backend.close()


# -- projects ---------------------------------------------------------------------------------------------------
@dataclass
class Projects:
    root: str

    def path(self, project: str) -> str:
        return os.path.join(self.root, project + ".git")

    def tip(self, project: str) -> str:
        return gitrepo.GitRepo(self.path(project)).rev_parse("refs/heads/master") or ""

    def change(self, project: str, files: dict[str, tuple[str, bool]], subject: str, number: int) -> MergeStep:
        """A change on top of master, kept at refs/changes/..; returns the merge step that includes it."""
        base = self.tip(project)
        repo = gitrepo.GitRepo(self.path(project))
        sha = seed_files(self.path(project), files, subject, branch=f"change-{number}", parent=base)
        ref = gitrepo.change_ref(number, 1)
        repo.git("update-ref", ref, sha)
        repo.git("update-ref", "-d", f"refs/heads/change-{number}")
        result = repo.merge(base, sha, "merge-resolve", "master", ref).commit
        return MergeStep(project=project, branch="master", base=base, change_ref=ref, change_commit=sha,
                         mode="merge-resolve", result=result)

    def state(self, *steps: MergeStep) -> RepoState:
        branches = {p: {"master": self.tip(p)} for p in ("openstack-dev/devstack", "openstack/nova")}
        for s in steps:
            branches[s.project] = {"master": s.result}
        return RepoState(branches=branches, steps=[s.to_dict() for s in steps])


@pytest.fixture
def projects(tmp_path) -> Projects:
    root = str(tmp_path / "gerrit")
    p = Projects(root)
    seed_devstack(p.path("openstack-dev/devstack"))
    seed_nova(p.path("openstack/nova"))
    return p


def request_for(state: RepoState, run: list[str] | None = None, timeout: int = 120, number: int = 1,
                project: str = "openstack/nova", **params) -> BuildRequest:
    return BuildRequest(
        pipeline="gate", job="devstack", label="ubuntu-jammy", changes=f"{number},1",
        change={"project": project, "branch": "master", "number": number, "patchset": 1},
        repo_state=state.to_dict(),
        params={"run": run if run is not None else ["./stack.sh", "./exercise.sh"], "timeout": timeout,
                "collect": COLLECT, "devstack": {"localrc": LOCALRC, "local_conf": ""},
                "vars": {"DEVSTACK_GATE_TEMPEST": 0}, **params},
    )


@dataclass
class Rig:
    runner: BuildRunner
    nodes: FixedNodes
    store: logs.LogStore
    consoles: ConsoleRegistry


@pytest.fixture
def rig(tmp_path, hosts, projects) -> Rig:
    def make(nodes: list[Node], **settings) -> Rig:
        store = logs.LogStore(str(tmp_path / "logstore"), "http://logs.example.com")
        consoles = ConsoleRegistry()
        source = FixedNodes(nodes)
        cache = GitCache(str(tmp_path / "cache"), projects.path)
        runner = BuildRunner(ExecutorSettings(work_dir=str(tmp_path / "builds"), **settings), cache, source, store,
                             consoles, "executor-test")
        return Rig(runner, source, store, consoles)

    return make


def archived(r: Rig, result) -> str:
    return r.store.local_path(result.log_url.removeprefix(r.store.url + "/").rstrip("/"))


def process_gone(node: Node, pid: str, wait: float = 10.0) -> bool:
    """Whether process `pid` on the node is gone (or a zombie nobody reaped yet), polling up to `wait` seconds."""
    deadline = time.monotonic() + wait
    with RemoteHost(node).connect() as remote:
        while time.monotonic() < deadline:
            status, out = remote.execute(f"cat /proc/{int(pid)}/stat")
            if status != 0 or out.decode().rsplit(")", 1)[1].split()[0] == "Z":
                return True
            time.sleep(0.1)
    return False


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# -- the SSH runner ---------------------------------------------------------------------------------------------
def test_host_key_not_pinned_is_refused_before_anything_runs(hosts):
    node = hosts.boot()
    other = hosts.boot()
    node.host_keys = other.host_keys  # the pinned key belongs to another host
    with pytest.raises(HostKeyMismatch):
        RemoteHost(node).connect()
    # and rsync, with the same pinned known_hosts, refuses too
    with pytest.raises(NodeLost):
        push_rsync(node, os.path.dirname(hosts.key), "copied")
    assert not os.path.exists(os.path.join(hosts.home(node), "copied"))


def test_pinned_host_key_that_cannot_be_read_is_refused_with_a_sentence_by_executor_and_launcher(hosts):
    from gatekeeper.launcher.client import connect_ssh
    from gatekeeper.zk.node_host_keys import UnusableHostKey

    node = hosts.boot()
    good = list(node.host_keys)
    for bad, says in (["fake-key"], 'is not "TYPE BASE64"'), (["ssh-foo AAAA"], "unknown type 'ssh-foo'"), \
            ([good[0].split()[0] + " AAAAC3Nz"], "not a valid key"):
        node.host_keys = bad
        with pytest.raises(HostKeyMismatch, match=says):
            RemoteHost(node).connect()
        with pytest.raises(UnusableHostKey, match=says):
            connect_ssh(node)
    node.host_keys = good  # one function reads the pinned keys for both: the right key logs in through each
    with connect_ssh(node) as ssh:
        assert ssh.exec_command("echo ok")[1].read().strip() == b"ok"
    RemoteHost(node).connect().close()


def test_unreachable_node_raises_node_lost(hosts):
    node = hosts.boot()
    hosts.destroy(node)
    with pytest.raises(NodeLost):
        RemoteHost(node, connect_timeout=5).connect()


def test_timeout_and_abort_kill_the_whole_process_group_on_the_node(hosts):
    node = hosts.boot()
    home = hosts.home(node)
    with RemoteHost(node).connect() as remote:
        step = "sleep 300 & echo $! > child.pid; echo started; wait"
        lines: list[str] = []
        outcome = remote.run_step(step, home, {}, lines.append, timeout=2)
        assert outcome.timed_out and lines == ["started"]
        assert process_gone(node, read(os.path.join(home, "child.pid"))), "a child survived the timeout"

        abort = threading.Event()
        threading.Thread(target=lambda: (time.sleep(1), abort.set()), daemon=True).start()
        outcome = remote.run_step(step, home, {}, lines.append, abort=abort)
        assert outcome.aborted
        assert process_gone(node, read(os.path.join(home, "child.pid"))), "a child survived the abort"


def test_step_environment_and_exit_status_arrive_quoted(hosts):
    node = hosts.boot()
    with RemoteHost(node).connect() as remote:
        lines: list[str] = []
        env = {"TRICKY": "$(touch pwned) `touch pwned2` 'q' \"dq\"\nline2"}
        outcome = remote.run_step('printf "%s\\n" "$TRICKY"; exit 3', hosts.home(node), env, lines.append)
        assert outcome.status == 3
        assert lines == ["$(touch pwned) `touch pwned2` 'q' \"dq\"", "line2"]
        assert not any(n.startswith("pwned") for n in os.listdir(hosts.home(node)))


def test_the_connection_to_a_node_uses_aes_gcm_and_offers_the_other_ciphers_after_it(hosts):
    """Copy-back rides this connection: AES-GCM is chosen (no separate per-packet MAC); the ciphers paramiko
    offers besides stay offered after it, for a server without GCM."""
    node = hosts.boot()
    with RemoteHost(node).connect() as remote:
        transport = remote.client.get_transport()
        assert (transport.local_cipher, transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
        offered = transport.get_security_options().ciphers
        assert offered[0] == "aes128-gcm@openssh.com" and "aes128-ctr" in offered
        assert remote.execute("echo ok")[1].strip() == b"ok"


def test_workspace_copies_by_tar_and_rsync_are_identical(hosts, tmp_path):
    node = hosts.boot()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "$(touch pwned) it's.txt").write_text("odd name\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o755)
    with RemoteHost(node).connect() as remote:
        push_tar(remote, str(src), "by-tar")
    push_rsync(node, str(src), "by-rsync")
    home = hosts.home(node)
    for copy in ("by-tar", "by-rsync"):
        assert read(os.path.join(home, copy, "sub", "$(touch pwned) it's.txt")) == "odd name\n"
        assert os.access(os.path.join(home, copy, "run.sh"), os.X_OK)
    assert "pwned" not in os.listdir(home)


# -- whole builds -----------------------------------------------------------------------------------------------
def test_devstack_build_passes_with_console_header_logs_and_masked_secrets(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    step = projects.change("openstack/nova", {"nova/extra.py": ("X = 1\n", False)}, "Add an extra module", 1)
    result = r.runner.run(request_for(projects.state(step)))
    assert result.result == SUCCESS, result.message
    assert r.nodes.released == [(node.id, False, "")]  # used: the launcher deletes it
    assert result.log_url.startswith("http://logs.example.com/01/1/1/gate/devstack/")
    logdir = archived(r, result)
    names = set(os.listdir(logdir))
    assert {"console.txt", "syslog.txt", "index.html", "stack.sh.txt"} <= names
    assert {"screen-key.txt", "screen-g-api.txt", "screen-n-api.txt", "screen-n-cpu.txt"} <= names
    console = [line.split(" | ", 1)[1] for line in read(os.path.join(logdir, "console.txt")).splitlines()]
    # the console starts with every repo (branch, short sha, subject), then the node and the build
    devstack_sha = projects.tip("openstack-dev/devstack")[:10]
    assert console[0] == f"openstack-dev/devstack master {devstack_sha} Add the devstack stand-in"
    assert console[1].startswith(f"openstack/nova master {step.result[:10]} ")
    assert console[2] == "NODE_PROVIDER=loopback"
    assert console[3:6] == ["NODE_LABEL=ubuntu-jammy", f"NODE_ID={node.id}", f"NODE_ADDRESS={node.address}:{node.port}"]
    assert "exercise compute: PASS" in console
    text = "\n".join(read(os.path.join(logdir, n)) for n in names if not n.endswith(".gz"))
    assert "s3cr3t" not in text
    assert f"keystone admin password is {MASK}" in "\n".join(console)
    assert "starting n-api" in read(os.path.join(logdir, "syslog.txt"))
    assert "heartbeat" in read(os.path.join(logdir, "screen-n-api.txt"))
    assert 'href="screen-n-api.txt"' in read(os.path.join(logdir, "index.html"))


def test_broken_nova_fails_with_logs_archived_and_node_held(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node], max_held=5)
    step = projects.change("openstack/nova", {"nova/compute.py": (BROKEN_NOVA_COMPUTE, False)}, "Break boot", 2)
    request = request_for(projects.state(step), number=2)
    result = r.runner.run(request)
    assert result.result == FAILURE
    assert result.message == "./exercise.sh exited 1"
    assert r.nodes.held == {node.id: f"build {request.id}: devstack for 2,1 in gate ended FAILURE"}
    logdir = archived(r, result)
    assert "exercise compute: FAIL" in read(os.path.join(logdir, "console.txt"))
    assert "screen-n-api.txt" in os.listdir(logdir)


def test_failure_past_the_held_node_cap_releases_the_node(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node], max_held=0, transfer="rsync")  # and the workspace goes by rsync this time
    result = r.runner.run(request_for(projects.state(), run=["test -x stack.sh && exit 7"]))
    assert result.result == FAILURE and result.message == "test -x stack.sh && exit 7 exited 7"
    assert r.nodes.released == [(node.id, False, "")]
    assert r.nodes.held == {}


def test_timed_out_job_is_killed_and_reported_timed_out(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    result = r.runner.run(request_for(projects.state(), run=["sleep 300 & echo $! > ../sleeper.pid; wait"],
                                      timeout=2))
    assert result.result == TIMED_OUT
    pid = read(os.path.join(hosts.home(node), "workspace", "openstack-dev", "sleeper.pid")).strip()
    assert process_gone(node, pid)


def test_node_vanishing_mid_run_is_a_node_failure(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    request = request_for(projects.state(), run=["echo running; sleep 60"])

    def kill_when_running() -> None:
        while True:
            console = r.consoles.get(request.id)
            if console is not None and "running" in read(console.path):
                hosts.destroy(node)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    result = r.runner.run(request)
    killer.join(10)
    assert result.result == NODE_FAILURE, result.message
    assert r.nodes.released == [(node.id, False, "")]


def test_subject_branch_and_file_names_with_shell_syntax_run_nothing(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    nasty = "$(touch pwned)"
    step = projects.change("openstack/nova", {f"{nasty} `touch pwned2` 'q'.log": ("x\n", False)},
                           f"{nasty} and `touch pwned3`\n\nbody $(touch pwned4)", 3)
    request = request_for(projects.state(step), number=3, run=["true"],
                          collect=["workspace/openstack/nova/*.log"])
    request.change["branch"] = "master$(touch pwned5)"
    result = r.runner.run(request)
    assert result.result == SUCCESS, result.message
    found = [os.path.join(d, f) for d, _, fs in os.walk(hosts.home(node)) for f in fs if f.startswith("pwned")]
    assert found == []
    logdir = archived(r, result)
    assert f"{nasty} `touch pwned2` 'q'.txt" in os.listdir(logdir)
    assert f"openstack/nova master {step.result[:10]} {nasty} and `touch pwned3`" in read(
        os.path.join(logdir, "console.txt"))


def test_cancelled_build_is_aborted_and_node_released(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    abort = threading.Event()
    request = request_for(projects.state(), run=["echo up; sleep 60"])

    def cancel_when_running() -> None:
        while not abort.is_set():
            console = r.consoles.get(request.id)
            if console is not None and "up" in read(console.path).split(" | ")[-1]:
                abort.set()
            time.sleep(0.05)

    threading.Thread(target=cancel_when_running, daemon=True).start()
    result = r.runner.run(request, abort)
    assert result.result == ABORTED
    assert r.nodes.released[0][:2] == (node.id, False)


# -- the live console -------------------------------------------------------------------------------------------
def test_live_console_streams_lines_while_the_build_runs(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    server = ConsoleServer(r.consoles).start()
    try:
        request = request_for(projects.state(), run=["echo first; while [ ! -f go ]; do sleep 0.1; done; echo second"])
        worker = threading.Thread(target=r.runner.run, args=(request,), daemon=True)
        worker.start()
        wait_for(lambda: r.consoles.get(request.id), 30, "the build's console to open")
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("GET", f"/console/{request.id}")
        resp = conn.getresponse()
        assert resp.status == 200
        seen = b""
        while b"| first\n" not in seen:
            seen += resp.read1(4096)
        # the step waits for `go`: the first line arrived while the build was still running
        assert worker.is_alive()
        home = hosts.home(node)
        open(os.path.join(home, "workspace", "openstack-dev", "devstack", "go"), "w").close()
        rest = resp.read()
        worker.join(30)
        text = (seen + rest).decode()
        assert "| second\n" in text and f"Build {request.id} finished: SUCCESS" in text
        conn.close()
        missing = http.client.HTTPConnection(server.host, server.port, timeout=10)
        missing.request("GET", "/console/nope")
        assert missing.getresponse().status == 404
        missing.close()
    finally:
        server.stop()


def test_console_follow_ends_when_the_console_closes(tmp_path):
    console = Console("b1", str(tmp_path / "c" / "console.txt"))
    console.line("one")
    chunks = console.follow(poll=0.05)
    assert next(chunks).endswith(b"| one\n")
    console.line("two\nthree")
    console.close()
    rest = b"".join(chunks).decode()
    assert rest.count(" | ") == 2 and rest.endswith("| three\n")
