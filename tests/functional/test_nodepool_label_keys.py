"""A pool label's Nodepool keys: userdata given to the cloud with each create, python-path and shell-type on each
node for its consumer (from the label, or from its cloud image as Nodepool's OpenStack driver has them), and
console-log: the console of a server whose boot failed is logged. Real ZooKeeper and the OpenStack simulator."""

from __future__ import annotations

import logging

from gatekeeper.launcher import model
from gatekeeper.launcher.client import NodeRequestClient
from tests.functional import test_launcher as base
from tests.functional.test_launcher import pool_yaml, servers, wait_live

# the launcher tests' fixtures: a key pair, the two-cloud simulator, and launchers stopped at the end
ssh_key, sim, start_launcher = base.ssh_key, base.sim, base.start_launcher

USERDATA = "#cloud-config\\nruncmd:\\n  - echo hello > /etc/motd\\n"


def provider(labels: str, extra: str = "") -> str:
    return ("    - name: prov-a\n      driver: openstack\n      cloud: alpha\n      max-servers: 4\n"
            f"      launch-attempts: 1\n{extra}      pools:\n        - name: main\n          labels:\n{labels}"
            "      images:\n        - name: deb\n          base-image: debian-12\n"
            "      cloud-images:\n        - {name: deb-cloud, image-name: debian-12, python-path: /usr/bin/python3.11,"
            " shell-type: bash}\n")


def test_userdata_goes_to_the_cloud_and_python_path_and_shell_type_onto_the_node(zk, sim, start_launcher):
    labels = (f'            - {{name: debian, image: deb, flavor: small, userdata: "{USERDATA}",\n'
              "               python-path: /usr/bin/python3, shell-type: sh}\n"
              "            - {name: plain, image: deb, flavor: small}\n"
              "            - {name: from-image, cloud-image: deb-cloud, flavor: small}\n")
    start_launcher(pool_yaml({"debian": 0, "plain": 0, "from-image": 0}, provider(labels)))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "label-keys")
    req = client.wait(client.request(["debian", "plain", "from-image"]), 60)
    assert req.state == model.FULFILLED, req.reason
    nodes = {n.label: n for n in client.lock_nodes(req)}
    assert (nodes["debian"].python_path, nodes["debian"].shell_type) == ("/usr/bin/python3", "sh")
    assert (nodes["plain"].python_path, nodes["plain"].shell_type) == ("auto", "")  # Nodepool's defaults
    assert (nodes["from-image"].python_path, nodes["from-image"].shell_type) == ("/usr/bin/python3.11", "bash")
    by_id = {s.id: s for s in servers(sim, "alpha")}
    assert by_id[nodes["debian"].external_id].user_data == USERDATA.replace("\\n", "\n")
    assert by_id[nodes["plain"].external_id].user_data == ""


def test_a_failed_boots_console_is_logged_when_its_label_asks(zk, sim, start_launcher, caplog):
    caplog.set_level(logging.WARNING, logger="gatekeeper.launcher")
    sim.cloud("alpha").set_faults(no_ssh=2)  # ACTIVE, but SSH never answers
    labels = ("            - {name: debian, image: deb, flavor: small, console-log: true}\n"
              "            - {name: quiet, image: deb, flavor: small}\n")
    start_launcher(pool_yaml({"debian": 0, "quiet": 0}, provider(labels, extra="      boot-timeout: 2\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "console")
    failed = [client.wait(client.request([label]), 60) for label in ("debian", "quiet")]
    assert [r.state for r in failed] == [model.REQUEST_FAILED] * 2
    consoles = [r.getMessage() for r in caplog.records if "console log of server" in r.getMessage()]
    assert len(consoles) == 1, consoles  # the label that asked for it, not the other
    assert "(debian)" in consoles[0] and "sshd: failed to start" in consoles[0]
    assert "Linux version" in consoles[0]


def test_a_console_the_cloud_answers_with_garbage_does_not_lose_the_boots_result(zk, sim, start_launcher, caplog,
                                                                                 monkeypatch):
    """The console is best effort: a cloud answering its request with something unreadable must not keep the failed
    boot's result from the launcher (the node stayed building and its request waited for ever)."""
    from gatekeeper.launcher.providers import openstack

    def garbled(self, server_id: str) -> str:
        raise ValueError("Expecting value: line 1 column 1 (char 0)")  # what a non-JSON answer raised

    monkeypatch.setattr(openstack.OpenStackAdapter, "console_log", garbled)
    caplog.set_level(logging.WARNING, logger="gatekeeper.launcher")
    sim.cloud("alpha").set_faults(no_ssh=1)
    labels = "            - {name: debian, image: deb, flavor: small, console-log: true}\n"
    start_launcher(pool_yaml({"debian": 0}, provider(labels, extra="      boot-timeout: 2\n")))
    wait_live(zk, 1)
    client = NodeRequestClient(zk, "console")
    assert client.wait(client.request(["debian"]), 60).state == model.REQUEST_FAILED
    assert any("no console log of server" in r.getMessage() and "Expecting value" in r.getMessage()
               for r in caplog.records)
