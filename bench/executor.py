#!/usr/bin/env python3
"""Executor benchmark: build start latency, and log copy-back against plain rsync over the same link.

- start latency: BuildRequest written to ZooKeeper -> the job's first command runs on the node, with ready nodes
  from the launcher (cloud simulator, min-ready) and the executor service; median over the runs.
  Target: p50 <= 1 s.
- copy-back: the executor's log copy-back (one tar stream over its SSH connection, unpacked with renaming and
  secret masking) of N MB of log files, against `rsync -a -e ssh` of the same files from the same node.
  Target: copyback_mb_per_s >= 0.8 x rsync_mb_per_s. The gzip of large files that follows in the log store (off
  the build's critical path) is measured apart: compress_mb_per_s.
- also: the workspace copy to the node, tar over paramiko vs rsync (the executor's two transfer modes).

Every figure counts only work that was done: each build must end SUCCESS, megabytes are those that arrived (their
contents checked against what the node holds), and rsync runs over one kept-open SSH connection (an OpenSSH
ControlMaster) as copy-back runs over the executor's open connection. When the timed work was not done, the benchmark
says why and exits 1. `--self-check` breaks that work on purpose (a failing build, a collection that matches nothing,
an rsync of an empty directory, nothing to compress) and exits 0 only when every one is caught.

Starts its own ZooKeeper, cloud simulator, launcher and sshd hosts; removes everything at the end.
Prints a human summary, then one JSON line. `--quick` finishes in under 50 s on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.selfcheck import finish  # noqa: E402
from gatekeeper.config.layout import parse_layout  # noqa: E402
from gatekeeper.executor.build import ExecutorSettings  # noqa: E402
from gatekeeper.executor.logs import LogStore, collect_files, compress_large  # noqa: E402
from gatekeeper.executor.masking import Masker  # noqa: E402
from gatekeeper.executor.remote import RemoteHost  # noqa: E402
from gatekeeper.executor.service import ExecutorService  # noqa: E402
from gatekeeper.executor.transfer import PinnedSSH, push_tar  # noqa: E402
from gatekeeper.launcher.launcher import Launcher  # noqa: E402
from gatekeeper.launcher.model import Node  # noqa: E402
from gatekeeper.sim.devstack import seed_devstack, seed_nova  # noqa: E402
from gatekeeper.sim.openstack.hosts import HostSpec, default_backend  # noqa: E402
from gatekeeper.sim.openstack.sim import CloudSim  # noqa: E402
from gatekeeper.zk import builds  # noqa: E402
from gatekeeper.zk.builds import BuildRequest  # noqa: E402
from gatekeeper.zk.client import ZKClient  # noqa: E402
from gatekeeper.zk.merges import RepoState  # noqa: E402
from gatekeeper.zk.server import LocalZooKeeper  # noqa: E402

NODEPOOL = """
nodepool:
  labels:
    - {name: bench, min-ready: 2}
  providers:
    - name: bench-cloud
      driver: openstack
      cloud: bench
      max-servers: 4
      boot-timeout: 20
      pools:
        - name: main
          labels: [{name: bench, image: img, flavor: small}]
      images:
        - name: img
          base-image: debian-12
