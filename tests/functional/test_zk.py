"""The ZooKeeper layer against a real server: records, sharding, locks, queues, registration, outages."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import pytest
from kazoo.exceptions import ConnectionLoss, LockTimeout, NoAuthError
from kazoo.retry import RetryFailedError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ConnectionEvent, DigestAuth, ZKClient, through_outages
from gatekeeper.zk.components import Component, list_components
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.record import Record, RecordTooLarge
from gatekeeper.zk.server import LocalZooKeeper
from gatekeeper.zk.sharding import read_sharded, write_sharded
from tests.helpers import CuttableLink, wait_for


@dataclass
class Sample(Record):
    VERSION = 2
    name: str = ""
    count: int = 0
    tags: list = field(default_factory=list)

    @classmethod
    def upgrade(cls, data, version):
        if version == 1:
            data["count"] = int(data.pop("num", 0))
        return data


def test_record_round_trips_through_zookeeper(zk):
    record = Sample(name="nova 1,1 ✓", count=3, tags=["a", "b"])
    zk.client.create("/rec", record.to_bytes())
    raw, _ = zk.client.get("/rec")
    assert Sample.from_bytes(raw) == record
    assert raw.startswith(b'{"name":"nova 1,1 \xe2\x9c\x93","count":3,')  # compact JSON, UTF-8 kept
    assert raw.endswith(b',"_v":2}')


def test_older_record_version_is_upgraded_and_unknown_keys_ignored():
    old = {"_v": 1, "name": "x", "num": "7", "added_later": True}
    assert Sample.from_dict(old) == Sample(name="x", count=7)


def test_oversized_record_is_refused_with_a_clear_error():
    with pytest.raises(RecordTooLarge, match="Sample is .* bytes, more than one znode holds"):
        Sample(name="x" * (1024 * 1024)).to_bytes()


def test_large_data_is_sharded_and_replaced_atomically(zk):
    big = os.urandom(3 * 1024 * 1024)  # incompressible: needs several shards
    write_sharded(zk.client, "/big", big)
    assert read_sharded(zk.client, "/big") == big
    write_sharded(zk.client, "/big", b"small")
    assert read_sharded(zk.client, "/big") == b"small"
    assert len(zk.client.get_children("/big")) == 1  # the old generation is gone
    assert read_sharded(zk.client, "/nothing") is None


def test_racing_writers_never_leave_sharded_data_pointing_at_a_removed_generation(zk, zk_factory):
    """Two schedulers starting at once both publish the layout: a writer whose generation another writer removed
    must not point the data at it (every later read failed, and both schedulers died at start)."""
    other = zk_factory()
    write_sharded(zk.client, "/race", b"v0")

    class SwapsLate:
        """Writer A's client: just before A swaps its generation in, writer B writes a whole one of its own."""

        def __init__(self, client):
            self.client, self.raced = client, False

        def __getattr__(self, name):
            return getattr(self.client, name)

        def set(self, path, value, version=-1):
            if not self.raced:
                self.raced = True
                write_sharded(other.client, "/race", b"from B")
            return self.client.set(path, value, version=version)

    write_sharded(SwapsLate(zk.client), "/race", b"from A")
    assert read_sharded(other.client, "/race") == b"from A"  # A wrote again after losing the race: the last write
    assert [c for c in zk.client.get_children("/race") if c.startswith("g-")] == [zk.client.get("/race")[0].decode()]


def test_lock_excludes_across_two_clients(zk, zk_factory):
    other = zk_factory()
    first = zk.client.Lock(paths.lock("pipeline", "gate"), "scheduler-1")
    second = other.client.Lock(paths.lock("pipeline", "gate"), "scheduler-2")
    assert first.acquire(timeout=5)
    with pytest.raises(LockTimeout):
        second.acquire(timeout=0.5)
    first.release()
    assert second.acquire(timeout=5)
    second.release()


def test_lock_held_by_a_dead_session_is_freed(zk, zk_factory):
    doomed = zk_factory()
    assert doomed.client.Lock(paths.lock("node", "0001"), "dead").acquire(timeout=5)
    doomed.stop()  # closing the session removes its ephemeral lock node
    assert zk.client.Lock(paths.lock("node", "0001"), "alive").acquire(timeout=5)


