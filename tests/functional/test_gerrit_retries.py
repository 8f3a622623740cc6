"""The Gerrit client's retries over real SSH to the simulator: transport failures and Gerrit's internal errors are
tried again with exponential backoff capped at `retry_max`, each logged; Gerrit's refusals are not retried."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from gatekeeper.gerrit.client import GerritClient, GerritCommandError, GerritUnavailableError
from gatekeeper.sim.gerrit import GerritSimulator
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GerritSimulator]:
    root = tmp_path_factory.mktemp("gerrit-retries")
    simulator = GerritSimulator(str(root / "site")).start()
    try:
        simulator.add_account("ci", name="CI", email="ci@example.com", key_dir=str(root / "keys"))
        simulator.add_account("jane", name="Jane Dev", email="jane@example.com")
        simulator.create_project("org/project")
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def client(sim: GerritSimulator) -> Iterator[GerritClient]:
    made = GerritClient("127.0.0.1", "ci", sim.port, sim.accounts["ci"].key_file, timeout=5.0, retries=3,
                        retry_delay=0.1, retry_max=0.3)
    try:
        yield made
    finally:
        sim.faults.clear()
        made.close()


def lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gatekeeper.gerrit.client" and r.levelno == level]


def test_an_unreachable_gerrit_is_tried_again_with_capped_backoff_then_named(sim, client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.gerrit.client")
    sim.faults.refuse_connections = True
    started = time.monotonic()
    with pytest.raises(GerritUnavailableError, match=r"`gerrit version` failed after 4 attempt\(s\)"):
        client.run(["gerrit", "version"])
    assert time.monotonic() - started >= 0.1 + 0.2 + 0.3
    host = f"127.0.0.1:{sim.port}"
    assert lines(caplog, logging.INFO) == [
        f"Retrying `gerrit version` on Gerrit {host} in {delay}s (attempt {n} of 4)"
        for n, delay in ((2, "0.1"), (3, "0.2"), (4, "0.3"))]  # 0.4 capped at retry_max
    failures = lines(caplog, logging.WARNING)
    assert len(failures) == 4 and all(m.startswith(f"Gerrit {host}: `gerrit version` failed: ") for m in failures)


def test_an_internal_error_is_tried_again_and_a_refusal_is_not(sim, client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.gerrit.client")
    sim.faults.fail("version", times=2, exit_status=128)
    out, _ = client.run(["gerrit", "version"])
    assert out.startswith("gerrit version")
    assert len(lines(caplog, logging.INFO)) == 2
    caplog.clear()
    with pytest.raises(GerritCommandError, match="no such patch set") as refused:
        client.run(["gerrit", "review", "--message", "x", "99999,1"])
    assert refused.value.exit_status == 1
    assert lines(caplog, logging.INFO) == [] and lines(caplog, logging.WARNING) == []


def test_a_review_is_tried_again_after_internal_errors_and_posted_once(sim, client, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.gerrit.client")
    change = sim.create_change("org/project", "Flaky review", owner="jane")
    sim.faults.fail("review", times=2, exit_status=128)
    client.review(change.number, 1, "posted once", marker="posted once")
    assert [m for m in sim.messages(change) if "posted once" in m] == ["Patch Set 1:\n\nposted once"]
    retried = [m for m in lines(caplog, logging.WARNING) if "review of change" in m]
    assert len(retried) == 2 and all(m.endswith("; retrying") for m in retried)
    sim.faults.fail("review", times=10, exit_status=128)
    with pytest.raises(GerritUnavailableError, match=r"review of change \d+,1 failed after 4 attempt\(s\)"):
        client.review(change.number, 1, "never posted")


def test_a_command_whose_start_gerrit_never_answers_times_out_and_is_tried_again(sim, caplog) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.gerrit.client")
    client = GerritClient("127.0.0.1", "ci", sim.port, sim.accounts["ci"].key_file, timeout=1.0, retries=1,
                          retry_delay=0.1)
    try:
        sim.faults.unanswered("version")  # the connection goes silent as the command arrives, and stays so
        out, _ = client.run(["gerrit", "version"])
        assert out.startswith("gerrit version")
        assert sim.faults.pending("version") == 0
        [failure] = lines(caplog, logging.WARNING)
        assert failure.endswith("`gerrit version`: no answer to the command's start within 1s")
    finally:
        sim.faults.clear()
        client.close()


def test_a_connection_closed_by_another_command_just_as_one_starts_is_opened_again(sim, client, monkeypatch) -> None:
    taken = client._connected
    closed: list[bool] = []

    def taken_then_closed():
        connection = taken()
        if not closed:  # another command's failure resets the shared connection just now, once
            closed.append(True)
            client.client.close()
        return connection

    monkeypatch.setattr(client, "_connected", taken_then_closed)
    # An AttributeError before, not retried: a success report took it for a refused submit.
    out, _ = client.run(["gerrit", "version"])
    assert out.startswith("gerrit version") and closed


def test_a_channel_closed_without_an_answer_costs_only_its_own_command(sim, client) -> None:
    sim.faults.hang("version", 1.0)  # in flight on the shared connection while the query's channel is closed
    answers: list[str] = []
    version = threading.Thread(target=lambda: answers.append(client.run(["gerrit", "version"], retry=False)[0]))
    version.start()
    wait_for(lambda: sim.faults.pending("version") == 0, 10, "the version command to reach Gerrit")
    sim.faults.close("query")
    with pytest.raises(GerritUnavailableError, match="Channel closed"):
        client.run(["gerrit", "query", "status:open"], retry=False)
    version.join(10)
    assert answers and answers[0].startswith("gerrit version")  # it was cut off with the query's connection before


@pytest.mark.timeout(60)
def test_a_node_that_never_answers_a_commands_start_is_lost_not_waited_on_for_ever(sim) -> None:
    """The executor's commands on a node start with the same deadline (here the simulator stands in for a node's
    sshd that goes silent as a command arrives): NodeLost, so the build is retried, instead of a build that never
    ends."""
    from gatekeeper.executor.remote import NodeLost, RemoteHost
    from gatekeeper.zk.node_records import Node

    key = sim._server.host_key
    node = Node(id="0123456789ab", address="127.0.0.1", port=sim.port, username="ci",
                private_key=sim.accounts["ci"].key_file, host_keys=[f"{key.get_name()} {key.get_base64()}"])
    host = RemoteHost(node, connect_timeout=5.0).connect()
    try:
        sim.faults.unanswered("version")
        with pytest.raises(NodeLost, match="could not start a command"):
            host.open_channel("gerrit version", timeout=1.0)
    finally:
        sim.faults.clear()
        host.close()