"""
WORDS = ("nova", "glance", "keystone", "INFO", "DEBUG", "request", "instance", "spawned", "GET", "/v2.1/servers",
         "200", "len", "time", "0.0123", "req-3f2a", "oslo", "scheduler", "host", "compute", "neutron")


class BenchFailure(Exception):
    """The work a figure would time was not done: no figure may be printed for it."""


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def keygen(path: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


# -- start latency ----------------------------------------------------------------------------------------------
def start_latency(tmp: str, runs: int, command: str = "true") -> list[float]:
    repos = os.path.join(tmp, "gerrit")
    devstack = seed_devstack(os.path.join(repos, "openstack-dev/devstack.git"))
    nova = seed_nova(os.path.join(repos, "openstack/nova.git"))
    state = RepoState(branches={"openstack-dev/devstack": {"master": devstack}, "openstack/nova": {"master": nova}})
    key = keygen(os.path.join(tmp, "node_key"))
    zk_server = LocalZooKeeper(data_dir=os.path.join(tmp, "zk")).start()
    clients: list[ZKClient] = []
    cloud = launcher = executor = None
    try:
        def client() -> ZKClient:
            c = ZKClient(zk_server.hosts, chroot="/bench", timeout=10).start()
            clients.append(c)
            return c

        cloud = CloudSim(["bench"], workdir=os.path.join(tmp, "cloud"))
        launcher = Launcher(client(), parse_layout({"np.yaml": NODEPOOL}).nodepool, ssh_key=key,
                            clouds_yaml=cloud.clouds_yaml, poll_interval=0.05, delete_verify_timeout=5).start()
        executor = ExecutorService(client(), ExecutorSettings(work_dir=os.path.join(tmp, "executor")),
                                   LogStore(os.path.join(tmp, "logs"), "http://logs.invalid"),
                                   lambda p: os.path.join(repos, p + ".git")).start()
        zk = client()
        out = []
        for i in range(runs + 1):  # the first run warms the git cache; it is not counted
            wait_ready(zk, 2)
            req = BuildRequest(pipeline="gate", job="bench", label="bench", changes=f"{i},1",
                               change={"project": "openstack/nova", "branch": "master", "number": i + 1,
                                       "patchset": 1},
                               repo_state=state.to_dict(), params={"run": [command], "timeout": 60})
            req.created = time.time()
            builds.submit_build(zk, req)
            deadline = time.monotonic() + 60
            while req.id not in builds.finished_builds(zk) and time.monotonic() < deadline:
                time.sleep(0.02)
            result = builds.read_build_result(zk, req.id)
            timing = executor.runner.timings.get(req.id)
            if result is None or result.result != "SUCCESS" or timing is None or not timing.first_command:
                raise BenchFailure(f"bench build {i} did not succeed: {result}")
            if i:
                out.append(timing.first_command - req.created)
        return out
    finally:
        for part in (executor, launcher):
            if part is not None:
                part.stop()
        if cloud is not None:
            cloud.stop()
        for c in clients:
            c.stop()
        zk_server.cleanup()


def wait_ready(zk: ZKClient, count: int) -> None:
    from gatekeeper.zk import paths

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if len(zk.client.get_children(paths.ready_node("bench"))) >= count:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise BenchFailure("the launcher did not keep ready nodes")


# -- transfers --------------------------------------------------------------------------------------------------
def write_logs(root: str, total_mb: int, files: int) -> int:
    rng = random.Random(42)
    os.makedirs(root, exist_ok=True)
    size = total_mb * 1024 * 1024 // files
    written = 0
    for n in range(files):
        lines = []
        length = 0
        while length < size:
            line = f"2026-11-25 11:{n % 60:02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d} " + " ".join(
                rng.choice(WORDS) for _ in range(rng.randrange(6, 16))) + "\n"
            lines.append(line)
            length += len(line)
        with open(os.path.join(root, f"screen-svc{n}.log"), "w") as f:
            f.write("".join(lines))
        written += length
    return written


def digests(root: str) -> list[tuple[int, str]]:
    """(size, sha256) of every file under `root`, sorted: what a copy must reproduce, whatever the names."""
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            out.append((len(data), hashlib.sha256(data).hexdigest()))
    return sorted(out)


def arrived(what: str, got: list[tuple[int, str]], sent: list[tuple[int, str]]) -> int:
    """The bytes that arrived, after checking they are the bytes that were sent (BenchFailure otherwise)."""
    if got != sent:
        raise BenchFailure(f"{what}: {len(got)} file(s), {sum(n for n, _ in got)} bytes arrived; "
                           f"{len(sent)} file(s), {sum(n for n, _ in sent)} bytes were sent, or their contents differ")
    return sum(n for n, _ in got)


def remote_digests(remote: RemoteHost, path: str) -> list[tuple[int, str]]:
    """(size, sha256) of every file under `path` on the node, read back over the node's SSH connection."""
    status, out = remote.execute(f"cd {path} && find . -type f -exec sha256sum {{}} + && find . -type f -printf "
                                 "'%s %p\\n'", timeout=120)
    if status != 0:
        raise BenchFailure(f"could not read back {path} on the node: {out.decode(errors='replace')[-500:]}")
    sums, sizes = {}, {}
    for line in out.decode().splitlines():
        first, name = line.split(" ", 1)
        if len(first) == 64:
            sums[name.strip()] = first
        else:
            sizes[name.strip()] = int(first)
    return sorted((sizes[name], digest) for name, digest in sums.items())


