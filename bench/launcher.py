"""How fast the launcher hands out nodes, how it copes with a burst, and what a request costs in ZooKeeper.

Runs its own ZooKeeper, the OpenStack simulator in its own process (`gatekeeper cloud-sim`, two clouds; servers
are real sshd hosts in network namespaces, or on loopback without root; at the lowest CPU priority, as the clouds
are other machines in production) and one launcher, then removes everything.
The timed phases (hand-out, burst, sustained) run the launcher as production does, `gatekeeper launcher` in its own
process; the two fault phases count boots and read the launcher's own counters, so they run it in this process.

    handoff_p50_ms / _p99_ms   request -> fulfilled from a ready pool (two providers, min-ready kept), one at a
                               time (200 requests; --quick 60)
    boot_s                     T, the simulated boot time used for the burst (a server turns ACTIVE T after its
                               create, or once its host is up if that takes longer)
    burst_100_s                100 one-node requests at once (from 10 threads) against an empty pool (max-servers
                               60 x 2): first request to last fulfilment. The clouds hold 100 spare hosts (a
                               namespace with a listening sshd each; one pool for both clouds, however the launcher
                               splits its boots), started before the clock starts: a boot only binds one to its
                               server, so the servers really turn ACTIVE at T. Why: in production a cloud's hosts
                               start on other machines, while here starting 100 of them (about 2 s of work for the
                               simulator alone at T = 1) would share the launcher's two cores
    burst_100_cold_s           the same burst with every host started by its boot (no spares), as burst_100_s was
                               measured before: reported beside it so that what the spares take out stays in view
    sustained_requests_per_s   8 consumers looping request -> fulfilled -> lock -> release against 16 static hosts
                               (real sshd, pinned host keys: no boot in the loop) for D seconds
    zk_ops_per_request         ZooKeeper requests (server's zk_packets_received) per one-node request lifecycle in
                               the ready-pool run: request, hand-out, lock, in-use, release, delete, replacement
                               launch; the consumer and the launcher, pings included (the harness watches the
                               ready index on a connection of its own, whose requests are left out)
    failing_provider_boots_per_min   one of two providers fails every boot for F seconds (60; --quick 15) while
                               2 consumers loop and min-ready is 2: boots the failing cloud saw, per minute
    failing_provider_served_pct      share of the requests of that phase that were fulfilled
    stale_image_boot_failures  a provider's built image is deleted in the cloud, then 5 requests: boots that
                               failed for the missing image before a new upload served them

Before the first phase, ZooKeeper serves 16,000 requests of a client of its own, not counted (its JVM was just
started; in production it has long compiled its request path: see Bench.warm_up_zookeeper).

Every phase checks that the work it timed was done (each request fulfilled, a node locked for it) and the
benchmark exits non-zero, saying why, when it was not.

    python bench/launcher.py [--quick]

A summary for people, then the figures as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kazoo.recipe.watchers import ChildrenWatch  # noqa: E402

from gatekeeper.child_process import start_tied
from gatekeeper.config.layout import parse_layout  # noqa: E402
from gatekeeper.launcher import model  # noqa: E402
from gatekeeper.launcher.client import NodeRequestClient  # noqa: E402
from gatekeeper.launcher.launcher import Launcher  # noqa: E402
from gatekeeper.sim.openstack.hosts import HostSpec, default_backend  # noqa: E402
from gatekeeper.zk import paths  # noqa: E402
from gatekeeper.zk.client import ZKClient  # noqa: E402
from gatekeeper.zk.nodes import NodeStore  # noqa: E402
from gatekeeper.zk.server import LocalZooKeeper, four_letter_word  # noqa: E402


def openstack_provider(name: str, cloud: str, max_servers: int) -> str:
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n      max-servers: {max_servers}\n"
            "      boot-timeout: 60\n      pools:\n        - name: main\n"
            "          labels: [{name: debian, image: deb, flavor: small}]\n"
            "      images: [{name: deb, base-image: debian-12}]\n")


def prepared_provider(name: str, cloud: str, max_servers: int) -> str:
    return (f"    - name: {name}\n      driver: openstack\n      cloud: {cloud}\n      max-servers: {max_servers}\n"
            "      boot-timeout: 60\n      pools:\n        - name: main\n"
            "          labels: [{name: debian, image: deb, flavor: small}]\n"
            "      images: [{name: deb, base-image: debian-12, prepare: 'echo prepared > $HOME/prepared'}]\n")


class BenchFailure(RuntimeError):
    """The work a phase timed was not done: the figures would be meaningless."""


def check_fulfilled(phase: str, req, nodes=None) -> None:
    if req is None or req.state != model.FULFILLED:
        raise BenchFailure(f"{phase}: request {getattr(req, 'id', '?')} was not fulfilled "
                           f"({getattr(req, 'state', 'gone')}: {getattr(req, 'reason', '')})")
    if nodes is not None and len(nodes) != len(req.labels):
        raise BenchFailure(f"{phase}: request {req.id} was fulfilled but {len(nodes)} of {len(req.labels)} "
                           "nodes could be locked")


def nodepool_text(min_ready: int, providers: str, label: str = "debian") -> str:
    return f"nodepool:\n  labels:\n    - {{name: {label}, min-ready: {min_ready}}}\n  providers:\n{providers}"


def nodepool(min_ready: int, providers: str, label: str = "debian"):
    return parse_layout({"bench.yaml": nodepool_text(min_ready, providers, label)}).nodepool


# The hand-out, burst and sustained phases time the launcher as it runs in production: `gatekeeper launcher`, its
# own process (in the bench's process its threads would share one interpreter lock with the consumers it serves).
# --self-check starts it with its hand-out broken on purpose.
BROKEN_SERVE = """
from gatekeeper.launcher import model
from gatekeeper.launcher.launcher import Launcher
def broken_serve(self, rid):
    req, version = self.requests[rid]
    req.state, req.reason = model.REQUEST_FAILED, "broken on purpose by --self-check"
    self.store.write_request(req, version)
