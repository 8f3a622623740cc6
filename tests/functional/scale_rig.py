"""A multi-host deployment on one machine: every service its own process in its own network namespace, as
separate hosts would run them, around a three-member ZooKeeper ensemble whose members are hosts of their own.

    rig = ScaleRig(workdir).start()          # ensemble, Gerrit and cloud simulators, 10 service processes
    changes = rig.create_changes(30); rig.approve(changes)
    rig.kill("scheduler", 0); rig.kill_zookeeper(0); ...; rig.restart_killed()
    rig.wait_settled(changes); rig.account(changes)   # merged, lost, double reports
    rig.stop()

All hosts sit on one private bridge in 169.254.0.0/16 (the cloud simulator's own, so executors reach the nodes
directly); the simulators listen on the bridge's address in the root namespace. Needs root.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gatekeeper.child_process import start_tied
from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.sim.openstack.api import CloudServer
from gatekeeper.sim.openstack.cloud import Cloud, Limits
from gatekeeper.sim.openstack.hosts import NetnsBackend
from gatekeeper.zk.server import LocalZooKeeper, four_letter_word

log = logging.getLogger("gatekeeper.tests.scale")

CI = "ci"
PROJECTS = ("org/a", "org/b", "org/c")
START_MESSAGE = "Starting gate jobs."
SUCCESS_MESSAGE = "Build succeeded (gate pipeline)."
CLOUDS = ("cloud-a", "cloud-b")
# How many processes of each service the deployment runs (2 schedulers, 2 mergers, 2 launchers, 3 executors, web).
SERVICES = (("scheduler", 2), ("merger", 2), ("launcher", 2), ("executor", 3), ("web", 1))

LAYOUT = """
pipelines:
  - name: gate
    manager: dependent
    trigger:
      gerrit:
        - event: comment-added
          approval: [{Approved: 1}]
    require:
      open: true
      current-patchset: true
      approval: [{Code-Review: 2}, {Approved: 1}]
    start: {gerrit: {labels: {Verified: 0}, message: %(start)s}}
    success: {gerrit: {labels: {Verified: 2}, message: %(success)s, submit: true}}
    failure: {gerrit: {labels: {Verified: -2}, message: Build failed (gate pipeline).}}
    merge-conflict: {gerrit: {labels: {Verified: -2}, message: This change could not be merged.}}
    window: {initial: 12, floor: 3, increase: 1, decrease-factor: 2}
queues:
  - name: integrated
jobs:
  - name: unit
    label: small-node
    timeout: 60
    attempts: 4
    run: ['test -f "$HOME/workspace/README" || ls "$HOME"; echo unit ok']
projects:
%(projects)s
nodepool:
  labels:
    - {name: small-node, min-ready: 2}
  providers:
%(providers)s
""".lstrip()

PROVIDER = """    - name: %(cloud)s
      driver: openstack
      cloud: %(cloud)s
      max-servers: 8
      boot-timeout: 30
      pools:
        - name: main
          labels: [{name: small-node, image: base, flavor: small}]
      images:
        - name: base
          base-image: debian-12