def test_event_queue_keeps_order_until_acked(zk, zk_factory):
    producer = EventQueue(zk, paths.event_queue("gerrit"))
    ids = [producer.put({"n": i}) for i in range(5)] + producer.put_many([{"n": 5}, {"n": 6}])
    consumer = EventQueue(zk_factory(), paths.event_queue("gerrit"))
    assert [e["n"] for _, e in consumer.list()] == list(range(7))
    consumer.ack(ids[0])
    consumer.ack(ids[0])  # acking twice is harmless
    assert [e["n"] for _, e in consumer.list()] == list(range(1, 7))
    seen = []
    consumer.watch(lambda children: seen.append(len(children)))
    producer.put({"n": 7})
    wait_for(lambda: seen and seen[-1] == 7, what="watch to see the new event")


def test_components_register_and_list(zk, zk_factory):
    scheduler = Component(zk, "scheduler")
    scheduler.register()
    launcher = Component(zk_factory(), "launcher", extra={"providers": ["cloud-a"]})
    launcher.register(state="paused")
    found = list_components(zk)
    assert [(c.kind, c.state) for c in found] == [("launcher", "paused"), ("scheduler", "running")]
    assert found[0].extra == {"providers": ["cloud-a"]}
    scheduler.set_state("stopped")
    assert list_components(zk, "scheduler")[0].state == "stopped"
    launcher.zk.stop()  # a service that dies disappears from the registry
    wait_for(lambda: len(list_components(zk, "launcher")) == 0, what="ephemeral registration to vanish")


def test_a_registration_whose_connection_drops_midway_is_sent_again(zk, monkeypatch):
    """A service starting while ZooKeeper's ensemble elects a leader (seen in CI: web-0 exited with "lost the
    connection to ZooKeeper") registers once the connection is back instead of stopping."""
    create, dropped = zk.client.create, []

    def drops_twice(*args, **kwargs):
        if len(dropped) < 2:
            dropped.append(args[0])
            if dropped[1:]:  # the second time, after the create reached ZooKeeper: sent twice, it must still do
                create(*args, **kwargs)
            raise ConnectionLoss()
        return create(*args, **kwargs)

    monkeypatch.setattr(zk.client, "create", drops_twice)
    web = Component(zk, "web", extra={"url": "http://web"})
    web.register()
    assert len(dropped) == 2
    [found] = list_components(zk, "web")
    assert (found.ident, found.state, found.extra) == (web.info.ident, "running", {"url": "http://web"})


def test_a_start_up_step_gives_up_with_connection_loss_when_zookeeper_stays_away(zk, monkeypatch):
    calls = []

    def always_lost(path):
        calls.append(path)
        raise ConnectionLoss()

    monkeypatch.setattr(zk.client, "ensure_path", always_lost)
    with pytest.raises(ConnectionLoss, match="unreachable for 1s"):
        through_outages(zk.client.ensure_path, "/a/b", wait=1.0)
    assert len(calls) >= 2 and set(calls) == {"/a/b"}


def test_a_start_up_step_whose_own_retries_ran_out_is_sent_again(zk):
    """A watch's constructor retries with kazoo's command retry and gives up with RetryFailedError: once the
    connection is back it is set all the same."""
    attempts = []

    def watch() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryFailedError("Exceeded retry deadline")
        return "set"

    assert through_outages(watch) == "set" and len(attempts) == 2


def test_digest_acl_lets_only_gatekeeper_write_its_tree(zk_server, zk_chroot):
    owner = ZKClient(zk_server.hosts, chroot=zk_chroot, auth=DigestAuth("gatekeeper", "s3cret")).start()
    stranger = ZKClient(zk_server.hosts, chroot=zk_chroot).start()
    try:
        owner.client.create("/pipelines/gate", b"x", makepath=True)
        with pytest.raises(NoAuthError):
            stranger.client.set("/pipelines/gate", b"tampered")
        with pytest.raises(NoAuthError):
            stranger.client.get("/pipelines/gate")
        assert owner.client.get("/pipelines/gate")[0] == b"x"
    finally:
        owner.stop()
        stranger.stop()


def registration_owner(observer: ZKClient, component: Component) -> int | None:
    """The session that owns `component`'s ephemeral registration, as the server sees it (None: not registered)."""
    stat = observer.client.exists(component.path)
    return stat.ephemeralOwner if stat else None