Launcher._serve = broken_serve
"""


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LauncherProcess:
    """`gatekeeper launcher` in its own process, on the bench's ZooKeeper (`chroot`) and clouds."""

    def __init__(self, bench: Bench, chroot: str, nodepool_text: str) -> None:
        tmp = tempfile.mkdtemp(dir=bench.tmp, prefix="launcher-")
        layout = os.path.join(tmp, "layout.yaml")
        with open(layout, "w") as f:
            f.write(nodepool_text)
        config = os.path.join(tmp, "gatekeeper.yaml")
        with open(config, "w") as f:
            json.dump({"zookeeper": {"hosts": bench.zk_server.hosts, "chroot": chroot, "timeout": 10},
                       "launcher": {"ssh-key": bench.key, "clouds-yaml": bench.clouds_yaml}}, f)
        command = ["-m", "gatekeeper.cmd"]
        if bench.broken:
            command = ["-c", BROKEN_SERVE + "import sys\nfrom gatekeeper.cmd import main\nsys.exit(main(sys.argv[1:]))"]
        self.log = os.path.join(tmp, "launcher.log")
        with open(self.log, "w") as log:
            self.proc = start_tied([sys.executable, *command, "-q", "launcher", "-c", config, "-l", layout],
                                   stdout=subprocess.DEVNULL, stderr=log)

    def stop(self) -> None:
        stop_process(self.proc, 30)

    def check_alive(self, phase: str) -> None:
        if self.proc.poll() is not None:
            with open(self.log) as f:
                tail = f.read()[-2000:]
            raise BenchFailure(f"{phase}: the launcher process ended ({self.proc.returncode}):\n{tail}")


