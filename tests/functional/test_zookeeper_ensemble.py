"""docs/deploy.md's ZooKeeper ensemble, from etc/zookeeper/zoo.cfg and the gatekeeper-zookeeper unit (ports and
paths templated, as three hosts would be on one): three members that talk TLS to each other, clients only over
TLS with a certificate, gatekeeper's tree guarded by the digest credentials of secrets.env, and a majority that
keeps working while one member is down."""

from __future__ import annotations

import shlex
import signal
import socket
import ssl
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from gatekeeper.child_process import start_tied
from gatekeeper.zk.client import DigestAuth, TLSOptions, ZKClient
from gatekeeper.zk.server import four_letter_word, free_port
from gatekeeper.zk.tls import make_pki
from tests.helpers import wait_for

ETC = Path(__file__).resolve().parents[2] / "etc"


class Member:
    def __init__(self, number: int, root: Path) -> None:
        self.number = number
        self.conf = root / f"zk{number}" / "conf"
        self.data = root / f"zk{number}" / "data"
        self.conf.mkdir(parents=True)
        self.data.mkdir(parents=True)
        (self.data / "myid").write_text(f"{number}\n")
        self.client_port, self.tls_port, self.quorum, self.election = (free_port() for _ in range(4))
        self.proc: subprocess.Popen | None = None

    def mode(self) -> str:
        try:
            out = four_letter_word("127.0.0.1", self.client_port, "srvr", timeout=1)
        except OSError:
            return ""
        return next((line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Mode: ")), "")


class Ensemble:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pki = make_pki(root / "pki")
        self.members = [Member(n, root) for n in (1, 2, 3)]
        self.unit = next(line.split("=", 1)[1] for line in
                         (ETC / "systemd" / "gatekeeper-zookeeper.service").read_text().splitlines()
                         if line.startswith("ExecStart="))

    def template(self, text: str, m: Member) -> str:
        for other in self.members:
            text = text.replace(f"zk{other.number}.example.org:2888:3888",
                                f"127.0.0.1:{other.quorum}:{other.election}")
        for old, new in (("/etc/gatekeeper/zookeeper", str(m.conf)), ("/etc/gatekeeper/zk", str(self.root / "pki")),
                         ("/var/lib/zookeeper", str(m.data)), ("clientPort=2181", f"clientPort={m.client_port}"),
                         ("secureClientPort=2281", f"secureClientPort={m.tls_port}"),
                         ("CHANGE-ME", self.pki.password)):
            text = text.replace(old, new)
        return text

    def start(self, m: Member) -> None:
        (m.conf / "zoo.cfg").write_text(self.template((ETC / "zookeeper" / "zoo.cfg").read_text(), m))
        (m.conf / "log4j.properties").write_text((ETC / "zookeeper" / "log4j.properties").read_text())
        log = open(m.conf.parent / "zookeeper.log", "ab")
        m.proc = start_tied(shlex.split(self.template(self.unit, m)), stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def stop(self, m: Member) -> None:
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGTERM)
            try:
                m.proc.wait(30)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)

    @property
    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{m.tls_port}" for m in self.members)

    def tls(self) -> TLSOptions:
        return TLSOptions(self.pki.ca_cert, self.pki.client_cert, self.pki.client_key)


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[Ensemble]:
    e = Ensemble(tmp_path)
    try:
        yield e
    finally:
        for m in e.members:  # all at once: a graceful stop takes a while
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
        for m in e.members:
            e.stop(m)


def zookeeper_answers_over_tls(port: int, ca: str, client_cert: tuple[str, str] | None) -> bool:
    """Whether a ZooKeeper session request sent over TLS (with `client_cert`, or none) gets the server's answer,
    rather than a refused handshake or a closed connection."""
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False  # the members' certificate names the hosts of a real deployment
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    # ConnectRequest: protocol version, last zxid seen, session timeout, session id, password, read-only
    body = struct.pack(">iqiqi16s?", 0, 0, 30000, 0, 16, bytes(16), False)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        try:
            with context.wrap_socket(raw) as conn:
                conn.sendall(struct.pack(">i", len(body)) + body)
                return len(conn.recv(4)) == 4
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return False


def secrets() -> DigestAuth:
    env = dict(line.split("=", 1) for line in (ETC / "gatekeeper" / "secrets.env.example").read_text().splitlines()
               if line and not line.startswith("#"))
    return DigestAuth(env["GATEKEEPER_ZOOKEEPER_AUTH_USERNAME"], env["GATEKEEPER_ZOOKEEPER_AUTH_PASSWORD"])


def test_three_member_ensemble_with_tls_and_auth_survives_one_member_down(ensemble: Ensemble) -> None:
    for m in ensemble.members:
        ensemble.start(m)
    modes = lambda: sorted(m.mode() for m in ensemble.members)  # noqa: E731
    wait_for(lambda: modes() == ["follower", "follower", "leader"], 120, "a leader and two followers")

    zk = ZKClient(ensemble.hosts, chroot="/gatekeeper", auth=secrets(), tls=ensemble.tls()).start()
    try:
        zk.client.create("/deploy-check", b"written over TLS")
        # Only gatekeeper's account may read its tree, even with a valid client certificate.
        tls = ensemble.tls()
        stranger = KazooClient(hosts=ensemble.hosts, use_ssl=True, ca=tls.ca, certfile=tls.cert, keyfile=tls.key,
                               verify_certs=True)
        stranger.start(timeout=30)
        try:
            with pytest.raises(NoAuthError):
                stranger.get("/gatekeeper/deploy-check")
        finally:
            stranger.stop()
            stranger.close()
        # Without a client certificate, the TLS port refuses the client; with one, the same request is answered.
        member = ensemble.members[0]
        assert zookeeper_answers_over_tls(member.tls_port, tls.ca, (tls.cert, tls.key))
        assert not zookeeper_answers_over_tls(member.tls_port, tls.ca, None)

        # The leader goes down: the other two elect a new one and the tree stays writable.
        leader = next(m for m in ensemble.members if m.mode() == "leader")
        ensemble.stop(leader)
        rest = [m for m in ensemble.members if m is not leader]
        wait_for(lambda: sorted(m.mode() for m in rest) == ["follower", "leader"], 120, "a new leader")
        wait_for(lambda: zk.client.connected, 60, "the client to reconnect")
        zk.client.set("/deploy-check", b"written with one member down")
        ensemble.start(leader)
        wait_for(lambda: leader.mode() == "follower", 120, "the old leader to rejoin as a follower")
        assert zk.client.get("/deploy-check")[0] == b"written with one member down"
    finally:
        zk.stop()