class KeptSSH:
    """rsync over one OpenSSH connection opened once and kept (ControlMaster), as copy-back keeps its connection."""

    def __init__(self, node: Node) -> None:
        self.pinned = PinnedSSH(node)
        self.control_dir = tempfile.mkdtemp(prefix="gkcm-")  # short: a socket path has at most 107 bytes
        self.args = [*self.pinned.ssh_args(), "-o", f"ControlPath={self.control_dir}/%C"]
        proc = subprocess.run([*self.args, "-o", "ControlMaster=yes", "-o", "ControlPersist=600", "-f", "-N",
                               "-l", node.username, node.address], capture_output=True, timeout=60)
        if proc.returncode != 0:
            self.close()
            raise BenchFailure(f"could not open the kept SSH connection to {node.address}:{node.port}: "
                               f"{proc.stderr.decode(errors='replace').strip()}")

    def rsync(self, src: str, dest: str) -> None:
        shell = " ".join(self.args)
        proc = subprocess.run(["rsync", "-a", "--mkpath", "-e", shell, src.rstrip("/") + "/", dest.rstrip("/") + "/"],
                              capture_output=True, timeout=600)
        if proc.returncode != 0:
            raise BenchFailure(f"rsync {src} {dest} failed ({proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace').strip()}")

    def close(self) -> None:
        subprocess.run([*self.args, "-O", "exit", "-l", self.pinned.node.username, self.pinned.node.address],
                       capture_output=True, timeout=30)
        self.pinned.close()
        shutil.rmtree(self.control_dir, ignore_errors=True)


