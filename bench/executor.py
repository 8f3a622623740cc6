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

Starts its own ZooKeeper, cloud simulator, launcher and sshd hosts; removes everything at the end.
Prints a human summary, then one JSON line. `--quick` finishes in under 50 s on 2 cores.
"""

from __future__ import annotations

import argparse
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

from gatekeeper.config.layout import parse_layout  # noqa: E402
from gatekeeper.executor.build import ExecutorSettings  # noqa: E402
from gatekeeper.executor.logs import LogStore, collect_files, compress_large  # noqa: E402
from gatekeeper.executor.masking import Masker  # noqa: E402
from gatekeeper.executor.remote import RemoteHost  # noqa: E402
from gatekeeper.executor.service import ExecutorService  # noqa: E402
from gatekeeper.executor.transfer import pull_rsync, push_rsync, push_tar  # noqa: E402
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


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def keygen(path: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


# -- start latency ----------------------------------------------------------------------------------------------
def start_latency(tmp: str, runs: int) -> list[float]:
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
                                   lambda p: os.path.join(repos, p + ".git"), poll_interval=1.0).start()
        zk = client()
        out = []
        for i in range(runs + 1):  # the first run warms the git cache; it is not counted
            wait_ready(zk, 2)
            req = BuildRequest(pipeline="gate", job="bench", label="bench", changes=f"{i},1",
                               change={"project": "openstack/nova", "branch": "master", "number": i + 1,
                                       "patchset": 1},
                               repo_state=state.to_dict(), params={"run": ["true"], "timeout": 60})
            req.created = time.time()
            builds.submit_build(zk, req)
            deadline = time.monotonic() + 60
            while req.id not in builds.finished_builds(zk) and time.monotonic() < deadline:
                time.sleep(0.02)
            result = builds.read_build_result(zk, req.id)
            timing = executor.runner.timings.get(req.id)
            if result is None or result.result != "SUCCESS" or timing is None or not timing.first_command:
                raise RuntimeError(f"bench build {i} did not succeed: {result}")
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
    raise RuntimeError("the launcher did not keep ready nodes")


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


def transfers(tmp: str, total_mb: int, runs: int) -> dict[str, float]:
    key = keygen(os.path.join(tmp, "xfer_key"))
    with open(key + ".pub") as f:
        pub = f.read()
    backend = default_backend(os.path.join(tmp, "hosts"))
    try:
        address = backend.boot(HostSpec("bench1", "bench-node", authorized_keys=pub))
        host = backend.hosts["bench1"]
        with open(os.path.join(host.workdir, "ssh_host_ed25519_key.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        node = Node(id="bench1", address=address, port=host.port, username=os.environ.get("USER") or "root",
                    private_key=key, host_keys=[host_key])
        nbytes = write_logs(os.path.join(host.home, "logs"), total_mb, 8)
        mb = nbytes / 1e6
        copyback, rsync, push_t, push_r, compress = [], [], [], [], []
        masker = Masker(["e2e-admin-secret"])
        with RemoteHost(node).connect() as remote:
            for i in range(runs):
                dest = os.path.join(tmp, f"cb{i}")
                t = time.monotonic()
                collect_files(remote, ["logs/*.log"], dest, masker)
                copyback.append(mb / (time.monotonic() - t))
                t = time.monotonic()
                compress_large(dest)
                compress.append(mb / (time.monotonic() - t))
                dest = os.path.join(tmp, f"rs{i}")
                t = time.monotonic()
                pull_rsync(node, "logs", dest)
                rsync.append(mb / (time.monotonic() - t))
                shutil.rmtree(os.path.join(tmp, f"cb{i}"))
                src = os.path.join(tmp, f"rs{i}")
                t = time.monotonic()
                push_tar(remote, src, f"ws-tar{i}")
                push_t.append(mb / (time.monotonic() - t))
                t = time.monotonic()
                push_rsync(node, src, f"ws-rsync{i}")
                push_r.append(mb / (time.monotonic() - t))
                shutil.rmtree(src)
                remote.execute(f"rm -rf ws-tar{i} ws-rsync{i}")
        return {"copyback_mb_per_s": statistics.median(copyback), "rsync_mb_per_s": statistics.median(rsync),
                "workspace_tar_mb_per_s": statistics.median(push_t),
                "workspace_rsync_mb_per_s": statistics.median(push_r), "compress_mb_per_s": statistics.median(compress),
                "copyback_mb": round(mb, 1)}
    finally:
        backend.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and less data (< 50 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    runs, mb, xfer_runs = (8, 32, 5) if args.quick else (30, 128, 9)
    tmp = tempfile.mkdtemp(prefix="gk-bench-executor-")
    try:
        started = time.monotonic()
        latencies = start_latency(tmp, runs)
        xfer = transfers(tmp, mb, xfer_runs)
        elapsed = time.monotonic() - started
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
