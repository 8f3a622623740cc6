"""zuul-client's enqueue, dequeue and promote as an operator types them, from the CLI (a process of its own) against
a running gate (ZooKeeper, the Gerrit simulator over SSH, the merger): several changes promoted at once go first in
the order given, and a request naming a pipeline or change that is not there fails (exit 1) naming it."""

from __future__ import annotations

import pytest

from tests.functional.gate_harness import GateHarness
from tests.functional.test_ref_items import cli, cli_env  # noqa: F401 - fixture


def test_a_promote_from_the_cli_puts_several_changes_first_in_the_order_given(
        gate: GateHarness, cli_env: dict[str, str]) -> None:  # noqa: F811
    a, b, c = gate.change("org/a"), gate.change("org/a"), gate.change("org/a")
    gate.settle()
    gate.executor.hold = True
    gate.approve(a, b, c)
    gate.settle()
    assert gate.gate_queue() == ["1,1", "2,1", "3,1"]
    code, out, err = cli(cli_env, "promote", "--pipeline", "gate", "--changes", "3,1", "2,1")
    assert (code, out.strip()) == (0, "done"), err
    gate.settle()
    assert gate.gate_queue() == ["3,1", "2,1", "1,1"]
    refusals = [
        ("enqueue", "--pipeline", "nope", "--change", "1,1"), ("dequeue", "--pipeline", "nope", "--change", "1,1"),
        ("promote", "--pipeline", "nope", "--changes", "1,1"), ("enqueue", "--pipeline", "check", "--change", "99,1"),
        ("dequeue", "--pipeline", "check", "--change", "1,1"), ("promote", "--pipeline", "gate", "--changes", "9,1"),
    ]
    named = ["nope", "nope", "nope", "99", "1,1", "9,1"]
    for argv, name in zip(refusals, named, strict=True):
        code, out, err = cli(cli_env, *argv)
        assert (code, out, "Traceback" in err) == (1, "", False), (argv, err)
        assert name in err, (argv, err)
    assert gate.gate_queue() == ["3,1", "2,1", "1,1"]
    gate.executor.hold = False
    gate.executor.release()
    gate.settle()


@pytest.mark.xfail(strict=True, reason="zuul-client's enqueue and dequeue --project P --change N,P are "
                                       "refused as a usage error (gatekeeper's --project goes with --ref only)")
def test_zuul_clients_dequeue_with_project_and_change_is_taken(gate: GateHarness,
                                                                cli_env: dict[str, str]) -> None:  # noqa: F811
    gate.change("org/a")
    gate.settle()
    code, out, err = cli(cli_env, "dequeue", "--pipeline", "check", "--project", "org/a", "--change", "1,1")
    assert code == 0, err
