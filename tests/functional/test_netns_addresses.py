"""Network-namespace hosts give their address back when a boot fails before the host exists."""

from __future__ import annotations

import pytest

from gatekeeper.sim.openstack.hosts import HostSpec, NetnsBackend

pytestmark = pytest.mark.netns


def test_a_boot_that_fails_in_preparation_returns_its_address(tmp_path):
    backend = NetnsBackend(str(tmp_path / "hosts"))
    try:
        free = len(backend._free_octets)
        for i in range(3):
            with pytest.raises(Exception):  # noqa: B017 (any failure to unpack the damaged disk)
                backend.boot(HostSpec(f"s{i}", f"h{i}", disk=b"not a tar archive"))
        assert len(backend._free_octets) == free
    finally:
        backend.close()
