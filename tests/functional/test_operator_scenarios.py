"""What an operator used to zuul-client and Nodepool types, run as they run it (a process of its own) against a real
ZooKeeper or none: autoholds (zuul-client's autohold, autohold-list, autohold-info, autohold-delete), Nodepool's
image-delete, and the commands an earlier check of an unreachable ZooKeeper or web API left out. Where gatekeeper
differs, a strict xfail says how (zuul-client: zuulclient/cmd/__init__.py; Nodepool: nodepool/cmd/nodepoolcmd.py)."""

from __future__ import annotations

from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.nodes import NodeStore
from tests.functional.test_operator_cli_input import no_config, run_all, zk_config  # noqa: F401 - fixtures

UNREACHABLE = ("cannot reach ZooKeeper at {hosts} within 5 s (last error: socket connection error: Connection "
               "refused); is it running there, and are zookeeper.hosts and its TLS settings right?")


def gk(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    [(code, out, err, _)] = run_all([argv], env=env)
    return code, out, err


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

