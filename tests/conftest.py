"""Shared fixtures: one real ZooKeeper per test session, a fresh chroot per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.server import LocalZooKeeper
from tests.helpers import require_netns


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `netns` is skipped (or, where GATEKEEPER_REQUIRE_NETNS is set, failed) before its fixtures
    run, when network namespaces are not available: it never falls back to something else silently."""
    if item.get_closest_marker("netns") is not None:
        require_netns()


@pytest.fixture(scope="session")
def zk_server() -> Iterator[LocalZooKeeper]:
    """A real ZooKeeper from Debian's package on a free loopback port, stopped at the end of the session."""
    server = LocalZooKeeper(force_sync=False)  # thrown away with the session
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def zk_chroot(zk_server: LocalZooKeeper) -> str:
    return f"/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def zk_factory(zk_server: LocalZooKeeper, zk_chroot: str) -> Iterator[Callable[..., ZKClient]]:
    """Make more connected clients on this test's chroot (a second service, a restarted one, ...)."""
    clients: list[ZKClient] = []

    def make(**kwargs: object) -> ZKClient:
        kwargs.setdefault("timeout", 5.0)
        client = ZKClient(zk_server.hosts, chroot=zk_chroot, **kwargs).start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        try:
            client.stop()
        except Exception:
            pass
    cleaner = ZKClient(zk_server.hosts).start()
    try:
        cleaner.client.delete(zk_chroot, recursive=True)
    except Exception:
        pass
    finally:
        cleaner.stop()


@pytest.fixture
def zk(zk_factory: Callable[..., ZKClient]) -> ZKClient:
    """A connected ZooKeeper client in a chroot of its own (the raw kazoo client is `zk.client`)."""
    return zk_factory()
