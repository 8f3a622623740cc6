"""Known-bug signatures through the executor service and real ZooKeeper: read from the published layout, picked
up again when a new layout is published (no restart), each hit recorded, and listed by `gatekeeper signatures`."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from gatekeeper.cmd import main
from gatekeeper.config.layout import parse_layout
from gatekeeper.config.store import publish_layout
from gatekeeper.executor.build import ExecutorSettings
from gatekeeper.executor.logs import LogStore
from gatekeeper.executor.nodes import FixedNodes
from gatekeeper.executor.service import ExecutorService
from gatekeeper.web.server import WebService
from gatekeeper.zk import builds
from gatekeeper.zk.builds import ERROR, FAILURE, INFRASTRUCTURE
from gatekeeper.zk.signatures import SignatureHit, read_hits, record_hits
from tests.functional import test_executor
from tests.functional.test_browser import CHROMIUM, chromium
from tests.functional.test_executor import request_for
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

hosts = test_executor.hosts  # real sshd nodes
projects = test_executor.projects

FLAKY_STEP = "echo 'ERROR nova.compute.manager: Timeout waiting for vif plugging callback'; exit 1"
BUG_1234 = """signatures:
  - id: 1234
    title: n-cpu times out waiting for vif plugging
    url: https://bugs.example.com/1234
    pattern: 'Timeout waiting for vif plugging callback'
"""
BUG_5678 = """  - id: 5678
    title: DNS fails on the node
    pattern: 'Could not resolve host'
"""


def publish(zk, *extra: str) -> None:
    files = {"layout.yaml": GATE_LAYOUT}
    if extra:
        files["signatures.yaml"] = "".join(extra)
    publish_layout(zk, parse_layout(files))


def run(zk, request):
    builds.submit_build(zk, request)
    return wait_for(lambda: builds.read_build_result(zk, request.id) if request.id in builds.finished_builds(zk)
                    else None, 120, f"the result of build {request.id}")


@pytest.fixture
def executor(zk, tmp_path, hosts, projects):
    service = ExecutorService(zk, ExecutorSettings(work_dir=str(tmp_path / "executor"), max_held=0),
                              LogStore(str(tmp_path / "logs"), "http://logs.example.com"), projects.path,
                              nodes=FixedNodes([hosts.boot()])).start()
    yield service
    service.stop()


def test_signatures_come_from_the_published_layout_and_a_reload_needs_no_restart(zk, projects, executor, tmp_path,
                                                                                 capsys):
    publish(zk)  # no signatures yet
    first = run(zk, request_for(projects.state(), run=[FLAKY_STEP], number=11))
    assert first.result == FAILURE and first.signatures == []

    publish(zk, BUG_1234)
    second = run(zk, request_for(projects.state(), run=[FLAKY_STEP], number=12))
    assert second.signatures == [{"id": "1234", "title": "n-cpu times out waiting for vif plugging",
                                  "url": "https://bugs.example.com/1234"}]
    publish(zk, BUG_1234, BUG_5678)
    third = run(zk, request_for(projects.state(), run=["echo 'fatal: Could not resolve host: opendev.org'; exit 1"],
                                number=13))
    assert third.result == ERROR and third.failure_class == INFRASTRUCTURE
    assert [s["id"] for s in third.signatures] == ["5678"]

    hits = read_hits(zk)
    assert [(h.signature, h.build, h.change, h.provider) for h in hits] == [
        ("1234", second.id, "12,1", "loopback"), ("5678", third.id, "13,1", "loopback")]
    assert hits[0].log_url == second.log_url

    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"zookeeper:\n  hosts: {zk.hosts}\n  chroot: {zk.chroot}\n")
    assert main(["signatures", "-c", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith("1234 "))
    assert row.split()[1:4] == ["1", "1", "1"] and row.endswith("n-cpu times out waiting for vif plugging")
    assert any(second.log_url in line and "12,1" in line for line in out)
    assert main(["signatures", "-c", str(config), "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["5678"]["total"] == 1 and rows["5678"]["hits"][0]["build"] == third.id


def test_signatures_page_shows_hits_per_day_and_the_newest_hits(zk, zk_factory, tmp_path):
    publish(zk, BUG_1234, BUG_5678)
    now = time.time()
    record_hits(zk, [SignatureHit(signature="1234", title="n-cpu times out waiting for vif plugging", build=f"b{i}",
                                  job="devstack", change=f"{i},1", provider="cloud-b", time=now - age)
                     for i, age in enumerate((5 * 86400 + 60, 60, 120, 180))])
    web = WebService(zk_factory(), port=0).start()
    try:
        with urllib.request.urlopen(f"{web.url}/api/v1/signatures", timeout=10) as resp:
            rows = {r["id"]: r for r in json.loads(resp.read())}
        assert rows["1234"]["per_day"] == [0, 1, 0, 0, 0, 0, 3] and rows["1234"]["week"] == 4
        assert [h["build"] for h in rows["1234"]["recent"]] == ["b3", "b2", "b1", "b0"]
        assert rows["5678"]["total"] == 0 and rows["5678"]["in_layout"]
        if CHROMIUM is not None:
            dom = chromium(tmp_path, f"{web.url}/signatures", "--dump-dom")
            assert "n-cpu times out waiting for vif plugging" in dom and "DNS fails on the node" in dom
            assert '<span class="per-day" data-signature="1234">0 1 0 0 0 0 3</span>' in dom
            assert 'href="/build/b3"' in dom and "on cloud-b" in dom
    finally:
        web.stop()
