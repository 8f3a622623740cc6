"""The simulated cloud's state machine, without HTTP or hosts."""

from __future__ import annotations

import pytest

from gatekeeper.sim.openstack.cloud import Cloud, Faults, Limits, QuotaExceeded
from gatekeeper.sim.openstack.spares import SparePool
from tests.helpers import wait_for


def wait_status(cloud: Cloud, server_id: str, status: str) -> None:
    wait_for(lambda: cloud.get_server(server_id).status == status, timeout=5,
             what=f"server {server_id} to become {status}")


@pytest.fixture
def cloud():
    c = Cloud("unit", None, limits=Limits(max_instances=2))
    yield c
    c.close()


def test_fault_counters_count_down_and_minus_one_means_always():
    faults = Faults(boot_errors=2, no_ssh=-1)
    assert [faults.take("boot_errors") for _ in range(3)] == [True, True, False]
    assert all(faults.take("no_ssh") for _ in range(5))
    assert not faults.take("api_errors")


def test_unknown_fault_is_refused_naming_the_cloud(cloud):
    with pytest.raises(ValueError, match='cloud unit: unknown fault .boot_eror.'):
        cloud.set_faults(boot_eror=1)


def test_boot_error_ends_in_error_with_fault_message(cloud):
    cloud.set_faults(boot_errors=1, boot_error_message="No valid host was found.")
    server = cloud.create_server("n", "debian-12", "small", None, {})
    wait_status(cloud, server.id, "ERROR")
    assert cloud.get_server(server.id).fault["message"] == "No valid host was found."
    ok = cloud.create_server("m", "debian-12", "small", None, {})
    wait_status(cloud, ok.id, "ACTIVE")


def test_instances_beyond_the_limit_are_refused_as_quota(cloud):
    for name in ("a", "b"):
        cloud.create_server(name, "debian-12", "1", None, {})
    with pytest.raises(QuotaExceeded, match="Quota exceeded for instances"):
        cloud.create_server("c", "debian-12", "1", None, {})


def test_ignored_delete_leaves_the_server_and_a_second_delete_removes_it(cloud):
    server = cloud.create_server("a", "debian-12", "1", None, {})
    wait_status(cloud, server.id, "ACTIVE")
    cloud.set_faults(delete_ignored=1)
    cloud.delete_server(server.id)
    assert cloud.faults.delete_ignored == 0  # the fault was met
    assert [s.id for s in cloud.list_servers()] == [server.id]
    cloud.delete_server(server.id)
    wait_for(lambda: not cloud.list_servers(), timeout=5, what="the second delete to remove the server")
    # close() waits for every delete the cloud started: had the first one not been ignored, there would be two.
    cloud.close()
    assert cloud.deleted_server_ids == [server.id]


def test_snapshot_of_a_building_server_is_refused(cloud):
    cloud.set_faults(boot_delay=5)
    server = cloud.create_server("a", "debian-12", "1", None, {})
    with pytest.raises(ValueError, match="while it is in vm_state build"):
        cloud.snapshot(server.id, "snap", {})


class SlowHosts:
    """A host backend whose hosts take `seconds` to come up; records when each boot began and ended."""

    def __init__(self, seconds: float) -> None:
        import threading

        self.seconds = seconds
        self.started: dict[str, float] = {}
        self.up: dict[str, float] = {}
        self.stop = threading.Event()
        self.spares: SparePool[str] = SparePool(lambda: "spare", lambda host: None)  # none asked for

    def boot(self, spec) -> str:
        import time

        self.started[spec.server_id] = time.monotonic()
        self.stop.wait(self.seconds)
        self.up[spec.server_id] = time.monotonic()
        return "127.0.0.9"

    def destroy(self, server_id: str) -> None:
        pass


def test_a_server_is_built_during_its_boot_time_and_active_once_that_time_is_over():
    """A cloud's boot time includes making the machine: the host is made at once, and the server turns ACTIVE
    boot_delay after its create (or once its host is up, if that takes longer), not boot_delay plus the host's
    own start-up."""
    import time

    hosts = SlowHosts(0.5)
    cloud = Cloud("unit", hosts)
    try:
        cloud.set_faults(boot_delay=1.5)
        created = time.monotonic()
        server = cloud.create_server("n", "debian-12", "small", None, {})
        wait_for(lambda: server.id in hosts.up, timeout=5, what="the host to be made")
        assert hosts.started[server.id] - created < 1.0  # made during the boot time, not after it
        assert cloud.get_server(server.id).status == "BUILD"  # the boot time is not over yet
        wait_status(cloud, server.id, "ACTIVE")
        assert time.monotonic() - created >= 1.5
        hosts.seconds = 1.0  # a host slower than the boot time: ACTIVE once it is up
        cloud.set_faults(boot_delay=0.2)
        slow = cloud.create_server("m", "debian-12", "small", None, {})
        wait_status(cloud, slow.id, "ACTIVE")
        assert slow.id in hosts.up and cloud.get_server(slow.id).address == "127.0.0.9"
    finally:
        hosts.stop.set()
        cloud.close()


def test_a_server_in_build_holds_the_start_of_spare_hosts_until_its_boot_time_is_over():
    """A spare host started during a boot would take the CPU from the boot being timed: the cloud tells its
    backend's spare pool that it is busy while a server is in BUILD, its host up or not."""
    hosts = SlowHosts(0)
    booting = Cloud("unit", hosts)
    try:
        booting.set_faults(boot_delay=5)
        server = booting.create_server("n", "debian-12", "small", None, {})
        wait_for(lambda: server.id in hosts.up, timeout=5, what="the host to be made")
        assert booting.get_server(server.id).status == "BUILD" and hosts.spares.busy()
        booting.delete_server(server.id)
        wait_for(lambda: server.id in booting.deleted_server_ids, timeout=5, what="the server deleted")
        assert not hosts.spares.busy()
    finally:
        booting.close()
