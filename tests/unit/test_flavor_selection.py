"""Nodepool's min-ram: a pool label boots the smallest flavor with at least that RAM (among those whose name holds
its flavor-name, when it has one); the quota is weighed with the flavor chosen, and a label no flavor meets is
never launched: requests for it are declined, saying why."""

from __future__ import annotations

import threading

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.launcher.model import Node
from gatekeeper.launcher.provider_manager import ProviderManager
from gatekeeper.launcher.providers.base import Flavor, FlavorNotFound, ProviderAdapter, ProviderError
from gatekeeper.launcher.providers.openstack import select_flavor
from gatekeeper.sim.openstack.cloud import DEFAULT_FLAVORS

# the simulator's flavors, as the adapter keeps them: smallest RAM first, then by name
FLAVORS = sorted((Flavor(f.name, f.vcpus, f.ram, f.id) for f in DEFAULT_FLAVORS), key=lambda f: (f.ram, f.name))


def chosen(name: str, min_ram: int) -> str:
    return select_flavor(FLAVORS, name, min_ram, "cloud alpha").name


def test_min_ram_boots_the_smallest_flavor_with_at_least_that_ram():
    assert chosen("", 1) == "small"  # 1024 MB
    assert chosen("", 1500) == "m1.small"  # 2048 MB
    assert chosen("", 2048) == "m1.small"  # at least: the same RAM is enough
    assert chosen("", 5000) == "large"  # large and m1.large have 8192 MB: the first by name


def test_with_min_ram_a_flavor_name_is_a_part_of_the_names_to_choose_among():
    assert chosen("m1", 1) == "m1.small"
    assert chosen("m1", 3000) == "m1.medium"
    assert chosen("medium", 1) == "m1.medium"  # both mediums hold "medium" and have 4096 MB: by name


def test_without_min_ram_a_flavor_name_must_match_a_name_or_id_exactly():
    assert chosen("medium", 0) == "medium"
    assert chosen("13", 0) == "m1.large"
    with pytest.raises(FlavorNotFound, match="cloud alpha: no flavor 'm1'"):
        chosen("m1", 0)


def test_a_min_ram_no_flavor_meets_says_what_the_cloud_has():
    with pytest.raises(FlavorNotFound) as caught:
        chosen("m1", 9000)
    assert str(caught.value) == (
        'cloud alpha: no flavor whose name contains "m1" has at least 9000 MB of RAM (flavors: small (1024 MB), '
        "m1.small (2048 MB), m1.medium (4096 MB), medium (4096 MB), large (8192 MB), m1.large (8192 MB))")


LAYOUT = """
nodepool:
  labels: [{name: roomy}, {name: huge}, {name: plain}]
  providers:
    - name: east-1
      driver: openstack
      cloud: east
      pools:
        - name: main
          max-ram: 10000
          labels:
            - {name: roomy, image: deb, min-ram: 3000, flavor-name: m1}
            - {name: huge, image: deb, min-ram: 100000}
            - {name: plain, image: deb, flavor: small}
      images: [{name: deb, base-image: debian-12}]
"""


class FlavorCloud(ProviderAdapter):
    """A cloud with the simulator's flavors and no limits of its own."""

    def flavor(self, name: str, min_ram: int = 0) -> Flavor:
        return select_flavor(FLAVORS, name, min_ram, "cloud east")

    def poll(self):
        return {}


@pytest.fixture
def manager():
    provider = parse_layout({"l.yaml": LAYOUT}).nodepool.providers["east-1"]
    m = ProviderManager(provider, FlavorCloud(), owner="gk", post=print, stop_event=threading.Event(), ssh_key="",
                        key_name="")
    m.refresh_limits()
    yield m
    m.stop()


def test_a_min_ram_label_launches_its_chosen_flavor_and_the_pools_max_ram_counts_that_flavors_ram(manager):
    assert manager.launch_spec("roomy", "main")[1] == "m1.medium"
    assert manager.free("roomy") == 2  # 10000 MB of max-ram hold two 4096 MB servers, not three
    manager.nodes["n1"] = (Node(id="n1", pool="main", label="roomy", state="ready"), 0)
    assert manager.free("roomy") == 1
    assert manager.free("plain") == 5  # 10000 - 4096 leaves five of small's 1024 MB
    assert manager.can_ever_serve(["roomy"] * 2) and not manager.can_ever_serve(["roomy"] * 3)


def test_a_label_no_flavor_meets_is_never_launched_and_says_so_naming_label_and_provider(manager):
    assert manager.free("huge") == 0
    assert not manager.can_ever_serve(["huge"]) and not manager.can_ever_serve(["plain", "huge"])
    assert manager.can_ever_serve(["plain", "roomy"])
    [why] = manager.unlaunchable(["plain", "huge", "huge"])
    assert why.startswith('provider east-1: label "huge" (pool main): cloud east: no flavor has at least 100000 MB '
                          "of RAM (flavors: small (1024 MB)")
    assert manager.unlaunchable(["plain", "roomy"]) == []