class Bench:
    def __init__(self, quick: bool, broken: bool = False) -> None:
        self.quick = quick
        self.broken = broken  # --self-check: the launcher processes' hand-out fails every request
        self.tmp = tempfile.mkdtemp(prefix="gk-bench-launcher-")
        self.key = os.path.join(self.tmp, "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        self.zk_server = LocalZooKeeper(data_dir=os.path.join(self.tmp, "zk"))
        self.zk_server.start()
        self.clouds_yaml = os.path.join(self.tmp, "clouds.yaml")
        # The clouds run at the lowest CPU priority, their hosts too: in production they are other machines, and
        # here a host's start-up (a network namespace and an sshd) would take the CPU from the launcher, its
        # consumers and ZooKeeper whose latency is measured. They still get every cycle those leave free.
        # SCHED_IDLE where util-linux's chrt is found, else nice 19: a nice-19 process that holds a core still
        # delays a woken process of normal priority for a while; an idle-class one yields to it at once.
        lowest = ["chrt", "--idle", "0"] if shutil.which("chrt") else ["nice", "-n", "19"]
        self.sim = start_tied(
            [*lowest, sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--cloud", "east", "--cloud",
             "west", "--max-instances", "200", "--clouds-yaml", self.clouds_yaml,
             "--work-dir", os.path.join(self.tmp, "sim")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.sim_urls = json.loads(self.sim.stdout.readline())["clouds"]
        self.hosts = default_backend(os.path.join(self.tmp, "static"))
        self.clients: list[ZKClient] = []
        self.launchers: list[Launcher] = []
        self.processes: list[LauncherProcess] = []

    def zk(self, chroot: str) -> ZKClient:
        client = ZKClient(self.zk_server.hosts, chroot=chroot, timeout=10).start()
        self.clients.append(client)
        return client

    def launcher(self, chroot: str, pool, **kw) -> Launcher:
        launcher = Launcher(self.zk(chroot), pool, ssh_key=self.key, clouds_yaml=self.clouds_yaml,
                            poll_interval=0.05, delete_verify_timeout=10, **kw)
        self.launchers.append(launcher)
        return launcher.start()

    def launcher_process(self, chroot: str, text: str) -> LauncherProcess:
        process = LauncherProcess(self, chroot, text)
        self.processes.append(process)
        return process

    def stop_launchers(self) -> None:
        for launcher in self.launchers:
            launcher.stop()
        self.launchers.clear()
        for process in self.processes:
            process.stop()
        self.processes.clear()

    def client_packets(self, client: ZKClient) -> int:
        """Requests the server received on `client`'s connection (the harness's own reads, to leave out)."""
        session = f"sid=0x{client.client.client_id[0]:x}"
        for line in four_letter_word(self.zk_server.host, self.zk_server.port, "cons").splitlines():
            if session in line:
                return int(line.split("recved=", 1)[1].split(",", 1)[0])
        raise BenchFailure(f"the harness's ZooKeeper session {session} is not in the server's connection list")

    def close(self) -> None:
        self.stop_launchers()
        for client in self.clients:
            client.stop()
        self.hosts.close()
        stop_process(self.sim, 60)
        self.zk_server.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wipe(self) -> None:
        """Delete every server the simulated clouds have (between phases), and wait until they are gone. Raw API
        requests: the SDK's resource objects would cost seconds of CPU for a hundred servers."""
        import openstack
        from openstack.config import loader

        for cloud in self.sim_urls:
            conn = openstack.connection.Connection(
                config=loader.OpenStackConfig(config_files=[self.clouds_yaml]).get_one(cloud=cloud))

            def server_ids(conn=conn) -> list[str]:
                return [s["id"] for s in conn.compute.get("/servers").json().get("servers", [])]
            for server_id in server_ids():
                conn.compute.delete(f"/servers/{server_id}")
            self.wait(lambda f=server_ids: not f(), 60, f"cloud {cloud} emptied")
            conn.close()

    def set_faults(self, cloud: str, **faults) -> None:
        req = urllib.request.Request(self.sim_urls[cloud] + "/sim/faults", data=json.dumps(faults).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req).read()

    def spare_hosts(self, count: int | None = None) -> int:
        """How many spare hosts the clouds have ready (one pool, shared by the simulator's clouds); with `count`,
        have them hold that many from now on."""
        # a POST when there is data; started once (a spare a boot takes is not replaced: none starts in the burst)
        data = None if count is None else json.dumps({"count": count, "refill": False}).encode()
        with urllib.request.urlopen(next(iter(self.sim_urls.values())) + "/sim/spare-hosts", data) as resp:
            return json.loads(resp.read())["ready"]

    def servers_created(self, cloud: str) -> int:
        with urllib.request.urlopen(self.sim_urls[cloud] + "/sim/state") as resp:
            return json.loads(resp.read())["servers_created"]

    @staticmethod
    def wait(cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"bench: timed out waiting for {what}")
            time.sleep(0.005)

    def warm_up_zookeeper(self, rounds: int = 20, batch: int = 200) -> None:
        """Have ZooKeeper serve 16,000 requests (creates, watched reads, versioned writes in transactions, deletes)
        on a chroot of its own, on a session closed before the first phase. Why: a production ZooKeeper has run for
        days, while this one's JVM was started a moment ago and interprets its request path until it compiles it;
        measured cold, the hand-out's p50 was about 2-3 ms higher (a ZooKeeper write took twice as long), which
        is the JVM's start-up and not the launcher's."""
        warm = ZKClient(self.zk_server.hosts, chroot="/bench-warm-up", timeout=10).start()
        try:
            kz = warm.client
            kz.ensure_path("/w")
            for r in range(rounds):
                names = [f"/w/n{r}-{i}" for i in range(batch)]
                for answers in ([kz.create_async(n, b"x" * 400) for n in names],
                                [kz.get_async(n, watch=lambda event: None) for n in names],
                                [_versioned_write(kz, n) for n in names],
                                [kz.delete_async(n) for n in names]):
                    for answer in answers:
                        answer.get()
        finally:
            warm.stop()

    # (a) hand-out from a ready pool, and ZooKeeper operations per request ---------------------------------------
    def handoff(self, count: int) -> tuple[list[float], float]:
        chroot = f"/bench-{uuid.uuid4().hex[:8]}"
        min_ready = 8
        process = self.launcher_process(chroot, nodepool_text(min_ready, openstack_provider("east", "east", 20)
                                                              + openstack_provider("west", "west", 20)))
        # the harness watches the ready index on a connection of its own, left out of the operation count
        harness = self.zk(chroot)
        store = NodeStore(harness)
        store.ensure_paths(["debian"])
        ready_now = [0]
        changed = threading.Condition()

        def on_ready(children: list[str]) -> None:
            with changed:
                ready_now[0] = len(children)
                changed.notify_all()

        ChildrenWatch(harness.client, paths.ready_node("debian"), on_ready)

        def wait_ready(n: int, timeout: float, what: str) -> None:
            with changed:
                if not changed.wait_for(lambda: ready_now[0] >= n or process.proc.poll() is not None, timeout):
                    raise RuntimeError(f"bench: timed out waiting for {what}")
            process.check_alive("hand-out")
        wait_ready(min_ready, 60, "min-ready")
        client = NodeRequestClient(self.zk(chroot), "bench-handoff")
        latencies = []
        packets = self.zk_server.packets_received() - self.client_packets(harness)
        for _ in range(count):
            wait_ready(2, 30, "a ready node")
            t0 = time.perf_counter()
            req = client.wait(client.request(["debian"]), 30)
            latencies.append((time.perf_counter() - t0) * 1000)
            check_fulfilled("hand-out", req)
            nodes = client.lock_nodes(req)
            check_fulfilled("hand-out", req, nodes)
            for node in nodes:
                client.release(node)
        # let the last deletes and replacements finish, so each request's whole lifecycle is counted
        wait_ready(min_ready, 60, "min-ready again")
        self.wait(lambda: all(n.state == model.READY for n, _ in store.load_nodes().values()), 60, "pool settled")
        ops = (self.zk_server.packets_received() - self.client_packets(harness) - packets) / count
        self.stop_launchers()
        return latencies, ops

    # (b) 100 requests against an empty pool ---------------------------------------------------------------------
    def burst(self, boot_s: float, spares: int = 0, count: int = 100) -> float:
        """`spares`: hosts the clouds hold started before the clock starts (0: each boot starts its host). The
        servers are left in the clouds: the next burst's wipe and launcher start run while its spares start."""
        chroot = f"/bench-{uuid.uuid4().hex[:8]}"
        self.spare_hosts(spares)
        self.wipe()
        for cloud in ("east", "west"):
            self.set_faults(cloud, boot_delay=boot_s)
        process = self.launcher_process(chroot, nodepool_text(0, openstack_provider("east", "east", 60)
                                                              + openstack_provider("west", "west", 60)))
        zk = self.zk(chroot)
        NodeStore(zk).ensure_paths(["debian"])
        self.wait(lambda: process.check_alive("burst") or len(zk.client.get_children(paths.LAUNCHERS)) == 2, 30,
                  "providers live")
        self.wait(lambda: self.spare_hosts() >= spares, 120, f"{spares} spare hosts")
        client = NodeRequestClient(zk, "bench-burst")
        done = []
        all_done = threading.Event()
        lock = threading.Lock()

        def fulfilled(req) -> None:
            with lock:
                done.append((time.perf_counter(), req))
                if len(done) == count:
                    all_done.set()
        def submit(_) -> None:
            client.watch(client.request(["debian"]), fulfilled)
        # at once: from 10 threads, as 10 consumers (or one submitting without waiting for each answer) would
        with ThreadPoolExecutor(max_workers=10) as submitters:
            t0 = time.perf_counter()
            list(submitters.map(submit, range(count)))
        if not all_done.wait(120):
            raise RuntimeError(f"bench: burst: only {len(done)} of {count} requests fulfilled")
        elapsed = max(t for t, _ in done) - t0
        failed = [r for _, r in done if r is None or r.state != model.FULFILLED]
        if failed:
            raise RuntimeError(f"bench: burst: {len(failed)} requests failed: {failed[0] and failed[0].reason}")
        for cloud in ("east", "west"):
            self.set_faults(cloud, boot_delay=0)
        self.spare_hosts(0)
        self.stop_launchers()
        return elapsed

    # (c) sustained rate against static hosts --------------------------------------------------------------------
    def sustained(self, seconds: float, hosts: int = 16, consumers: int = 8) -> tuple[float, float]:
        backend = self.hosts
        pubkey = open(self.key + ".pub").read()
        lines = []
        for i in range(hosts):
            spec = HostSpec(f"static-{i}", f"static-{i}", pubkey)
            address = backend.boot(spec)
            host_key = " ".join(open(os.path.join(backend.hosts[spec.server_id].workdir,
                                                  "ssh_host_ed25519_key.pub")).read().split()[:2])
            lines.append(f"        - {{name: static-{i}, address: '{address}', port: {backend.port}, "
                         f"labels: [static], host-key: '{host_key}'}}\n")
        provider = "    - name: rack\n      driver: static\n      hosts:\n" + "".join(lines)
        chroot = f"/bench-{uuid.uuid4().hex[:8]}"
        process = self.launcher_process(chroot, nodepool_text(0, provider, label="static"))
        zk = self.zk(chroot)
        store = NodeStore(zk)
        store.ensure_paths(["static"])
        self.wait(lambda: process.check_alive("sustained") or len(store.ready_entries("static")) == hosts, 30,
                  "static hosts ready")
        stop = threading.Event()
        counts = [0] * consumers
        errors: list[str] = []

        def consume(i: int) -> None:
            client = NodeRequestClient(zk, f"bench-consumer-{i}")
            try:
                while not stop.is_set():
                    req = client.wait(client.request(["static"]), 30)
                    check_fulfilled("sustained", req)
                    nodes = client.lock_nodes(req)
                    check_fulfilled("sustained", req, nodes)
                    for node in nodes:
                        client.release(node)
                    counts[i] += 1
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
                stop.set()

        packets = self.zk_server.packets_received()
        elapsed = run_consumers(consume, consumers, seconds, stop)
        total = sum(counts)
        ops = (self.zk_server.packets_received() - packets) / max(1, total)
        self.stop_launchers()
        for i in range(hosts):
            backend.destroy(f"static-{i}")
        if errors:
            raise BenchFailure(f"sustained: a consumer stopped: {errors[0]}")
        return total / elapsed, ops

    # (d) one of two providers fails every boot ------------------------------------------------------------------
    def failing_provider(self, seconds: float, consumers: int = 2) -> tuple[float, float]:
        chroot = f"/bench-{uuid.uuid4().hex[:8]}"
        self.wipe()
        self.set_faults("east", boot_errors=-1, boot_error_message="No valid host was found.")
        before = self.servers_created("east")
        # the failing provider has the most room: without backing off it would be chosen for every launch
        self.launcher(chroot, nodepool(2, openstack_provider("east", "east", 40)
                                       + openstack_provider("west", "west", 10)))
        zk = self.zk(chroot)
        self.wait(lambda: len(zk.client.get_children("/nodepool/launchers")) == 2, 30, "providers live")
        stop = threading.Event()
        submitted, served = [0] * consumers, [0] * consumers
        problems: list[str] = []

        def consume(i: int) -> None:
            client = NodeRequestClient(zk, f"bench-failing-{i}")
            while not stop.is_set():
                submitted[i] += 1
                try:
                    req = client.wait(client.request(["debian"]), 30)
                    nodes = client.lock_nodes(req) if req.state == model.FULFILLED else []
                except Exception as e:
                    problems.append(f"{type(e).__name__}: {e}")
                    continue
                if req.state == model.FULFILLED and len(nodes) == 1:
                    served[i] += 1
                else:
                    problems.append(f"request {req.id}: {req.state} {req.reason}")
                for node in nodes:
                    client.release(node)

        elapsed = run_consumers(consume, consumers, seconds, stop)
        boots = self.servers_created("east") - before
        self.stop_launchers()
        self.set_faults("east", boot_errors=0)
        self.wipe()
        if not sum(submitted):
            raise BenchFailure("failing provider: no request was made")
        if problems:
            print(f"  failing provider: {len(problems)} requests not served, first: {problems[0]}", file=sys.stderr)
        return boots * 60.0 / elapsed, 100.0 * sum(served) / sum(submitted)

    # (e) a provider's built image vanishes in the cloud ---------------------------------------------------------
    def stale_image(self, count: int = 5) -> int:
        import openstack
        from openstack.config import loader

        chroot = f"/bench-{uuid.uuid4().hex[:8]}"
        launcher = self.launcher(chroot, nodepool(0, prepared_provider("east", "east", 10)),
                                 image_check_interval=600)
        zk = self.zk(chroot)
        store = NodeStore(zk)

        def built() -> list:
            return [b for b in store.image_builds("deb", "east") if b.state == "ready"]
        self.wait(built, 120, "the image built")
        ready = built()
        conn = openstack.connection.Connection(
            config=loader.OpenStackConfig(config_files=[self.clouds_yaml]).get_one(cloud="east"))
        conn.image.delete_image(ready[0].external_id)
        conn.close()
        client = NodeRequestClient(zk, "bench-stale-image")
        rids = [client.request(["debian"]) for _ in range(count)]
        for rid in rids:
            req = client.wait(rid, 180)
            check_fulfilled("stale image", req)
            nodes = client.lock_nodes(req)
            check_fulfilled("stale image", req, nodes)
            if any(n.image_build == ready[0].id for n in nodes):
                raise BenchFailure("stale image: a node was booted from the vanished image")
            for node in nodes:
                client.release(node)
        failures = launcher.managers["east"].image_boot_failures
        self.stop_launchers()
        self.wipe()
        return failures


def _versioned_write(kz, path: str):
    tx = kz.transaction()
    tx.set_data(path, b"y" * 400, version=0)
    return tx.commit_async()


def run_consumers(consume, consumers: int, seconds: float, stop: threading.Event) -> float:
    """Run `consume(i)` on `consumers` threads for `seconds`, then stop them; the seconds it took in all."""
    threads = [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def self_check() -> int:
    """Every request is failed by a broken launcher: the hand-out and sustained phases must refuse to report
    figures (the burst, failing-provider and stale-image phases check each request the same way)."""
    bench = Bench(quick=True, broken=True)
    caught = []
    try:
        for phase, run in (("hand-out", lambda: bench.handoff(5)), ("sustained", lambda: bench.sustained(1.0))):
            try:
                run()
            except BenchFailure as e:
                caught.append(phase)
                print(f"self-check: with hand-out broken, the {phase} phase fails: {e}")
                bench.stop_launchers()
    finally:
        bench.close()
    if caught == ["hand-out", "sustained"]:
        print("self-check passed")
        return 0
    print(f"self-check FAILED: hand-out was broken and {2 - len(caught)} phase(s) still produced figures",
          file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (finishes in well under a minute)")
    parser.add_argument("--self-check", action="store_true",
                        help="break the launcher's hand-out on purpose and show that the benchmark fails (exit 1)")
    args = parser.parse_args()
    if args.self_check:
        return self_check()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # a keyscan retried on a booting host is normal
    bench = Bench(args.quick)
    started = time.monotonic()
    phases: dict[str, float] = {}

    def timed(name: str, run):
        t0 = time.monotonic()
        try:
            return run()
        finally:
            phases[name] = time.monotonic() - t0
    try:
        timed("ZooKeeper warm-up", bench.warm_up_zookeeper)
        latencies, zk_ops = timed("hand-out", lambda: bench.handoff(60 if args.quick else 200))
        boot_s = 1.0 if args.quick else 2.0
        burst_cold_s = timed("burst, cold hosts", lambda: bench.burst(boot_s))
        burst_s = timed("burst", lambda: bench.burst(boot_s, spares=100))
        timed("burst cleanup", bench.wipe)
        rate, zk_ops_static = timed("sustained", lambda: bench.sustained(4.0 if args.quick else 10.0))
        fault_s = 15.0 if args.quick else 60.0
        failing_boots, served_pct = timed("failing provider", lambda: bench.failing_provider(fault_s))
        stale_failures = timed("stale image", bench.stale_image)
    except (BenchFailure, RuntimeError, TimeoutError) as e:
        print(f"bench/launcher.py: the measured work was not done: {e}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    result = {
        "handoff_p50_ms": round(statistics.median(latencies), 2),
        "handoff_p99_ms": round(percentile(latencies, 99), 2),
        "boot_s": boot_s,
        "burst_100_s": round(burst_s, 2),
        "burst_100_cold_s": round(burst_cold_s, 2),
        "sustained_requests_per_s": round(rate, 1),
        "zk_ops_per_request": round(zk_ops, 1),
        "failing_provider_boots_per_min": round(failing_boots, 1),
        "failing_provider_served_pct": round(served_pct, 1),
        "stale_image_boot_failures": stale_failures,
    }
    backend = "netns" if os.geteuid() == 0 else "loopback"
    print(f"launcher benchmark ({'quick' if args.quick else 'full'}, {backend} hosts, "
          f"{time.monotonic() - started:.0f} s)")
    print(f"  hand-out from a ready pool (2 providers, {len(latencies)} requests): "
          f"p50 {result['handoff_p50_ms']} ms, p99 {result['handoff_p99_ms']} ms   (target p50 <= 10 ms)")
    print(f"  100 requests, empty pool, boot time T={boot_s} s: all fulfilled in {result['burst_100_s']} s with "
          f"100 spare hosts (target <= T + 1.5 s), {result['burst_100_cold_s']} s with hosts started by the boots")
    print(f"  sustained: {result['sustained_requests_per_s']} requests/s, 8 consumers, 16 static hosts   "
          f"(target >= 300/s)")
    print(f"  ZooKeeper operations per one-node request: {result['zk_ops_per_request']} with a replacement "
          f"launch each, {zk_ops_static:.1f} on static hosts under load   (target <= 12)")
    print(f"  one of two providers failing every boot for {fault_s:.0f} s: "
          f"{result['failing_provider_boots_per_min']} boots/min on it (target <= 30), "
          f"{result['failing_provider_served_pct']}% of requests served (target 100)")
    print(f"  a built image deleted in the cloud: {stale_failures} boots failed for it (target <= 5)")
    print("  phases (s, with their setup): " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
