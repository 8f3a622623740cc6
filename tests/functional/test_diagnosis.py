"""Diagnosis of failed builds on the real executor: real sshd nodes, real git, the devstack stand-in with its fault
switches.  Each failed build says what failed (summary), who is to blame (change, infrastructure, unknown) and
which known bugs of the layout it matches."""

from __future__ import annotations

import threading
import time

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.executor import logs
from gatekeeper.executor.build import BuildRunner, ExecutorSettings
from gatekeeper.executor.console import ConsoleRegistry
from gatekeeper.executor.nodes import FixedNodes
from gatekeeper.executor.workspace import GitCache
from gatekeeper.sim.devstack import (
    BROKEN_NOVA_COMPUTE,
    FAULT_FLAKY_BUG,
    FAULT_SERVICE_FAIL,
    FLAKY_BUG_LINE,
    UNLOADABLE_NOVA_INIT,
)
from gatekeeper.zk.builds import CHANGE, ERROR, FAILURE, INFRASTRUCTURE, NODE_FAILURE, SUCCESS, TIMED_OUT, UNKNOWN
from tests.functional import test_executor
from tests.functional.test_executor import LOCALRC, Rig, read, request_for
from tests.layouts import GATE_LAYOUT

hosts = test_executor.hosts  # real sshd nodes
projects = test_executor.projects  # devstack and nova stand-in repos

SIGNATURES = """
signatures:
  - id: 1234
    title: n-cpu times out waiting for vif plugging
    url: https://bugs.example.com/1234
    pattern: 'Timeout waiting for vif plugging callback'
    files: screen-n-cpu.log
  - id: mq-down
    title: the message queue was unreachable
    pattern: '^stack\\.sh: \\S+ failed to start'
  - id: never
    title: a bug no build here shows
    pattern: 'this line is printed by nothing'
"""


def signatures():
    return list(parse_layout({"layout.yaml": GATE_LAYOUT, "signatures.yaml": SIGNATURES}).signatures.values())


@pytest.fixture
def rig(tmp_path, projects):  # test_executor's rig, with known-bug signatures
    def make(nodes, signatures=None, **settings) -> Rig:
        store = logs.LogStore(str(tmp_path / "logstore"), "http://logs.example.com")
        consoles = ConsoleRegistry()
        source = FixedNodes(nodes)
        runner = BuildRunner(ExecutorSettings(work_dir=str(tmp_path / "builds"), **settings),
                             GitCache(str(tmp_path / "cache"), projects.path), source, store, consoles,
                             "executor-test", signatures=signatures)
        return Rig(runner, source, store, consoles)

    return make


def test_broken_exercise_summary_names_the_exercise_and_its_assertion(hosts, projects, rig):
    r = rig([hosts.boot()], signatures=signatures)
    step = projects.change("openstack/nova", {"nova/compute.py": (BROKEN_NOVA_COMPUTE, False)}, "Break boot", 2)
    result = r.runner.run(request_for(projects.state(step), number=2))
    assert result.result == FAILURE and result.failure_class == CHANGE
    lines = result.summary.splitlines()
    assert lines[0] == "./exercise.sh exited 1"
    assert lines[1] == "exercise compute: FAIL"
    assert lines[2:] == ['File "<stdin>", line 4, in <module>', "AssertionError: expected ACTIVE, got 'ERROR'"]
    assert "exercise services" not in result.summary  # it passed
    assert result.signatures == []  # no known bug: this is the change's own failure


def test_service_that_does_not_start_is_named_with_its_last_log_lines(hosts, projects, rig):
    r = rig([hosts.boot()], signatures=signatures)
    step = projects.change("openstack/nova", {"nova/__init__.py": (UNLOADABLE_NOVA_INIT, False)}, "Import it", 3)
    result = r.runner.run(request_for(projects.state(step), number=3))
    assert result.result == FAILURE and result.failure_class == CHANGE
    lines = result.summary.splitlines()
    assert lines[0] == "./stack.sh exited 1"
    assert lines[1] == "service n-api did not start; its log ends:"
    assert any("ImportError: cannot import name 'boot_all' from 'nova.compute'" in x for x in lines[2:])
    assert lines[-1] == "  n-api: ERROR: cannot load nova"
    assert [s["id"] for s in result.signatures] == ["mq-down"]


