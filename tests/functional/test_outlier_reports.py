"""A failure that ran on a provider flagged as a job-failure outlier says so, wherever its diagnosis goes.

The history recorder (real ZooKeeper, SQLite) recomputes the outliers from the builds the scheduler reported and
publishes them; a real executor build on a flagged provider's node (sshd host, devstack stand-in) carries the
outlier sentence in its summary; end to end, the Gerrit report of such a failure carries it.
"""

from __future__ import annotations

from gatekeeper.executor import logs
from gatekeeper.executor.build import BuildRunner, ExecutorSettings
from gatekeeper.executor.console import ConsoleRegistry
from gatekeeper.executor.nodes import FixedNodes
from gatekeeper.executor.workspace import GitCache
from gatekeeper.history import recorder as recorder_module
from gatekeeper.history.db import HistoryDB
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.sim.devstack import BROKEN_NOVA_COMPUTE
from gatekeeper.zk.builds import CHANGE, FAILURE
from gatekeeper.zk.history import BuildEvent, BuildsetEvent, report_build, report_buildset
from gatekeeper.zk.provider_outliers import OutlierWatch, publish_outliers, read_outliers
from tests.functional import test_executor, test_executor_e2e
from tests.functional.test_executor import request_for
from tests.helpers import wait_for

hosts = test_executor.hosts
projects = test_executor.projects
e2e = test_executor_e2e.e2e

SENTENCE = ("This failure ran on cloud-b, whose job failure rate (12 of 20) is 4.0x the other providers' (9 of 60); "
            "it may not be the change's fault.")


def report_history(zk, runs: dict[str, tuple[int, int]]) -> int:
    """Report, as the scheduler does, `builds` final jobs per provider of which `failures` failed."""
    report_buildset(zk, BuildsetEvent(id="bs", pipeline="check", project="nova", change=1, patchset=1))
    count = 0
    for provider, (builds, failures) in runs.items():
        for n in range(builds):
            count += 1
            report_build(zk, BuildEvent(id=f"{provider}-{n}", buildset="bs", job="devstack",
                                        result=FAILURE if n < failures else "SUCCESS", start_time=count,
                                        end_time=count + 1, node={"provider": provider}, failure_class=CHANGE
                                        if n < failures else ""))
    return count


def flagged(zk) -> list[str]:
    return [o["provider"] for o in read_outliers(zk).outliers]


def test_recorder_publishes_the_outlier_provider_and_clears_it_when_it_recovers(zk, tmp_path, monkeypatch):
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", 600.0)  # only the queue's watch wakes it in time
    monkeypatch.setattr(recorder_module, "OUTLIER_WINDOW", 80)  # the latest 80 builds are compared
    db = HistoryDB(f"sqlite:///{tmp_path}/h.sqlite")
    recorder = HistoryRecorder(zk, db).start()
    try:
        report_history(zk, {"cloud-a": (30, 5), "cloud-b": (20, 12), "cloud-c": (30, 4)})
        wait_for(lambda: recorder.stored == 81, timeout=20, what="every build to be recorded")
        wait_for(lambda: [(o["provider"], o["failures"], o["builds"], o["others_failures"], o["others_builds"])
                          for o in read_outliers(zk).outliers] == [("cloud-b", 12, 20, 9, 60)],
                 timeout=20, what="cloud-b to be flagged over all 80 builds")
        # the provider recovers: its failures leave the window
        for n in range(80):
            report_build(zk, BuildEvent(id=f"ok-{n}", buildset="bs", job="devstack", result="SUCCESS",
                                        start_time=1000 + n, end_time=1001 + n,
                                        node={"provider": ("cloud-a", "cloud-b")[n % 2]}))
        wait_for(lambda: flagged(zk) == [], timeout=20, what="cloud-b to be cleared")
    finally:
        recorder.stop()
        db.close()


def test_failed_build_on_a_flagged_provider_carries_the_outlier_sentence(zk, hosts, projects, tmp_path):
    publish_outliers(zk, [{"provider": "cloud-b", "builds": 20, "failures": 12, "others_builds": 60,
                           "others_failures": 9, "ratio": 4.0, "description": "cloud-b's failure rate is 4.0x"}])
    watch = OutlierWatch(zk)
    step = projects.change("openstack/nova", {"nova/compute.py": (BROKEN_NOVA_COMPUTE, False)}, "Break boot", 2)
    for provider, expected in (("cloud-b", True), ("cloud-a", False)):
        node = hosts.boot()
        node.provider = provider
        runner = BuildRunner(ExecutorSettings(work_dir=str(tmp_path / provider)),
                             GitCache(str(tmp_path / "cache"), projects.path), FixedNodes([node], outliers=watch.get),
                             logs.LogStore(str(tmp_path / "logstore"), "http://logs.example.com"), ConsoleRegistry())
        result = runner.run(request_for(projects.state(step), number=2))
        assert result.result == FAILURE and result.failure_class == CHANGE
        assert result.summary.splitlines()[1] == "exercise compute: FAIL"  # the diagnosis itself is unchanged
        assert (result.summary.splitlines()[-1] == SENTENCE) is expected, result.summary


def test_gerrit_report_of_a_failure_on_a_flagged_provider_says_it_may_not_be_the_change(e2e):
    gate = e2e.gate
    publish_outliers(gate.zk, [{"provider": "sim-alpha", "builds": 20, "failures": 12, "others_builds": 60,
                                "others_failures": 9, "ratio": 4.0, "description": "sim-alpha is an outlier"}])
    change = gate.change("openstack/nova", "Break boot", files={"nova/compute.py": BROKEN_NOVA_COMPUTE})
    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": -1}  # a flag is a hint for people, not a vote
    sentence = ("  This failure ran on sim-alpha, whose job failure rate (12 of 20) is 4.0x the other providers' "
                "(9 of 60); it may not be the change's fault.")
    assert any(sentence in m.splitlines() for m in gate.ci_messages(change)), gate.ci_messages(change)
