"""docs/deploy.md's one-host layout, followed to the letter: every service is started as its own process from the
`ExecStart=` of its systemd unit in etc/systemd/, with its config from etc/gatekeeper/ and the environment the
unit gives it, and with the keys and PKI made by the document's own commands; only ports and paths are
templated. ZooKeeper runs with TLS client certificates and digest auth; Gerrit and the clouds are the simulators
of the trial units (gatekeeper-gerrit-sim, gatekeeper-cloud-sim). A developer pushes a change, a core approves
it, and it is gated, merged and reported, with its logs behind the web and its builds in the history the
recorder keeps."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.child_process import start_tied
from gatekeeper.zk.server import four_letter_word, free_port
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc"
# The order docs/deploy.md starts them in (ZooKeeper, then Gerrit, then gatekeeper's services).
SERVICES = ("gatekeeper-recorder", "gatekeeper-scheduler", "gatekeeper-merger", "gatekeeper-launcher",
            "gatekeeper-executor", "gatekeeper-web")

def doc_block(heading: str) -> str:
    """The first ```sh block under `heading` in docs/deploy.md."""
    text = (REPO / "docs" / "deploy.md").read_text()
    section = text[text.index(heading + "\n"):]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def parse_unit(path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """A unit's `Environment=`/`EnvironmentFile=` variables, `ExecStartPre=` and `ExecStart=` command lines."""
    env: dict[str, str] = {}
    pre: list[str] = []
    start: list[str] = []
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
        elif key == "EnvironmentFile":
            env["@file"] = value.lstrip("-")
        elif key == "ExecStartPre":
            pre.append(value)
        elif key == "ExecStart":
            start.append(value)
    return env, pre, start


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


class Deployment:
    """The one-host layout under `root`: /etc/gatekeeper, /var/lib/gatekeeper and /var/lib/zookeeper live there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.etc = root / "etc" / "gatekeeper"
        self.var = root / "var" / "lib" / "gatekeeper"
        self.zk_data = root / "var" / "lib" / "zookeeper"
        self.logs = root / "service-logs"
        for d in (self.etc, self.var, self.zk_data, self.logs):
            d.mkdir(parents=True)
        self.ports = {name: free_port() for name in ("zk", "zk_tls", "ssh", "http", "web", "console")}
        self.procs: dict[str, subprocess.Popen] = {}

    def template(self, text: str) -> str:
        """Only ports and paths differ from the files in etc/."""
        p = self.ports
        for old, new in (
            ("/opt/gatekeeper/.venv/bin/gatekeeper", f"{sys.executable} -m gatekeeper.cmd"),
            ("/opt/gatekeeper", str(REPO)),
            ("/etc/gatekeeper", str(self.etc)),
            ("/var/lib/gatekeeper", str(self.var)),
            ("/var/lib/zookeeper", str(self.zk_data)),
            ("zk1.example.org:2281,zk2.example.org:2281,zk3.example.org:2281", f"127.0.0.1:{p['zk_tls']}"),
            ("secureClientPort=2281", f"secureClientPort={p['zk_tls']}"),
            ("clientPort=2181", f"clientPort={p['zk']}"),
            ("http://review.example.org:8080", f"http://127.0.0.1:{p['http']}"),
            ("https://review.example.org", f"http://127.0.0.1:{p['http']}"),
            ("review.example.org", "127.0.0.1"),
            ("port: 29418", f"port: {p['ssh']}"),
            ("--port 29418", f"--port {p['ssh']}"),
            ("--http-port 8080", f"--http-port {p['http']}"),
            ("port: 9000", f"port: {p['web']}"),
            ("https://gatekeeper.example.org", f"http://127.0.0.1:{p['web']}"),
            ("--console-port 7900", f"--console-port {p['console']}"),
            ("%H", "127.0.0.1"),  # systemd's specifier for the host name
        ):
            text = text.replace(old, new)
        return text

    def install(self) -> None:
        """What the document's install steps leave in /etc/gatekeeper."""
        # The document's key and PKI steps, run as written (the service accounts are root here).
        for heading in ("### 2. Keys", "### 4. ZooKeeper with TLS and auth"):
            script = self.template(doc_block(heading))
            for account in ("gatekeeper", "zookeeper"):
                script = script.replace(f"-o {account} ", "-o root ").replace(f"chown {account}:", "chown root:")
                script = script.replace(f"chgrp {account} ", "chgrp root ")
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, f"{heading}: {done.stderr}"
        (self.etc / "zookeeper").mkdir()
        (self.etc / "zookeeper" / "zoo.cfg").write_text(self.template((ETC / "zookeeper" / "zoo-one-host.cfg")
                                                                      .read_text()))
        shutil.copy(ETC / "zookeeper" / "log4j.properties", self.etc / "zookeeper")
        for config in (ETC / "gatekeeper").glob("*.yaml"):
            (self.etc / config.name).write_text(self.template(config.read_text()))
        shutil.copy(ETC / "gatekeeper" / "secrets.env.example", self.etc / "secrets.env")
        shutil.copytree(REPO / "layouts", self.etc / "layouts")

    def start_unit(self, name: str) -> subprocess.Popen:
        env, pre, start = parse_unit(ETC / "systemd" / f"{name}.service")
        full = dict(os.environ)
        if "@file" in env:
            full.update(read_env_file(Path(self.template(env.pop("@file")))))
        full.update({k: self.template(v) for k, v in env.items()})
        log = open(self.logs / f"{name}.log", "ab")
        for command in pre:
            done = subprocess.run(shlex.split(self.template(command)), env=full, stdout=log, stderr=log,
                                  timeout=120, cwd=self.root)
            assert done.returncode == 0, self.log(name)
        (command,) = start
        proc = start_tied(shlex.split(self.template(command)), env=full, stdout=log, stderr=log,
                          stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def wait_up(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        """Wait until `ready()`; fail at once, with the unit's log, if its process exits first."""
        proc = self.procs[name]
        if not wait_for(lambda: ready() or proc.poll() is not None, timeout, f"{name} to start") or not ready():
            raise AssertionError(f"{name} exited with {proc.poll()} before it was up:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every process, gatekeeper's services together and then what they use (ZooKeeper and the
        simulators) together, as systemd stops units that have no order between them; returns their exit
        statuses."""
        codes: dict[str, int | None] = {}
        services = [name for name in self.procs if name in SERVICES]
        for group in (services, [name for name in self.procs if name not in SERVICES]):
            for name in group:
                if self.procs[name].poll() is None:
                    self.procs[name].send_signal(signal.SIGTERM)
            for name in group:
                try:
                    codes[name] = self.procs[name].wait(90)
                except subprocess.TimeoutExpired:
                    os.killpg(self.procs[name].pid, signal.SIGKILL)
                    self.procs[name].wait(10)
                    codes[name] = None
        return codes


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    try:
        yield d
    finally:
        codes = d.stop()
        print({name: code for name, code in codes.items()})


def ssh(d: Deployment, user: str, *command: str) -> str:
    key = d.var / "gerrit-sim" / "keys" / f"{user}_ecdsa"
    proc = subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o",
                           "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(d.ports["ssh"]),
                           f"{user}@127.0.0.1", *command], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def git(d: Deployment, *args: str, cwd: Path) -> str:
    key = d.var / "gerrit-sim" / "keys" / "jane_ecdsa"
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                           f"-o LogLevel=ERROR -p {d.ports['ssh']}")
    proc = subprocess.run(["git", "-c", "user.name=Jane", "-c", "user.email=jane@example.org", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def change_status(d: Deployment, number: int) -> str | None:
    """The change's status as the simulator last saved it (cheap to poll; the test ends with a real query)."""
    try:
        state = json.loads((d.var / "gerrit-sim" / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return next((c["status"] for c in state["changes"] if c["number"] == number), None)


def http_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.netns  # the trial cloud's servers are network namespaces
def test_one_host_deployment_from_the_document_gates_a_change(deployment: Deployment) -> None:
    d = deployment
    d.install()

    # 1. ZooKeeper (TLS for clients), then Gerrit (here the simulator), then the clouds.
    d.start_unit("gatekeeper-zookeeper")
    d.wait_up("gatekeeper-zookeeper", lambda: _ruok(d.ports["zk"]), 90)
    d.start_unit("gatekeeper-gerrit-sim")
    d.wait_up("gatekeeper-gerrit-sim", lambda: "Gerrit simulator on" in d.log("gatekeeper-gerrit-sim"), 60)
    d.start_unit("gatekeeper-cloud-sim")
    d.wait_up("gatekeeper-cloud-sim", lambda: '"clouds_yaml"' in d.log("gatekeeper-cloud-sim"), 120)

    # 2. gatekeeper's services, each its own process.
    for name in SERVICES:
        d.start_unit(name)
    web = f"http://127.0.0.1:{d.ports['web']}"
    d.wait_up("gatekeeper-web", lambda: _answers(f"{web}/api/v1/info"), 90)

    # 3. A developer uploads a change; a core reviewer approves it.
    work = d.root / "novaclient"
    git(d, "clone", "-q", f"ssh://jane@127.0.0.1:{d.ports['ssh']}/openstack/python-novaclient", str(work),
        cwd=d.root)
    (work / "NOTES").write_text("gated through a deployment made from the document\n")
    git(d, "add", "NOTES", cwd=work)
    git(d, "commit", "-q", "-m", f"Add deployment notes\n\nChange-Id: I{'d' * 40}", cwd=work)
    pushed = git(d, "push", "origin", "HEAD:refs/for/master", cwd=work)
    number = int(pushed.split("/+/", 1)[1].split()[0])
    ssh(d, "rita", "gerrit", "review", "--code-review", "+2", "--approved", "+1", f"{number},1")

    # 4. It is gated and merged, and reported once.
    try:
        wait_for(lambda: change_status(d, number) == "MERGED", 900, "the change to merge")
    except AssertionError as timeout:
        logs = "\n".join(f"== {n}\n{d.log(n)[-3000:]}" for n in (*SERVICES, "gatekeeper-gerrit-sim"))
        raise AssertionError(f"{timeout}\n{logs}") from None
    row = json.loads(ssh(d, "jane", "gerrit", "query", "--format", "JSON", "--all-approvals", "--comments",
                         f"change:{number}").splitlines()[0])
    assert row["status"] == "MERGED"
    messages = [c["message"] for c in row["comments"] if c["reviewer"]["username"] == "gatekeeper"]
    assert sum("Build succeeded (gate pipeline)." in m for m in messages) == 1, messages
    gate_votes = [a for ps in row["patchSets"] for a in ps.get("approvals", [])
                  if a["by"]["username"] == "gatekeeper" and a["type"] == "Verified"]
    assert gate_votes[-1]["value"] == "2"

    # 5. The report's log links are served by the web from the log store; the recorder kept the builds.
    report = next(m for m in messages if "Build succeeded (gate pipeline)." in m)
    log_url = next(word for word in report.split() if word.startswith(f"{web}/logs/"))
    with urllib.request.urlopen(log_url.rstrip("/") + "/", timeout=10) as response:
        assert response.status == 200
    jobs = {"novaclient-unit", "devstack"}

    def recorded() -> list | None:  # the recorder stores each build as its result arrives: wait for both
        found = http_json(f"{web}/api/v1/builds?change={number}&pipeline=gate")
        return found if {b["job"] for b in found} >= jobs else None
    builds = wait_for(recorded, 60, "the history recorder to store both builds")
    assert sorted(b["job"] for b in builds) == sorted(jobs)
    assert all(b["result"] == "SUCCESS" for b in builds)

    # 6. Every service stops cleanly on SIGTERM, as systemd stops it.
    codes = d.stop()
    for name in (*SERVICES, "gatekeeper-gerrit-sim", "gatekeeper-cloud-sim"):
        assert codes[name] == 0, f"{name} exited with {codes[name]}:\n{d.log(name)[-3000:]}"


def _ruok(port: int) -> bool:
    try:
        return four_letter_word("127.0.0.1", port, "ruok", timeout=1) == "imok"
    except OSError:
        return False


def _answers(url: str) -> bool:
    try:
        http_json(url)
        return True
    except OSError:
        return False
