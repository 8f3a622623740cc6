"""Builds are visible while they run and say why they failed once they end, through the real scheduler, executor,
history recorder and web:

- the executor reports a build's start through ZooKeeper (time, node, provider, live console), and the status
  JSON, `gatekeeper status`, and the status and build pages in a headless Chromium show the job as running, with
  its node and a console that streams;
- a failed build's class, summary and known bugs reach the history database, the build API and page, and
  `gatekeeper build`."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest

from gatekeeper.cmd import main
from gatekeeper.executor.remote import RemoteHost
from gatekeeper.history.db import HistoryDB
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.sim.devstack import BROKEN_NOVA_COMPUTE
from gatekeeper.web.server import WebService
from gatekeeper.zk.builds import running_builds
from tests.functional.test_browser import CHROMIUM, chromium
from tests.functional.test_executor_e2e import E2E
from tests.functional.test_executor_e2e import LAYOUT as E2E_LAYOUT
from tests.helpers import wait_for

WAIT_JOB = """  - name: wait
    label: ubuntu-jammy
    timeout: 120
    attempts: 1
    run: ['echo first line; while [ ! -f "$HOME/go" ]; do sleep 0.2; done; echo second line']
"""
LAYOUT = E2E_LAYOUT.replace("\nprojects:\n", "\n" + WAIT_JOB + "projects:\n", 1).replace(
    "pipelines: {check: [hang]}", "pipelines: {check: [wait]}")


class Rig:
    def __init__(self, e2e: E2E, web: WebService) -> None:
        self.e2e, self.web = e2e, web

    def status(self) -> dict:
        self.web._status_cache.clear()  # read through the one-second cache
        with urllib.request.urlopen(f"{self.web.url}/api/v1/status", timeout=10) as resp:
            return json.loads(resp.read())

    def job(self, pipeline: str, name: str) -> dict | None:
        for p in self.status()["pipelines"]:
            for q in p["queues"] if p["name"] == pipeline else ():
                for item in q["items"]:
                    for job in item["jobs"]:
                        if job["name"] == name:
                            return job
        return None


@pytest.fixture
def rig(tmp_path, zk_factory) -> Iterator[Rig]:
    e2e = E2E(tmp_path, zk_factory, LAYOUT)
    web = recorder = None
    db = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    try:
        recorder = HistoryRecorder(zk_factory(), db).start()
        web = WebService(zk_factory(), port=0, history=db, log_dir=e2e.store.root,
                         log_url=e2e.store.url).start()
        yield Rig(e2e, web)
    finally:
        if web is not None:
            web.stop()
        if recorder is not None:
            recorder.stop()
        db.close()
        e2e.stop()


def test_running_job_shows_its_node_and_a_console_that_streams(rig, tmp_path, capsys):
    gate = rig.e2e.gate
    change = gate.change("openstack/glance", "Wait for go")
    running = wait_for(lambda: (j := rig.job("check", "wait")) and j["state"] == "running" and j, 120,
                       "the wait job to show as running")
    start = running_builds(gate.zk)[running["build"]]
    assert start.node["provider"] == "sim-alpha" and start.console_url.endswith(f"/console/{running['build']}")
    assert running["node"] == {"name": start.node["name"], "label": "ubuntu-jammy", "provider": "sim-alpha"}
    assert running["start_time"] == start.start_time and running["elapsed"] >= 0
    assert running["console_url"] == f"/api/v1/builds/{running['build']}/console"
    assert running["result"] is None and running["end_time"] is None

    # the web relays the executor's live console while the job runs
    with urllib.request.urlopen(rig.web.url + running["console_url"], timeout=30) as resp:
        seen = b""
        while b"| first line\n" not in seen:
            chunk = resp.read1(4096)
            assert chunk, "the console ended before the job's first line"
            seen += chunk

    assert main(["status", "--url", rig.web.url, "--pipeline", "check"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("wait "))
    assert " running " in line and f"{rig.web.url}/api/v1/builds/{running['build']}/console" in line
    assert f"on {start.node['name']} (sim-alpha)" in line

    node = rig.e2e.node(start.node["name"])

    def let_the_job_end() -> None:
        with RemoteHost(node).connect() as remote:
            remote.execute("touch go")

    if CHROMIUM is None:
        let_the_job_end()
    else:
        dom = chromium(tmp_path, f"{rig.web.url}/", "--dump-dom")
        assert 'data-job="wait" data-state="running"' in dom
        assert f'data-node="{start.node["name"]}"' in dom and "on sim-alpha" in dom
        assert f'data-console="/api/v1/builds/{running["build"]}/console"' in dom

        earlier = set(rig.web.relays)  # the relay read above may linger until its next chunk

        def end_once_watched() -> None:  # the browser follows the console first, then the job goes on
            wait_for(lambda: rig.web.relays - earlier, 60, "the browser to open the live console")
            let_the_job_end()

        ender = threading.Thread(target=end_once_watched, daemon=True)
        ender.start()
        dom = chromium(tmp_path, f"{rig.web.url}/build/{running['build']}", "--dump-dom")
        ender.join(30)
        assert "live console" in dom and 'data-ended="true"' in dom
        text = dom[dom.index('class="console"'):]
        assert text.index("| first line") < text.index("| second line") < text.index("[console ended]")

    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": 1}
    assert running["build"] not in running_builds(gate.zk)  # the record goes with the build
    done = rig.job("check", "wait")
    assert done is None or done["state"] == "completed"


def test_failed_build_says_why_in_history_build_page_and_cli(rig, tmp_path, capsys):
    gate = rig.e2e.gate
    change = gate.change("openstack/nova", "Break boot", files={"nova/compute.py": BROKEN_NOVA_COMPUTE})
    gate.settle(120)
    assert gate.ci_votes(change) == {"Verified": -1}
    (result,) = rig.e2e.results(change)
    assert result.failure_class == "change"
    db = rig.web.history
    row = wait_for(lambda: db.build(result.id), 30, "the build in the history database")
    assert row.failure_class == "change" and row.summary == result.summary
    assert "AssertionError: expected ACTIVE, got 'ERROR'" in row.summary

    with urllib.request.urlopen(f"{rig.web.url}/api/v1/builds/{result.id}", timeout=10) as resp:
        doc = json.loads(resp.read())
    assert (doc["failure_class"], doc["summary"], doc["signatures"]) == ("change", result.summary, [])

    assert main(["build", result.id, "--url", rig.web.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "class     change" in out
    assert "  | exercise compute: FAIL" in out and "  | AssertionError: expected ACTIVE, got 'ERROR'" in out

    if CHROMIUM is not None:
        dom = chromium(tmp_path, f"{rig.web.url}/build/{result.id}", "--dump-dom")
        assert "why it failed" in dom and "failed in the job's own steps" in dom
        assert "exercise compute: FAIL\nAssertionError" not in dom  # the summary keeps its lines
        assert "exercise compute: FAIL" in dom and "AssertionError: expected ACTIVE, got 'ERROR'" in dom