def test_service_fault_switch_summary_shows_the_service_log_tail(hosts, projects, rig):
    r = rig([hosts.boot()])
    request = request_for(projects.state(), devstack={"localrc": {**LOCALRC, FAULT_SERVICE_FAIL: "g-api"}})
    result = r.runner.run(request)
    assert result.result == FAILURE and result.failure_class == CHANGE
    lines = result.summary.splitlines()
    assert lines[:2] == ["./stack.sh exited 1", "service g-api did not start; its log ends:"]
    assert lines[-2:] == [
        "  g-api: connecting to the message queue at 127.0.0.1:5672",
        "  g-api: ERROR: AMQP server on 127.0.0.1:5672 is unreachable: [Errno 111] Connection refused",
    ]


def test_known_bug_matches_its_log_file_and_nothing_else_matches(hosts, projects, rig):
    r = rig([hosts.boot()], signatures=signatures)
    request = request_for(projects.state(), devstack={"localrc": {**LOCALRC, FAULT_FLAKY_BUG: "1"}})
    result = r.runner.run(request)
    assert result.result == FAILURE and result.failure_class == CHANGE
    assert result.signatures == [{"id": "1234", "title": "n-cpu times out waiting for vif plugging",
                                  "url": "https://bugs.example.com/1234"}]
    assert "exercise compute: FAIL" in result.summary
    logdir = r.store.local_path(result.log_url.removeprefix(r.store.url + "/").rstrip("/"))
    assert FLAKY_BUG_LINE in read(f"{logdir}/screen-n-cpu.txt")
    assert "Failure class: change; matches known bug 1234 (n-cpu times out" in read(f"{logdir}/console.txt")


def test_passing_build_has_no_diagnosis_even_when_a_signature_line_is_in_its_logs(hosts, projects, rig):
    sig = parse_layout({"layout.yaml": GATE_LAYOUT,
                        "s.yaml": "signatures:\n  - {id: 9, title: heartbeat, pattern: heartbeat, files: '*'}\n"})
    r = rig([hosts.boot()], signatures=lambda: list(sig.signatures.values()))
    result = r.runner.run(request_for(projects.state(), run=["echo heartbeat"]))
    assert result.result == SUCCESS
    assert (result.failure_class, result.summary, result.signatures) == ("", "", [])


# -- who is to blame -------------------------------------------------------------------------------------------
def test_node_lost_mid_job_is_infrastructure(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node])
    request = request_for(projects.state(), run=["echo running; sleep 60"])

    def kill_when_running() -> None:
        while True:
            console = r.consoles.get(request.id)
            if console is not None and "running" in read(console.path):
                hosts.destroy(node)
                return
            time.sleep(0.05)

    threading.Thread(target=kill_when_running, daemon=True).start()
    result = r.runner.run(request)
    assert result.result == NODE_FAILURE and result.failure_class == INFRASTRUCTURE
    assert result.summary.splitlines()[0].startswith("NODE_FAILURE: during echo running; sleep 60: ")


def test_no_node_is_infrastructure(hosts, projects, rig):
    r = rig([], node_timeout=0.2)
    result = r.runner.run(request_for(projects.state()))
    assert result.result == NODE_FAILURE and result.failure_class == INFRASTRUCTURE
    assert result.summary == "NODE_FAILURE: no host with label 'ubuntu-jammy' free within 0s"


def test_fetch_failure_inside_a_step_is_retried_as_infrastructure(hosts, projects, rig):
    node = hosts.boot()
    r = rig([node], max_held=5)
    step = ("echo 'Cloning into requirements...'; "
            "echo 'fatal: unable to access https://opendev.org/openstack/requirements/: "
            "Could not resolve host: opendev.org'; exit 128")
    result = r.runner.run(request_for(projects.state(), run=[step]))
    assert result.result == ERROR and result.failure_class == INFRASTRUCTURE
    assert "Could not resolve host: opendev.org" in result.summary
    assert r.nodes.held == {}  # an infrastructure failure is not kept for the change's author to inspect


def test_step_timeout_is_unknown_and_a_plain_failure_is_the_change(hosts, projects, rig):
    r = rig([hosts.boot()], max_held=0)  # the node serves both builds
    result = r.runner.run(request_for(projects.state(), run=["echo waiting; sleep 60"], timeout=2))
    assert result.result == TIMED_OUT and result.failure_class == UNKNOWN
    assert result.summary.splitlines()[0].startswith("the job's timeout of 2s passed during echo waiting; sleep 60")
    result = r.runner.run(request_for(projects.state(), run=["echo 'ERROR: 3 tests failed' >&2; exit 1"]))
    assert result.result == FAILURE and result.failure_class == CHANGE
    assert result.summary.splitlines() == ["echo 'ERROR: 3 tests failed' >&2; exit 1 exited 1",
                                           "ERROR: 3 tests failed"]