def test_client_survives_server_restart_and_registration_returns(tmp_path):
    """The server restarts and the client cannot reach it until its session has expired: the client gets a new
    session and its registration comes back on it."""
    server = LocalZooKeeper(data_dir=str(tmp_path / "zk"), force_sync=False).start()
    link = CuttableLink(server.hosts)
    events: list[ConnectionEvent] = []
    zk = ZKClient(link.hosts, chroot="/restart", timeout=2.0).start()
    observer = None
    try:
        zk.add_listener(events.append)
        component = Component(zk, "executor")
        component.register()
        first_session = zk.client.client_id[0]
        link.cut()
        server.stop()
        wait_for(lambda: ConnectionEvent.SUSPENDED in events, what="SUSPENDED")
        server.start()
        observer = ZKClient(server.hosts, chroot="/restart").start()
        # The restarted server restores the session, then expires it because the client stays away.
        wait_for(lambda: registration_owner(observer, component) is None, what="the old session to expire")
        link.restore()
        wait_for(lambda: ConnectionEvent.RECONNECTED in events, what="RECONNECTED on a new session")
        owner = wait_for(lambda: registration_owner(observer, component), what="re-registration")
        assert owner == zk.client.client_id[0] != first_session
        assert events[0] is ConnectionEvent.SUSPENDED and ConnectionEvent.LOST in events
        assert [c.ident for c in list_components(observer, "executor")] == [component.info.ident]
    finally:
        zk.stop()
        if observer:
            observer.stop()
        link.close()
        server.cleanup()


def test_registration_returns_after_the_server_expires_the_session(zk_server, zk_chroot, zk):
    """A partition longer than the session timeout, with the server up all along: the server expires the
    session (the registration vanishes), and when the link is back the client registers again."""
    link = CuttableLink(zk_server.hosts)
    events: list[ConnectionEvent] = []
    client = ZKClient(link.hosts, chroot=zk_chroot, timeout=2.0).start()
    try:
        client.add_listener(events.append)
        component = Component(client, "merger")
        component.register()
        first_session = client.client.client_id[0]
        assert registration_owner(zk, component) == first_session
        link.cut()
        wait_for(lambda: ConnectionEvent.SUSPENDED in events, what="SUSPENDED")
        wait_for(lambda: registration_owner(zk, component) is None, what="the server to expire the session")
        assert ConnectionEvent.LOST not in events  # the client cannot know yet: it has not reached the server
        link.restore()
        wait_for(lambda: ConnectionEvent.RECONNECTED in events, what="RECONNECTED on a new session")
        owner = wait_for(lambda: registration_owner(zk, component), what="re-registration")
        assert owner == client.client.client_id[0] != first_session
        assert events.index(ConnectionEvent.LOST) < events.index(ConnectionEvent.RECONNECTED)
        assert [(c.ident, c.state) for c in list_components(zk, "merger")] == [(component.info.ident, "running")]
    finally:
        client.stop()
        link.close()


def test_session_expiry_is_reported_to_subscribers(zk_server, zk_chroot):
    zk = ZKClient(zk_server.hosts, chroot=zk_chroot, timeout=4.0).start()
    events: list[ConnectionEvent] = []
    got = threading.Event()

    def listener(event):
        events.append(event)
        if event is ConnectionEvent.RECONNECTED:
            got.set()

    zk.add_listener(listener)
    try:
        # Expire the session from the server's side the way kazoo's own tests do: a second client joins the
        # same session id and password, then closes it.
        from kazoo.client import KazooClient

        session_id, password = zk.client.client_id
        intruder = KazooClient(hosts=zk_server.hosts)
        intruder._session_id, intruder._session_passwd = session_id, password  # noqa: SLF001
        intruder.start()
        intruder.stop()
        intruder.close()
        assert got.wait(20), f"no RECONNECTED after expiry, saw {events}"
        assert ConnectionEvent.LOST in events
    finally:
        zk.stop()


def test_tls_with_client_certificates(tmp_path):
    from gatekeeper.zk.client import TLSOptions
    from gatekeeper.zk.tls import make_pki

    pki = make_pki(tmp_path / "pki")
    server = LocalZooKeeper(data_dir=str(tmp_path / "zk"), tls=pki, force_sync=False).start()
    try:
        tls = TLSOptions(ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key)
        zk = ZKClient(server.secure_hosts, chroot="/tls", tls=tls).start(timeout=20)
        try:
            zk.client.create("/hello", b"over tls")
            assert zk.client.get("/hello")[0] == b"over tls"
        finally:
            zk.stop()
        # A client that trusts the server but has no certificate of its own is refused (ssl.clientAuth=need).
        from kazoo.client import KazooClient
        from kazoo.handlers.threading import KazooTimeoutError

        anonymous = KazooClient(hosts=server.secure_hosts, use_ssl=True, ca=pki.ca_cert, verify_certs=True,
                                connection_retry={"max_tries": 1})
        try:
            with pytest.raises(KazooTimeoutError):
                anonymous.start(timeout=3)
        finally:
            anonymous.stop()
            anonymous.close()
    finally:
        server.cleanup()
