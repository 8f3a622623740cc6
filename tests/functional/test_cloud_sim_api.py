"""The cloud simulator beyond booting: what openstacksdk (and the `openstack` CLI, which uses it) asks of a real
cloud — quota sets, server metadata, flavor extra specs, a network service, Keystone's error bodies — over HTTP,
with the clouds' images and flavors from a config file."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings

import openstack
import pytest
from keystoneauth1.exceptions import http as ksa_http
from openstack import exceptions as osexc
from openstack.config import loader

from gatekeeper.child_process import start_tied
from gatekeeper.sim.openstack.sim import CloudSim

REFERENCE_LAYOUT_FLAVORS = {"m1.medium", "m1.large"}
REFERENCE_LAYOUT_IMAGES = {"ubuntu-22.04", "ubuntu-24.04"}


@pytest.fixture
def sim(tmp_path):
    with CloudSim(["alpha"], backend="auto", workdir=str(tmp_path / "sim"), hosts=False) as s:
        yield s


def connect(clouds_yaml: str, cloud: str, **overrides) -> openstack.connection.Connection:
    cfg = loader.OpenStackConfig(config_files=[clouds_yaml]).get_one(cloud=cloud, **overrides)
    return openstack.connection.Connection(config=cfg)


def test_default_images_and_flavors_serve_the_reference_layout(sim):
    conn = connect(sim.clouds_yaml, "alpha")
    assert REFERENCE_LAYOUT_IMAGES <= {i.name for i in conn.image.images()}
    assert REFERENCE_LAYOUT_FLAVORS <= {f.name for f in conn.compute.flavors()}


def test_quota_sets_read_like_nova(sim):
    conn = connect(sim.clouds_yaml, "alpha")
    server = conn.compute.create_server(name="q1", image_id="debian-12", flavor_id="12", networks="none")
    quota = conn.compute.get_quota_set("p-gatekeeper")
    assert quota.instances == 100 and quota.cores == sim.cloud("alpha").limits.max_cores
    usage = conn.compute.get_quota_set("p-gatekeeper", usage=True)
    assert usage.usage["instances"] == 1 and usage.usage["cores"] == 2 and usage.usage["ram"] == 4096
    cloud_layer = conn.get_compute_quotas("p-gatekeeper")
    assert cloud_layer.instances == 100
    conn.compute.delete_server(server)


def test_server_metadata_is_read_set_and_deleted(sim):
    conn = connect(sim.clouds_yaml, "alpha")
    server = conn.compute.create_server(name="m1", image_id="debian-12", flavor_id="1", networks="none",
                                        metadata={"gatekeeper_node": "0001"})
    assert conn.compute.get_server_metadata(server).metadata == {"gatekeeper_node": "0001"}
    conn.compute.set_server_metadata(server, held_by="jane")
    assert conn.compute.get_server_metadata(server).metadata == {"gatekeeper_node": "0001", "held_by": "jane"}
    conn.compute.delete_server_metadata(server, ["held_by"])
    assert conn.compute.get_server(server.id).metadata == {"gatekeeper_node": "0001"}
    with pytest.raises(osexc.NotFoundException):
        conn.compute.delete_server_metadata(server, ["never-set"])


def test_flavor_extra_specs(sim):
    conn = connect(sim.clouds_yaml, "alpha")
    large = conn.compute.find_flavor("m1.large")
    assert conn.compute.fetch_flavor_extra_specs(large).extra_specs == {"hw:cpu_policy": "shared"}
    assert conn.compute.get_flavor_extra_specs_property(large, "hw:cpu_policy") == "shared"
    assert conn.compute.fetch_flavor_extra_specs(conn.compute.find_flavor("small")).extra_specs == {}


def test_the_network_service_answers_so_the_sdk_does_not_warn(sim):
    conn = connect(sim.clouds_yaml, "alpha")
    assert [n.name for n in conn.network.networks()] == ["private"]
    assert conn.network.get_quota("p-gatekeeper").ports == 500
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server = conn.create_server("n1", image="debian-12", flavor="small", wait=True, timeout=30)
        conn.get_server(server.id)
    network_warnings = [w for w in caught if "network" in str(w.message).lower()]
    assert network_warnings == []
    assert server.status == "ACTIVE"


def test_a_server_is_created_on_the_networks_named_and_an_unknown_one_is_refused_as_nova_does(sim):
    ci = sim.cloud("alpha").add_network("ci-net")
    conn = connect(sim.clouds_yaml, "alpha")
    assert {n.name: n.id for n in conn.network.networks()}["ci-net"] == ci
    assert conn.network.find_network("ci-net").id == ci
    server = conn.compute.create_server(name="n2", image_id="debian-12", flavor_id="1",
                                        networks=[{"uuid": ci}, {"uuid": conn.network.find_network("private").id}])
    server = conn.compute.wait_for_server(server, wait=30)
    assert list(server.addresses) == ["ci-net", "private"] and server.addresses["ci-net"][0]["addr"]
    assert [p.network_id for p in conn.network.ports(device_id=server.id)] == [ci]

    missing = "0b5e7a2e-0000-4000-8000-00000000dead"
    with pytest.raises(osexc.BadRequestException) as caught:
        conn.compute.create_server(name="n3", image_id="debian-12", flavor_id="1", networks=[{"uuid": missing}])
    assert f"Network {missing} could not be found." in str(caught.value)
    assert [s.name for s in conn.compute.servers()] == ["n2"]  # nothing made of the refused create


def test_a_servers_console_output_and_user_data_as_nova_takes_them(sim):
    conn = connect(sim.clouds_yaml, "alpha")
    server = conn.compute.create_server(name="c1", image_id="debian-12", flavor_id="1", networks="none",
                                        user_data=base64.b64encode(b"#cloud-config").decode())
    conn.compute.wait_for_server(server, wait=30)
    assert sim.cloud("alpha").get_server(server.id).user_data == "#cloud-config"
    output = conn.compute.get_server_console_output(server)["output"]
    assert "Linux version" in output and "running user data (13 bytes)" in output
    assert conn.compute.get_server_console_output(server, length=1)["output"].count("\n") == 1
    with pytest.raises(osexc.BadRequestException, match="user_data"):
        conn.compute.create_server(name="c2", image_id="debian-12", flavor_id="1", networks="none",
                                   user_data="not base64!")


def test_a_wrong_password_gets_keystones_error_body(sim):
    conn = connect(sim.clouds_yaml, "alpha", auth={"password": "wrong"})
    with pytest.raises(ksa_http.Unauthorized) as exc:
        list(conn.compute.flavors())
    # keystoneauth found the message where Keystone puts it, {"error": {"message": ...}}
    assert str(exc.value) == "The request you have made requires authentication. (HTTP 401)"
    body = exc.value.response.json()
    assert body["error"]["code"] == 401 and body["error"]["title"] == "Unauthorized"


def test_cloud_sim_command_takes_images_and_flavors_from_a_file(tmp_path):
    config = tmp_path / "sim.yaml"
    config.write_text("images: [rocky-9]\nflavors:\n  - {id: g1, name: gpu.huge, vcpus: 16, ram: 65536,"
                      " extra_specs: {'pci_passthrough:alias': 'a100:1'}}\n")
    clouds_yaml = tmp_path / "clouds.yaml"
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--cloud", "east", "--backend",
                             "none", "--clouds-yaml", str(clouds_yaml), "--config", str(config)],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        json.loads(proc.stdout.readline())
        conn = connect(str(clouds_yaml), "east")
        assert [i.name for i in conn.image.images()] == ["rocky-9"]
        [flavor] = conn.compute.flavors()
        assert (flavor.name, flavor.vcpus, flavor.ram) == ("gpu.huge", 16, 65536)
        assert conn.compute.fetch_flavor_extra_specs(flavor).extra_specs == {"pci_passthrough:alias": "a100:1"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_cloud_sim_command_refuses_a_bad_config_naming_file_and_key(tmp_path):
    config = tmp_path / "sim.yaml"
    config.write_text("flavors:\n  - {name: tiny, vcpus: lots}\n")
    res = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "cloud-sim", "--backend", "none", "--config",
                          str(config)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert f"{config}: flavors[0]: vcpus: expected a whole number, got 'lots'" in res.stderr
    assert "Traceback" not in res.stderr


def test_the_openstack_cli_works_against_the_simulator(sim):
    """The commands an operator reaches for first: server, image, flavor, quota show, limits show. They go to one
    `openstack` process in its interactive mode (commands on stdin), which runs each as its command line would and
    spares the test a client start-up per command."""
    cli = shutil.which("openstack", path=os.path.dirname(sys.executable))
    assert cli, "python-openstackclient is a test dependency (setup.cfg [test])"
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=sim.clouds_yaml, OS_CLOUD="alpha")
    commands = [
        "server create --image ubuntu-24.04 --flavor m1.medium --network private --property gatekeeper_node=0042 "
        "--wait cli-1 -f json",
        "server list -f json", "server show cli-1 -f json", "image list -f json", "flavor list -f json",
        "flavor show m1.large -f json", "quota show -f json", "limits show --absolute -f json",
        "server delete --wait cli-1", "server list -f json",
    ]
    res = subprocess.run([cli], input="".join(f"{c}\n" for c in commands), env=env, capture_output=True, text=True,
                         timeout=300)
    # (the interactive mode's exit status says nothing about the commands: their output does)
    outputs, decoder, at = [], json.JSONDecoder(), 0
    while res.stdout[at:].strip():
        at += len(res.stdout[at:]) - len(res.stdout[at:].lstrip())
        document, at = decoder.raw_decode(res.stdout, at)
        outputs.append(document)
    # one JSON document per command that asked for one: a command that failed printed its error instead
    assert len(outputs) == sum(c.endswith("-f json") for c in commands), f"{res.stdout}\n{res.stderr}"
    created, listed, shown, images, flavors, large, quota, limits, after_delete = outputs

    assert created["status"] == "ACTIVE"
    assert [s["Name"] for s in listed] == ["cli-1"]
    assert shown["properties"] == {"gatekeeper_node": "0042"}
    assert REFERENCE_LAYOUT_IMAGES <= {i["Name"] for i in images}
    assert REFERENCE_LAYOUT_FLAVORS <= {f["Name"] for f in flavors}
    assert large["properties"] == {"hw:cpu_policy": "shared"}
    quota = {row["Resource"]: row["Limit"] for row in quota}
    assert quota["instances"] == 100 and quota["ports"] == 500 and quota["key-pairs"] == 100
    limits = {row["Name"]: row["Value"] for row in limits}
    assert limits["max_total_instances"] == 100 and limits["total_instances_used"] == 1
    assert after_delete == []
