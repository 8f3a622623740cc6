"""Run a local ZooKeeper from Debian's package: for tests, benchmarks, the demo and `zookeeper/run-zookeeper`.

One class, one JVM: it writes its own zoo.cfg into a data dir, starts the server on a loopback port, waits until
it answers `ruok`, and stops it by PID.  Optional TLS (client certificates) on a second, secure port.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.child_process import start_tied

log = logging.getLogger("gatekeeper.zk.server")

JAVA_DIR = Path("/usr/share/java")
# Debian's zookeeper.jar manifest lacks netty-codec/resolver: TLS handshakes fail without them on the classpath.
CLASSPATH_JARS = ("zookeeper.jar", "slf4j-simple.jar", "netty-codec.jar", "netty-resolver.jar")
FOUR_LETTER_WORDS = "srvr,mntr,stat,ruok,cons"


class ZooKeeperNotInstalled(RuntimeError):
    """Debian's zookeeper package (and java) are needed to run a local server."""


_given_lock = threading.Lock()
_given: set[int] = set()  # ports this process handed out: two callers that bind later never get the same one


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now, for the caller to bind soon after; never one this process gave before.

    Drawn at random from below the kernel's ephemeral range, not by binding port 0: a port the kernel hands out
    there may be taken as the local end of an outgoing connection (of any process) before the caller binds it,
    and then the server cannot start ("Address already in use"). Port 0's answer is the fallback, and the only
    way when the ephemeral range leaves too few ports below it."""
    low = _ephemeral_low()
    with _given_lock:
        if low >= 4096:
            for _ in range(50):
                port = random.randrange(max(1024, low - 20000), low)
                if port not in _given and _bindable(host, port):
                    _given.add(port)
                    return port
        for _ in range(50):
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _given:
                _given.add(port)
                return port
    raise OSError(f"no free TCP port on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (net.ipv4.ip_local_port_range; 32768 if unknown)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def four_letter_word(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send a ZooKeeper four-letter command (ruok, mntr, srvr, ...) and return the answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def mntr(host: str, port: int) -> dict[str, str]:
    """The server's `mntr` counters as a dict (zk_packets_received, zk_znode_count, ...)."""
    out = {}
    for line in four_letter_word(host, port, "mntr").splitlines():
        if "\t" in line:
            key, value = line.split("\t", 1)
            out[key] = value
    return out


@dataclass
class TLSFiles:
    """Key and trust stores for the server, and PEM files for clients (see gatekeeper.zk.tls)."""

    server_keystore: str
    server_truststore: str
    password: str
    ca_cert: str
    client_cert: str
    client_key: str


class LocalZooKeeper:
    """A standalone ZooKeeper server in `data_dir`, listening on 127.0.0.1:`port`.

    The JVM dies with the process that started it (even a SIGKILLed one) unless `outlive_parent` is set, as for
    `gatekeeper zookeeper start`, which leaves it running as a daemon. `force_sync=False` writes transactions
    without waiting for the disk: only for a server whose data is thrown away with its run."""

    def __init__(
        self,
        data_dir: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        tls: TLSFiles | None = None,
        secure_port: int | None = None,
        heap_mb: int = 256,
        outlive_parent: bool = False,
        force_sync: bool = True,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="gk-zk-"))
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.secure_port = (secure_port or free_port(host)) if tls else None
        self.heap_mb = heap_mb
        self.outlive_parent = outlive_parent
        self.force_sync = force_sync
        self.process: subprocess.Popen | None = None

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secure_hosts(self) -> str:
        return f"{self.host}:{self.secure_port}"

    def write_config(self) -> Path:
        conf_dir = self.data_dir / "conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        lines = [
            "tickTime=2000",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={self.data_dir / 'data'}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            f"4lw.commands.whitelist={FOUR_LETTER_WORDS}",
            "maxClientCnxns=0",
            # Tests restart the server and expire sessions: keep the bounds low so this is quick.
            "minSessionTimeout=2000",
            "maxSessionTimeout=30000",
            "snapCount=100000",
            "autopurge.purgeInterval=0",
            # A server whose data is thrown away with its run (tests, `gatekeeper check`, the demo) need not wait
            # for the disk on every write: on a slow or shared disk each fsync costs tens of milliseconds.
            f"forceSync={'yes' if self.force_sync else 'no'}",
        ]
        if self.tls:
            lines += [
                f"secureClientPort={self.secure_port}",
                f"secureClientPortAddress={self.host}",
                "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                f"ssl.keyStore.location={self.tls.server_keystore}",
                f"ssl.keyStore.password={self.tls.password}",
                f"ssl.trustStore.location={self.tls.server_truststore}",
                f"ssl.trustStore.password={self.tls.password}",
                "ssl.clientAuth=need",
            ]
        cfg = conf_dir / "zoo.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        (conf_dir / "log4j.properties").write_text("log4j.rootLogger=WARN, CONSOLE\n")
        return cfg

    def command(self) -> list[str]:
        java = shutil.which("java")
        jar = JAVA_DIR / "zookeeper.jar"
        if not java or not jar.exists():
            raise ZooKeeperNotInstalled(
                "ZooKeeper is not installed: run tools/install-deps (apt-get install zookeeper) first"
            )
        cfg = self.write_config()
        classpath = ":".join([str(cfg.parent)] + [str(JAVA_DIR / j) for j in CLASSPATH_JARS])
        return [
            java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            # The selector threads handle each request themselves rather than handing it to a worker pool: one
            # thread switch less per request, which on a small machine is about a quarter of the server's CPU
            # (measured: 0.33 -> 0.24 ms per request).
            "-Dzookeeper.nio.numWorkerThreads=0",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-cp",
            classpath,
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(cfg),
        ]

    def start(self, timeout: float = 60.0) -> LocalZooKeeper:
        """Start the JVM and wait until the server answers `ruok` with `imok`."""
        for port in (self.port, self.secure_port):
            # another server on the port would answer `ruok` for ours, which then exits unseen
            if port and not _port_free(self.host, port):
                raise RuntimeError(f"cannot start ZooKeeper on {self.host}:{port}: the port is in use by another "
                                   "process")
        cmd = self.command()
        logfile = open(self.data_dir / "zookeeper.log", "ab")
        # its own session: a Ctrl-C in the terminal reaches the command (which stops the server), not the JVM
        popen = subprocess.Popen if self.outlive_parent else start_tied
        try:
            self.process = popen(
                cmd, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            logfile.close()
        (self.data_dir / "zookeeper.pid").write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.data_dir / "zookeeper.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"ZooKeeper exited with {self.process.returncode} on start:\n{tail}")
            try:
                if four_letter_word(self.host, self.port, "ruok", timeout=1) == "imok" and self.process.poll() is None:
                    log.info("ZooKeeper up on %s (pid %d)", self.hosts, self.process.pid)
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ZooKeeper did not answer on {self.hosts} within {timeout:.0f}s")

    def stop(self, kill: bool = False) -> None:
        """Stop the server by PID (SIGTERM, then SIGKILL after 10 s); `kill=True` is an abrupt SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port and data (clients' sessions may survive)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def mntr(self) -> dict[str, str]:
        return mntr(self.host, self.port)

    def packets_received(self) -> int:
        """Requests the server has received so far: the benchmarks' ZooKeeper-operation counter."""
        return int(self.mntr()["zk_packets_received"])

    def __enter__(self) -> LocalZooKeeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port now; True when this process cannot tell (the address is not one of
    this network namespace's: a server started in another, as an ensemble's members are)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE
    return True