def test_min_ram_is_read_with_the_label():
    labels = parse_layout({"l.yaml": LAYOUT}).nodepool.providers["east-1"].pools[0].labels
    assert [(pl.flavor, pl.min_ram) for pl in labels] == [("m1", 3000), ("", 100000), ("small", 0)]


@pytest.mark.parametrize(("value", "error"), [
    ("0", "min-ram: must be a positive number of MB"),
    ("-512", "min-ram: must be a positive number of MB"),
    ("8G", "min-ram: expected an integer, got a string '8G'"),
    ("true", "min-ram: expected an integer, got a boolean true"),
])
def test_a_min_ram_that_is_not_a_positive_number_of_mb_is_refused(value, error):
    text = LAYOUT.replace("min-ram: 3000", f"min-ram: {value}")
    with pytest.raises(ConfigErrors) as caught:
        parse_layout({"l.yaml": text})
    found = [str(e) for e in caught.value.errors]
    assert any(e.startswith("l.yaml:12: nodepool.providers[0] (east-1).pools[0] (main).labels[0] (roomy).")
               and e.endswith(error) for e in found), found


TWO_POOLS = """
nodepool:
  labels: [{name: roomy}]
  providers:
    - name: east-1
      driver: openstack
      cloud: east
      pools:
        - name: first
          priority: 1
          labels: [{name: roomy, image: deb, min-ram: 3000, flavor-name: gpu}]
        - name: second
          priority: 2
          max-servers: 1
          labels: [{name: roomy, image: deb, min-ram: 3000}]
      images: [{name: deb, base-image: debian-12}]
"""


def test_a_pool_whose_flavor_the_cloud_lacks_takes_no_launch_and_no_share_of_a_request():
    provider = parse_layout({"l.yaml": TWO_POOLS}).nodepool.providers["east-1"]
    m = ProviderManager(provider, FlavorCloud(), owner="gk", post=print, stop_event=threading.Event(), ssh_key="",
                        key_name="")
    try:
        m.refresh_limits()
        assert m.unlaunchable(["roomy"]) == []  # the second pool boots it
        assert m.pool_for("roomy") == "second" and m.launch_spec("roomy", "second")[1] == "m1.medium"
        m.nodes["n1"] = (Node(id="n1", pool="second", label="roomy", state="ready"), 0)
        assert m.pool_for("roomy") == "second"  # full, but the first pool could never boot it
        assert m.can_ever_serve(["roomy"]) and not m.can_ever_serve(["roomy"] * 2)  # second's max-servers
    finally:
        m.stop()


class ChangingCloud(ProviderAdapter):
    """A cloud whose flavor list is read once and kept until `forget_flavors` (as the OpenStack adapter's), and
    which can fail to list it (a hiccup); records the flavor of every create."""

    def __init__(self, flavors: list[Flavor]) -> None:
        super().__init__()
        self.flavors, self.listed, self.failing, self.created = list(flavors), None, False, []

    def flavor(self, name: str, min_ram: int = 0) -> Flavor:
        if self.failing:
            raise ProviderError("cloud east: list flavors: 503 Service Unavailable")
        if self.listed is None:
            self.listed = sorted(self.flavors, key=lambda f: (f.ram, f.name))
        return select_flavor(self.listed, name, min_ram, "cloud east")

    def forget_flavors(self) -> None:
        self.listed = None

    def poll(self):
        return {}

    def create(self, name, image, flavor, metadata, **kw) -> str:
        self.flavor(flavor)  # by exact name, as Nova takes it
        self.created.append(flavor)
        return f"srv-{len(self.created)}"


def changing_manager(cloud: ChangingCloud, posted: list) -> ProviderManager:
    provider = parse_layout({"l.yaml": LAYOUT}).nodepool.providers["east-1"]
    return ProviderManager(provider, cloud, owner="gk", post=posted.append, stop_event=threading.Event(),
                           ssh_key="", key_name="")


def test_a_launch_planned_before_the_flavors_were_read_boots_the_flavor_chosen_once_they_are():
    cloud, posted = ChangingCloud(FLAVORS), []
    m = changing_manager(cloud, posted)
    cloud.failing = True
    m.refresh_limits()  # the cloud's flavors could not be read as the provider started
    _, planned, _ = m.launch_spec("roomy", "main")
    assert planned == "m1"  # a part of a name only: not a flavor the cloud has
    cloud.failing = False
    m.refresh_limits()  # read meanwhile (another launch's quota error, a cleanup pass)
    m._launch(Node(id="n1", pool="main", label="roomy", state="building"), planned, "debian-12")
    m.stop()
    assert cloud.created == ["m1.medium"], posted


def test_a_flavor_the_cloud_gains_later_is_found_at_the_next_refresh():
    cloud, posted = ChangingCloud([f for f in FLAVORS if f.ram < 8192]), []
    m = changing_manager(cloud, posted)
    m.refresh_limits()
    assert m.unlaunchable(["huge"]) and m.free("huge") == 0
    cloud.flavors.append(Flavor("xxl", 32, 131072, "xxl-id"))  # the operator adds a flavor
    m.refresh_limits()
    assert m.unlaunchable(["huge"]) == [] and m.launch_spec("huge", "main")[1] == "xxl"
    m.stop()
