"""The status document's view of a running build: the executor's start record turns a requested job into a
running one (start time, node, live console); a finished build shows its failure class, summary and known bugs."""

from __future__ import annotations

from types import SimpleNamespace

from gatekeeper.models.pipeline import Build
from gatekeeper.web.status import COMPLETED, QUEUED, RUNNING, job_status
from gatekeeper.zk.builds import BuildStart


def status(build, start=None, now=1000.0):
    return job_status("devstack", build, "openstack/nova", now, lambda p, j: 100.0, lambda b: f"/console/{b}",
                      lambda b: f"/build/{b}", start)


def test_requested_build_is_queued_until_its_executor_reports_a_node():
    build = Build(id="b1", job="devstack")
    assert status(build)["state"] == QUEUED
    waiting = BuildStart(id="b1", executor="ex1", started=900.0)  # taken, still waiting for a node
    assert status(build, waiting)["state"] == QUEUED


def test_started_build_is_running_with_its_node_elapsed_time_and_console():
    build = Build(id="b1", job="devstack")
    start = BuildStart(id="b1", executor="ex1", started=900.0, start_time=960.0,
                       node={"name": "0000000007", "label": "ubuntu-jammy", "provider": "cloud-b", "address": "x"})
    doc = status(build, start)
    assert doc["state"] == RUNNING and doc["start_time"] == 960.0 and doc["elapsed"] == 40.0
    assert doc["node"] == {"name": "0000000007", "label": "ubuntu-jammy", "provider": "cloud-b"}
    assert doc["console_url"] == "/console/b1" and doc["progress"] == 40 and doc["remaining"] == 60.0


def test_finished_build_ignores_a_stale_start_record_and_shows_its_diagnosis():
    build = SimpleNamespace(id="b1", attempt=1, voting=True, message="./exercise.sh exited 1", node={},
                            result="FAILURE", start_time=900.0, end_time=990.0, log_url="http://logs/b1/",
                            failure_class="change", summary="./exercise.sh exited 1\nexercise compute: FAIL",
                            signatures=[{"id": "1234", "title": "t", "url": "u"}])
    doc = status(build, BuildStart(id="b1", start_time=950.0, node={"name": "n"}))
    assert doc["state"] == COMPLETED and doc["console_url"] is None and doc["elapsed"] == 90.0
    assert doc["failure_class"] == "change" and doc["summary"].endswith("exercise compute: FAIL")
    assert doc["signatures"] == [{"id": "1234", "title": "t", "url": "u"}]