"""


class HostNetwork:
    """Plain hosts (a namespace with one address, no sshd) on an existing bridge; `close()` removes them all.

    Addresses are taken from the top of the /24 down (.250, .249, ...) so that they never meet the cloud's
    servers, which the host backend numbers from .2 up. Names follow the backend's pattern (with this process's
    pid) so that a crashed run's leftovers are swept like the backend's own.
    """

    def __init__(self, bridge: str, subnet: str) -> None:
        self.bridge, self.subnet = bridge, subnet
        self.next_octet = 250
        self.names: list[tuple[str, str]] = []

    def add(self) -> tuple[str, str]:
        octet, self.next_octet = self.next_octet, self.next_octet - 1
        tag = f"gk{os.getpid():06x}ff{octet:02x}"
        ns, veth, address = f"{tag}n", f"{tag}v", f"{self.subnet}.{octet}"
        self.names.append((ns, veth))
        _ip_batch([f"netns add {ns}", f"link add {veth} type veth peer name eth0 netns {ns}",
                   f"link set {veth} master {self.bridge} up"])
        _ip_batch([f"addr add {address}/24 dev eth0", "link set eth0 up", "link set lo up"], netns=ns)
        return ns, address

    def close(self) -> None:
        for ns, veth in self.names:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", veth], capture_output=True)
        self.names.clear()


def _ip_batch(commands: list[str], netns: str | None = None) -> None:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    res = subprocess.run(cmd, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")


class EnsembleMember(LocalZooKeeper):
    """One member of a ZooKeeper ensemble, run inside its host's network namespace."""

    def __init__(self, myid: int, netns: str, host: str, peers: list[str], data_dir: str) -> None:
        super().__init__(data_dir=data_dir, port=2181, host=host, heap_mb=192, force_sync=False)
        self.myid, self.netns, self.peers = myid, netns, peers

    def write_config(self) -> Path:
        cfg = super().write_config()
        servers = "".join(f"server.{i}={peer}:2888:3888\n" for i, peer in enumerate(self.peers, 1))
        with open(cfg, "a") as f:
            f.write("tickTime=500\n" + servers)
        (self.data_dir / "data" / "myid").write_text(f"{self.myid}\n")
        return cfg

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("org.apache.zookeeper.server.ZooKeeperServerMain")] = \
            "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        return ["ip", "netns", "exec", self.netns, *cmd]

    def mode(self) -> str:
        """leader, follower, or "" while it is not serving."""
        try:
            for line in four_letter_word(self.host, self.port, "srvr", timeout=1).splitlines():
                if line.startswith("Mode:"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return ""

    def packets_received(self) -> int:
        try:
            return int(self.mntr().get("zk_packets_received", 0))
        except OSError:
            return 0


@dataclass
class ServiceProcess:
    kind: str
    index: int
    netns: str
    address: str
    config: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.index}"

    def start(self) -> None:
        args = [sys.executable, "-m", "gatekeeper.cmd", self.kind, "-c", str(self.config)]
        if self.kind == "web":
            args.append("--record-history")
        logf = open(self.log_path, "ab")
        self.proc = start_tied(["ip", "netns", "exec", self.netns, *args], stdout=logf,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        self.ask_to_stop()
        self.wait_stopped()

    def ask_to_stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_stopped(self) -> None:
        """After `ask_to_stop`: wait for the service to exit, and kill it if it takes longer than 15 s."""
        if self.proc is None:
            return
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Accounting:
    changes: int
    merged: int
    lost: int
    double_reports: int
    not_merged: list[int] = field(default_factory=list)


class ScaleRig:
    def __init__(self, workdir: Path, services: tuple[tuple[str, int], ...] = SERVICES) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the multi-host rig needs root (network namespaces)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.service_counts = services
        self.backend: NetnsBackend | None = None
        self.network: HostNetwork | None = None
        self.zookeepers: list[EnsembleMember] = []
        self.gerrit: GerritSimulator | None = None
        self.clouds: list[CloudServer] = []
        self.services: list[ServiceProcess] = []
        self.killed: list[ServiceProcess | EnsembleMember] = []

    # -- bring-up ---------------------------------------------------------------------------------------------------
    def start(self) -> ScaleRig:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.backend = NetnsBackend(str(self.workdir / "hosts"))
        os.makedirs(self.backend.workdir, exist_ok=True)
        gateway = f"{self.backend.subnet}.1"
        self.network = HostNetwork(self.backend.bridge, self.backend.subnet)
        zk_hosts = [self.network.add() for _ in range(3)]
        peers = [address for _, address in zk_hosts]
        for i, (ns, address) in enumerate(zk_hosts, 1):
            member = EnsembleMember(i, ns, address, peers, str(self.workdir / f"zk{i}"))
            self.zookeepers.append(member)
            member.start()
        deadline = time.monotonic() + 60
        while sorted(m.mode() for m in self.zookeepers) != ["follower", "follower", "leader"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ensemble did not form: {[m.mode() for m in self.zookeepers]}")
            time.sleep(0.2)

        self.gerrit = GerritSimulator(str(self.workdir / "gerrit"), host=gateway).start()
        ci = self.gerrit.add_account(CI, name="CI", email="ci@example.com", key_dir=str(self.workdir / "keys"))
        self.gerrit.add_account("jane", name="Jane Dev", email="jane@example.com")
        self.gerrit.add_account("rita", name="Rita Core", email="rita@example.com")
        for project in PROJECTS:
            self.gerrit.create_project(project)

        for name in CLOUDS:
            cloud = Cloud(name, self.backend, limits=Limits(max_instances=20))
            self.clouds.append(CloudServer(cloud, host=gateway).start())
        clouds_yaml = self.workdir / "clouds.yaml"
        clouds_yaml.write_text(yaml.safe_dump({"clouds": {s.cloud.name: s.clouds_yaml_entry()
                                                          for s in self.clouds}}))
        node_key = self.workdir / "keys" / "node_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(node_key)], check=True)

        layout = self.workdir / "layout.yaml"
        layout.write_text(LAYOUT % {
            "start": START_MESSAGE, "success": SUCCESS_MESSAGE,
            "projects": "".join(f"  - name: {p}\n    queue: integrated\n    pipelines: {{gate: [unit]}}\n"
                                for p in PROJECTS),
            "providers": "".join(PROVIDER % {"cloud": c} for c in CLOUDS)})
        base = {
            "zookeeper": {"hosts": ",".join(f"{a}:2181" for a in peers), "chroot": "/gatekeeper", "timeout": 6},
            "gerrit": {"name": "gerrit", "host": gateway, "port": self.gerrit.port, "user": CI,
                       "key": ci.key_file},
            "layout": str(layout),
            "launcher": {"clouds-yaml": str(clouds_yaml), "ssh-key": str(node_key), "cleanup-interval": 30},
            "history": {"url": f"sqlite:///{self.workdir / 'history.sqlite'}"},
        }
        for kind, count in self.service_counts:
            for index in range(count):
                ns, address = self.network.add()
                own = self.workdir / f"{kind}-{index}"
                own.mkdir()
                config = dict(base)
                config.update({
                    "merger": {"git-dir": str(own / "git"), "workers": 2},
                    "executor": {"work-dir": str(own / "work"), "concurrency": 4, "hold-hours": 1, "max-held": 0},
                    "log-store": {"dir": str(self.workdir / "logs"), "url": f"http://{address}:9000/logs"},
                    "web": {"listen": address, "port": 9000},
                })
                path = own / "gatekeeper.yaml"
                path.write_text(yaml.safe_dump(config))
                service = ServiceProcess(kind, index, ns, address, path, own / "service.log")
                self.services.append(service)
                service.start()
        self.gerrit.wait_for(lambda: self.gerrit.listener_count(CI) >= 1, 60)
        for service in self.services:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited at start:\n{self.log_tail(service)}")

    def log_tail(self, service: ServiceProcess, chars: int = 3000) -> str:
        try:
            return service.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- changes ----------------------------------------------------------------------------------------------------
    def create_changes(self, count: int) -> list:
        changes = []
        for i in range(count):
            project = PROJECTS[i % len(PROJECTS)]
            changes.append(self.gerrit.create_change(project, f"Scale change {i + 1}",
                                                     files={f"file-{i + 1}.txt": f"change {i + 1}\n"},
                                                     owner="jane"))
        return changes

    def approve(self, changes: list) -> None:
        for change in changes:
            self.gerrit.approve(change, "rita")

    def merged_count(self, changes: list) -> int:
        return sum(1 for c in changes if self.gerrit.change(c).status == "MERGED")

    def wait_merged(self, changes: list, count: int, timeout: float) -> bool:
        return self.gerrit.wait_for(lambda: self.merged_count(changes) >= count, timeout, interval=0.2)

    def account(self, changes: list) -> Accounting:
        merged, doubles, not_merged = 0, 0, []
        for change in changes:
            c = self.gerrit.change(change)
            if c.status == "MERGED":
                merged += 1
            else:
                not_merged.append(c.number)
            texts = Counter()
            for m in c.messages:
                if m.author.username != CI:
                    continue
                for marker in (START_MESSAGE, SUCCESS_MESSAGE):
                    if marker in m.message:
                        texts[marker] += 1
            doubles += sum(n - 1 for n in texts.values() if n > 1)
        return Accounting(len(changes), merged, len(not_merged), doubles, not_merged)

    def report(self, changes: list) -> str:
        """What an operator would look at first when the gate stalls: the account, where each unmerged change
        stands (its last CI message), the ensemble's modes, and each service's state and last warnings."""
        account = self.account(changes)
        lines = [f"merged {account.merged}/{account.changes}, double reports {account.double_reports}",
                 f"zookeeper modes: {[m.mode() or '-' for m in self.zookeepers]}"]
        for number in account.not_merged:
            c = self.gerrit.change(number)
            last = next((m.message for m in reversed(c.messages) if m.author.username == CI), "no CI message")
            lines.append(f"change {number}: {c.status}; last CI message: {last.splitlines()[0][:100]}")
        for service in self.services:
            tail = [line for line in self.log_tail(service, 200_000).splitlines()
                    if " WARNING " in line or " ERROR " in line or "Traceback" in line][-4:]
            lines.append(f"{service.name} ({'alive' if service.alive() else 'DEAD'}, restarts {service.restarts})"
                         + "".join(f"\n    {line[:300]}" for line in tail))
        return "\n".join(lines)

    def zk_packets(self) -> int:
        return sum(m.packets_received() for m in self.zookeepers)

    # -- faults -----------------------------------------------------------------------------------------------------
    def processes(self, kind: str) -> list[ServiceProcess]:
        return [s for s in self.services if s.kind == kind]

    def kill(self, kind: str, index: int = 0) -> ServiceProcess:
        service = self.processes(kind)[index]
        service.kill()
        self.killed.append(service)
        return service

    def kill_zookeeper(self, index: int) -> EnsembleMember:
        member = self.zookeepers[index]
        member.stop(kill=True)
        self.killed.append(member)
        return member

    def leader_index(self) -> int:
        modes = [m.mode() for m in self.zookeepers]
        return modes.index("leader") if "leader" in modes else 0

    def restart_killed(self) -> None:
        for part in self.killed:
            if isinstance(part, EnsembleMember):
                part.start()
            else:
                part.restarts += 1
                part.start()
        self.killed.clear()

    # -- tear-down --------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        for service in reversed(self.services):  # all at once: each takes a while to stop gracefully
            try:
                service.ask_to_stop()
            except Exception:
                log.exception("stopping %s", service.name)
        for service in reversed(self.services):
            try:
                service.wait_stopped()
            except Exception:
                log.exception("stopping %s", service.name)
        if self.gerrit is not None:
            self.gerrit.stop()
        for server in self.clouds:
            try:
                server.stop()
            except Exception:
                log.exception("stopping a cloud")
        for member in self.zookeepers:  # all at once, as the services
            if member.process is not None and member.process.poll() is None:
                member.process.terminate()
        for member in self.zookeepers:
            member.stop()
        if self.network is not None:
            self.network.close()
        if self.backend is not None:
            self.backend.close()
        for member in self.zookeepers:
            shutil.rmtree(member.data_dir, ignore_errors=True)
