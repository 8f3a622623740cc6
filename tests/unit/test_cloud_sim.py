"""The simulated cloud's state machine, without HTTP or hosts."""

from __future__ import annotations

import pytest

from gatekeeper.sim.openstack.cloud import Cloud, Faults, Limits, QuotaExceeded
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