def transfers(tmp: str, total_mb: int, runs: int, sabotage: str | None = None) -> dict[str, float]:
    """Copy-back against rsync, and the workspace push both ways; `sabotage` breaks one part (for --self-check)."""
    os.makedirs(tmp, exist_ok=True)
    key = keygen(os.path.join(tmp, "xfer_key"))
    with open(key + ".pub") as f:
        pub = f.read()
    backend = default_backend(os.path.join(tmp, "hosts"))
    kept = None
    try:
        address = backend.boot(HostSpec("bench1", "bench-node", authorized_keys=pub))
        host = backend.hosts["bench1"]
        with open(os.path.join(host.workdir, "ssh_host_ed25519_key.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        node = Node(id="bench1", address=address, port=host.port, username=os.environ.get("USER") or "root",
                    private_key=key, host_keys=[host_key])
        logs = os.path.join(host.home, "logs")
        write_logs(logs, total_mb, 8)
        os.makedirs(os.path.join(host.home, "empty"), exist_ok=True)
        sent = digests(logs)
        copyback, rsync, push_t, push_r, compress = [], [], [], [], []
        masker = Masker(["e2e-admin-secret"])
        pattern = "nothing/*.log" if sabotage == "empty-collection" else "logs/*.log"
        rsync_src = "empty" if sabotage == "empty-rsync" else "logs"
        kept = KeptSSH(node)
        with RemoteHost(node).connect() as remote:
            for i in range(runs):
                dest = os.path.join(tmp, f"cb{i}")
                t = time.monotonic()
                collect_files(remote, [pattern], dest, masker)
                seconds = time.monotonic() - t
                copyback.append(arrived(f"log copy-back run {i}", digests(dest), sent) / 1e6 / seconds)
                big = {name: os.path.getsize(os.path.join(dest, name)) for name in os.listdir(dest)}
                t = time.monotonic()
                done = [] if sabotage == "nothing-compressed" else compress_large(dest)
                seconds = time.monotonic() - t
                compressed = sum(big[name[:-3]] for name in done)
                if not done or compressed != sum(big.values()):
                    raise BenchFailure(f"compress run {i}: {len(done)} of {len(big)} files were compressed")
                compress.append(compressed / 1e6 / seconds)
                dest = os.path.join(tmp, f"rs{i}")
                t = time.monotonic()
                kept.rsync(kept.pinned.target(rsync_src), dest)
                seconds = time.monotonic() - t
                rsync.append(arrived(f"rsync run {i}", digests(dest), sent) / 1e6 / seconds)
                shutil.rmtree(os.path.join(tmp, f"cb{i}"))
                src = os.path.join(tmp, f"rs{i}")
                t = time.monotonic()
                push_tar(remote, src, f"ws-tar{i}")
                seconds = time.monotonic() - t
                push_t.append(arrived(f"workspace tar run {i}", remote_digests(remote, f"ws-tar{i}"), sent)
                              / 1e6 / seconds)
                t = time.monotonic()
                kept.rsync(src, kept.pinned.target(f"ws-rsync{i}"))
                seconds = time.monotonic() - t
                push_r.append(arrived(f"workspace rsync run {i}", remote_digests(remote, f"ws-rsync{i}"), sent)
                              / 1e6 / seconds)
                shutil.rmtree(src)
                remote.execute(f"rm -rf ws-tar{i} ws-rsync{i}")
        return {"copyback_mb_per_s": statistics.median(copyback), "rsync_mb_per_s": statistics.median(rsync),
                "workspace_tar_mb_per_s": statistics.median(push_t),
                "workspace_rsync_mb_per_s": statistics.median(push_r), "compress_mb_per_s": statistics.median(compress),
                "copyback_mb": round(sum(n for n, _ in sent) / 1e6, 1)}
    finally:
        if kept is not None:
            kept.close()
        backend.close()


SABOTAGES = ("empty-collection", "empty-rsync", "nothing-compressed")


def self_check(tmp: str) -> list[str]:
    """Break each timed piece of work on purpose; returns what was not caught (empty: the benchmark is honest)."""
    missed = []
    for sabotage in SABOTAGES:
        try:
            transfers(os.path.join(tmp, sabotage), 12, 1, sabotage=sabotage)
            missed.append(f"{sabotage}: figures were produced")
        except BenchFailure as exc:
            print(f"self-check: {sabotage} caught: {exc}")
    try:
        os.makedirs(os.path.join(tmp, "failing-build"))
        start_latency(os.path.join(tmp, "failing-build"), 1, command="false")
        missed.append("failing-build: figures were produced")
    except BenchFailure as exc:
        print(f"self-check: failing-build caught: {exc}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and less data (< 50 s)")
    parser.add_argument("--self-check", action="store_true",
                        help="break the timed work on purpose and check that the benchmark refuses to report it")
    args = parser.parse_args()
    # the self-check breaks things on purpose: their error logs are expected there
    logging.basicConfig(level=logging.CRITICAL if args.self_check else logging.ERROR)
    runs, mb, xfer_runs = (8, 32, 5) if args.quick else (30, 128, 9)
    tmp = tempfile.mkdtemp(prefix="gk-bench-executor-")
    try:
        if args.self_check:
            return finish("executor.py", self_check(tmp))
        started = time.monotonic()
        latencies = start_latency(tmp, runs)
        xfer = transfers(tmp, mb, xfer_runs)
        elapsed = time.monotonic() - started
    except BenchFailure as exc:
        print(f"bench/executor.py: the measured work was not done, no figures: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures = {
        "start_latency_p50_s": round(percentile(latencies, 50), 3),
        "start_latency_p90_s": round(percentile(latencies, 90), 3),
        "start_latency_max_s": round(max(latencies), 3),
        "builds": len(latencies),
        **{k: round(v, 1) for k, v in xfer.items()},
    }
    ratio = figures["copyback_mb_per_s"] / figures["rsync_mb_per_s"] if figures["rsync_mb_per_s"] else 0.0
    figures["copyback_vs_rsync"] = round(ratio, 2)
    figures["elapsed_s"] = round(elapsed, 1)
    print(f"build start latency (request -> first command, ready node): p50 {figures['start_latency_p50_s']} s, "
          f"p90 {figures['start_latency_p90_s']} s over {len(latencies)} builds (target p50 <= 1 s)")
    print(f"log copy-back of {figures['copyback_mb']} MB: {figures['copyback_mb_per_s']} MB/s vs rsync "
          f"{figures['rsync_mb_per_s']} MB/s = {ratio:.0%} (target >= 80%); then gzip of the large files in the "
          f"log store, off the critical path: {figures['compress_mb_per_s']} MB/s")
    print(f"workspace copy: tar over paramiko {figures['workspace_tar_mb_per_s']} MB/s, "
          f"rsync {figures['workspace_rsync_mb_per_s']} MB/s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
