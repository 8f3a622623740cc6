"""The executor service through real ZooKeeper: claiming, results, cancellation, a dead executor's builds."""

from __future__ import annotations

import json
import urllib.request

import pytest

from gatekeeper.executor.build import ExecutorSettings
from gatekeeper.executor.logs import LogStore
from gatekeeper.executor.nodes import FixedNodes
from gatekeeper.executor.service import ExecutorService
from gatekeeper.zk import builds, paths
from gatekeeper.zk.builds import ERROR, SUCCESS
from gatekeeper.zk.components import list_components
from tests.functional.test_executor import hosts, projects, request_for  # noqa: F401 (fixtures)
from tests.helpers import wait_for


@pytest.fixture
def make_executor(tmp_path, projects):  # noqa: F811
    started: list[ExecutorService] = []

    def make(zk, nodes, **kwargs) -> ExecutorService:
        n = len(started)
        settings = ExecutorSettings(work_dir=str(tmp_path / f"executor{n}"))
        service = ExecutorService(zk, settings, LogStore(str(tmp_path / "logs"), "http://logs.example.com"),
                                  projects.path, nodes=FixedNodes(nodes), **kwargs)
        started.append(service.start())
        return service

    yield make
    for service in started:
        try:
            service.stop()
        except Exception:
            pass


def result_of(zk, build_id: str):
    return wait_for(lambda: builds.read_build_result(zk, build_id) if build_id in builds.finished_builds(zk) else None,
                    what=f"a result for build {build_id}")


def test_executor_claims_a_request_runs_it_and_publishes_the_result(zk, hosts, projects, make_executor):  # noqa: F811
    node = hosts.boot()
    executor = make_executor(zk, [node])
    assert [c.ident for c in list_components(zk, "executor")] == [executor.name]
    request = request_for(projects.state(), run=["echo hello from $GK_JOB"])
    builds.submit_build(zk, request)
    result = result_of(zk, request.id)
    assert (result.result, result.executor, result.item) == (SUCCESS, executor.name, request.item)
    assert result.node["name"] == node.id and result.log_url.endswith(f"/gate/devstack/{request.id[:12]}/")
    assert builds.pending_builds(zk) == []
    assert not zk.client.exists(paths.executor_running(request.id))
    # the web service finds the console through the registration: <extra["console"]>/console/<build id>
    base = list_components(zk, "executor")[0].extra["console"]
    with urllib.request.urlopen(f"{base}/console/{request.id}", timeout=10) as resp:
        assert "| hello from devstack\n" in resp.read().decode()


def test_cancelled_request_aborts_the_running_build_and_publishes_nothing(zk, hosts, projects,  # noqa: F811
                                                                          make_executor):
    node = hosts.boot()
    executor = make_executor(zk, [node])
    request = request_for(projects.state(), run=["echo running; sleep 120"])
    builds.submit_build(zk, request)
    wait_for(lambda: executor.consoles.get(request.id) and "running" in open(
        executor.consoles.get(request.id).path).read(), what="the step to start")
    assert builds.cancel_build(zk, request.id)
    wait_for(lambda: not executor.running, what="the build to end")
    assert builds.finished_builds(zk) == []
    assert executor.nodes.released == [(node.id, False, "")]


def test_builds_of_a_dead_executor_are_reported_for_retry(zk, zk_factory, hosts, projects,  # noqa: F811
                                                          make_executor):
    doomed_zk = zk_factory()
    doomed = make_executor(doomed_zk, [hosts.boot()])
    request = request_for(projects.state(), run=["echo running; sleep 120"])
    builds.submit_build(zk, request)
    wait_for(lambda: doomed.consoles.get(request.id) and "running" in open(
        doomed.consoles.get(request.id).path).read(), what="the step to start")
    owner = json.loads(zk.client.get(paths.executor_running(request.id))[0])["executor"]
    assert owner == doomed.name
    doomed_zk.stop()  # the executor's session ends: its build lock and registration go with it
    survivor = make_executor(zk, [hosts.boot()])
    result = result_of(zk, request.id)
    assert result.result == ERROR and result.executor == survivor.name
    assert result.message == f"executor {doomed.name} stopped while running this build; retrying"
    assert not zk.client.exists(paths.executor_running(request.id))
    for rb in list(doomed.running.values()):  # end the orphaned build's thread (its node is torn down anyway)
        rb.stopping = True
        rb.abort.set()


def test_a_running_executor_learns_from_the_lock_watch_that_another_died_and_reports_its_build(
        zk, zk_factory, hosts, projects, make_executor):  # noqa: F811
    doomed_zk = zk_factory()
    doomed = make_executor(doomed_zk, [hosts.boot()])
    request = request_for(projects.state(), run=["echo running; sleep 120"])
    builds.submit_build(zk, request)
    wait_for(lambda: doomed.consoles.get(request.id) and "running" in open(
        doomed.consoles.get(request.id).path).read(), what="the step to start")
    survivor = make_executor(zk_factory(), [hosts.boot()])
    wait_for(lambda: survivor.watched_claims() == [request.id], what="the survivor to watch the build's lock")
    doomed_zk.stop()  # no new request, no free slot: only the watch on the lock can tell the survivor
    result = result_of(zk, request.id)
    assert (result.result, result.executor) == (ERROR, survivor.name)
    assert result.message == f"executor {doomed.name} stopped while running this build; retrying"
    assert survivor.watched_claims() == [] and not survivor.running
    for rb in list(doomed.running.values()):
        rb.stopping = True
        rb.abort.set()


def test_stopping_executor_hands_its_running_build_to_another(zk, zk_factory, hosts, projects,  # noqa: F811
                                                              make_executor):
    first = make_executor(zk_factory(), [hosts.boot()])
    request = request_for(projects.state(), run=["test -f $HOME/second || { echo running; sleep 120; }"])
    builds.submit_build(zk, request)
    wait_for(lambda: first.consoles.get(request.id) and "running" in open(
        first.consoles.get(request.id).path).read(), what="the step to start")
    first.stop()
    assert builds.pending_builds(zk) == [request.id] and builds.finished_builds(zk) == []
    assert not zk.client.exists(paths.executor_running(request.id))
    node = hosts.boot()
    open(f"{hosts.home(node)}/second", "w").close()
    second = make_executor(zk, [node])
    result = result_of(zk, request.id)
    assert (result.result, result.executor) == (SUCCESS, second.name)


def test_a_claim_whose_start_zookeeper_dropped_is_started_again_not_left_locked(zk, hosts, projects,  # noqa: F811
                                                                                 make_executor, monkeypatch):
    """The connection drops between claiming a request and writing its running record (as when a ZooKeeper
    member dies): the session, and so the claim, lives on; the build must still run, not sit locked for ever."""
    from kazoo.exceptions import ConnectionLoss

    real_write, failures = builds.write_build_start, []

    def dropped_once(zk_client, start):
        if not failures:
            failures.append(start.id)
            raise ConnectionLoss()
        return real_write(zk_client, start)

    monkeypatch.setattr(builds, "write_build_start", dropped_once)
    executor = make_executor(zk, [hosts.boot()])
    request = request_for(projects.state(), run=["echo hello"])
    builds.submit_build(zk, request)
    result = result_of(zk, request.id)
    assert failures == [request.id]
    assert (result.result, result.executor) == (SUCCESS, executor.name)
    assert builds.pending_builds(zk) == [] and not zk.client.get_children(paths.lock("build"))
