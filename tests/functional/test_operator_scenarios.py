"""What an operator used to zuul-client and Nodepool types, run as they run it (a process of its own) against a real
ZooKeeper or none: autoholds (zuul-client's autohold, autohold-list, autohold-info, autohold-delete), Nodepool's
image-delete, and the commands an earlier check of an unreachable ZooKeeper or web API left out. Where gatekeeper
differs, a strict xfail says how (zuul-client: zuulclient/cmd/__init__.py; Nodepool: nodepool/cmd/nodepoolcmd.py)."""

from __future__ import annotations

import re

import pytest

from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.nodes import NodeStore
from tests.functional.test_operator_cli_input import no_config, run_all, zk_config  # noqa: F401 - fixtures

UNREACHABLE = ("cannot reach ZooKeeper at {hosts} within 5 s (last error: socket connection error: Connection "
               "refused); is it running there, and are zookeeper.hosts and its TLS settings right?")


def gk(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    [(code, out, err, _)] = run_all([argv], env=env)
    return code, out, err


def test_an_autohold_holds_one_failed_build_unless_a_count_is_given_as_zuul_clients(zk_config):  # noqa: F811
    code, out, err = gk(zk_config, "autohold", "add", "--project", "org/a", "--job", "unit", "--reason", "flaky")
    assert code == 0, err
    one = out.strip()
    assert re.fullmatch(r"hold-\d{10}", one)
    code, out, err = gk(zk_config, "autohold", "add", "--project", "org/a", "--job", "unit", "--reason", "flaky",
                        "--count", "3")
    three = out.strip()
    code, out, err = gk(zk_config, "autohold", "list")
    assert code == 0, err
    assert out.splitlines() == [f"{one} project=org/a job=unit change=.* held=0/1 hours=24.0 flaky",
                                f"{three} project=org/a job=unit change=.* held=0/3 hours=24.0 flaky"]


def test_an_autohold_of_a_change_number_holds_that_change_at_any_patch_set_as_zuul_clients(
        zk_config, zk_server, zk_chroot):  # noqa: F811
    """zuul-client's `autohold --change 5` names a change (it refuses a comma); gatekeeper's --change is a pattern
    on NUMBER,PATCHSET, which "5" never matched: the hold was taken and held nothing."""
    code, out, err = gk(zk_config, "autohold", "add", "--project", "org/a", "--job", "unit", "--reason", "debug",
                        "--change", "5", "--count", "2")
    assert code == 0, err
    ident = out.strip()
    zk = ZKClient(zk_server.hosts, chroot=zk_chroot).start()
    try:
        store = NodeStore(zk)
        assert store.claim_autohold("org/a", "unit", "55,1", "0000000001") is None  # another change
        assert store.claim_autohold("org/a", "unit", "15,1", "0000000001") is None
        hold = store.claim_autohold("org/a", "unit", "5,3", "0000000002")
        assert hold is not None and hold.id == ident
    finally:
        zk.stop()


def test_autohold_info_shows_one_request_and_says_when_there_is_none(zk_config):  # noqa: F811
    code, out, err = gk(zk_config, "autohold", "add", "--project", "org/a", "--job", "unit", "--reason", "debug")
    ident = out.strip()
    code, out, err = gk(zk_config, "autohold", "info", "--id", ident)
    assert code == 0 and ident in out and "org/a" in out, err
    code, out, err = gk(zk_config, "autohold", "info", "--id", "hold-0000009999")
    assert code == 1 and "hold-0000009999" in out + err


def test_zuul_clients_autohold_spellings_are_understood(zk_config):  # noqa: F811
    code, out, err = gk(zk_config, "autohold", "add", "--project", "org/a", "--job", "unit", "--reason", "debug")
    ident = out.strip()
    code, out, _ = gk(zk_config, "autohold-list")
    assert code == 0 and out.startswith(f"{ident} project=org/a job=unit")
    code, out, _ = gk(zk_config, "autohold-info", ident)
    assert code == 0 and f"id: {ident}\nproject: org/a\njob: unit\n" in out
    assert gk(zk_config, "autohold-delete", ident)[:2] == (0, f"autohold {ident} deleted\n")
    assert gk(zk_config, "autohold-list")[:2] == (0, "No autohold requests found\n")


@pytest.mark.xfail(strict=True, reason="an autohold cannot name a ref (zuul-client's --ref): builds of ref items "
                                       "(post, tag, periodic) are held only by a hold on every change")
def test_an_autohold_for_a_ref_is_taken_as_zuul_clients(zk_config):  # noqa: F811
    code, _, err = gk(zk_config, "autohold", "add", "--project", "org/a", "--job", "unit", "--reason", "debug",
                      "--ref", "refs/heads/master")
    assert code == 0, err


def test_an_empty_autohold_list_says_there_is_none(zk_config):  # noqa: F811
    code, out, err = gk(zk_config, "autohold", "list")
    assert code == 0 and out.strip() != "", err


@pytest.mark.xfail(strict=True, reason="Nodepool's image-delete --image --build-id --upload-id is refused as a "
                                       "usage error: gatekeeper takes image-delete IMAGE --provider --build")
def test_nodepools_image_delete_spelling_is_understood(no_config):  # noqa: F811
    code, _, err = gk(no_config, "image-delete", "--image", "ubuntu", "--provider", "p", "--build-id", "b1",
                      "--upload-id", "0000000001")
    assert code != 2, err


WEB_COMMANDS = [("builds",), ("build", "0123abcd"), ("recheck", "1,1"), ("status", "--change", "1")]
ZOOKEEPER_COMMANDS = [
    ("image-build", "ubuntu"), ("image-delete", "ubuntu", "--provider", "p", "--build", "b1"),
    ("hold-access", "--list"), ("hold-access", "--revoke", "g-0000000001"), ("events", "list"),
    ("events", "replay", "d-0000000001"), ("events", "discard", "--all"),
]


def test_the_other_commands_fail_fast_on_an_unreachable_zookeeper_or_web_server_with_one_sentence(
        no_config):  # noqa: F811
    hosts = no_config["GATEKEEPER_ZOOKEEPER_HOSTS"]
    env = {**no_config, "GATEKEEPER_URL": f"http://{hosts}"}  # the same closed port
    results = run_all(ZOOKEEPER_COMMANDS + WEB_COMMANDS, env=env)
    for argv, (code, out, err, _) in zip(ZOOKEEPER_COMMANDS, results[:len(ZOOKEEPER_COMMANDS)], strict=True):
        assert (code, out, err.strip()) == (1, "", UNREACHABLE.format(hosts=hosts)), argv
    for argv, (code, out, err, _) in zip(WEB_COMMANDS, results[len(ZOOKEEPER_COMMANDS):], strict=True):
        assert (code, out, err.strip()) == (
            6, "", f"error: cannot reach the gatekeeper web server at http://{hosts}: Connection refused"), argv


def test_the_admin_apis_autohold_takes_a_change_number_as_the_cli_does():
    from gatekeeper.web.admin import AutoholdRequest, parse_request

    body = {"project": "org/a", "reason": "debug"}
    assert parse_request(AutoholdRequest, {**body, "change": "5"}).change == r"5,\d+"
    assert parse_request(AutoholdRequest, {**body, "change": r"^5,1$"}).change == r"^5,1$"
