"""Headless Chromium against the running all-in-one (every service, on the embedded stand-ins): the status page
shows a change being tested with its jobs, and the page of its finished devstack build links to the archived
logs, which the web server serves."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from gatekeeper.allinone.service import AllInOne
from gatekeeper.allinone.world import EmbeddedWorld
from gatekeeper.config.settings import load_service_config
from gatekeeper.sim.devstack import NOVA_COMPUTE
from gatekeeper.zk.server import free_port
from tests.functional.gate_harness import wait_for
from tests.functional.test_browser import CHROMIUM, chromium
from tests.http import get_json

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
LAYOUTS = Path(__file__).resolve().parents[2] / "layouts"


@pytest.fixture
def aio(tmp_path):
    world = EmbeddedWorld(tmp_path / "aio", LAYOUTS, web_port=free_port()).start()
    service = None
    try:
        service = AllInOne(load_service_config(world.config_path)).start()
        yield world, service
    finally:
        if service is not None:
            service.stop()
        world.stop()


def test_status_and_build_pages_of_the_running_all_in_one(aio, tmp_path):
    world, service = aio
    web = service.web.url.rstrip("/")
    shots = tmp_path / "shots"
    shots.mkdir()
    dom, change = "", None
    for attempt in range(3):  # catch the change while its jobs run (they take seconds): retry if it finished first
        change = world.gerrit.create_change("openstack/nova", f"Tidy the boot path, take {attempt + 1}", owner="jane",
                                            files={"nova/compute.py": NOVA_COMPUTE + f"# tidy {attempt}\n"})
        key = f"{change.number},1"
        wait_for(lambda k=key: any(i["change"]["key"] == k and i["jobs"] for p in get_json(f"{web}/api/v1/status")[1]
                                   ["pipelines"] for q in p["queues"] for i in q["items"]), 60, "the change in check")
        dom = chromium(shots, f"{web}/", "--dump-dom")
        if f'data-change="{key}"' in dom:
            break
    assert f'data-change="{key}"' in dom and 'data-pipeline="check"' in dom
    assert f"Tidy the boot path, take {attempt + 1}" in dom and "openstack/nova" in dom
    assert 'data-job="devstack"' in dom and 'data-job="nova-unit"' in dom
    chromium(shots, f"{web}/", f"--screenshot={shots / 'status.png'}")
    assert (shots / "status.png").read_bytes().startswith(b"\x89PNG")

    wait_for(lambda: world.gerrit.votes(change).get("gatekeeper", {}).get("Verified") == 1, 120, "check's +1")
    build = wait_for(lambda: next(iter(get_json(f"{web}/api/v1/builds?change={change.number}&job=devstack")[1]), None),
                     30, "the devstack build in the history")
    dom = chromium(shots, f"{web}/build/{build['uuid']}", "--dump-dom")
    assert "SUCCESS" in dom
    links = sorted(set(re.findall(r'href="([^"]+/logs/[^"]+)"', dom)))
    names = {link.rsplit("/", 1)[-1] for link in links}
    assert {"console.txt", "syslog.txt"} <= names and any(n.startswith("screen-") for n in names), links
    for link in links:
        url = link if link.startswith("http") else web + link
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and resp.read(), url
    console = urllib.request.urlopen(next(u for u in links if u.endswith("console.txt")), timeout=10).read().decode()
    assert "NODE_PROVIDER=cloud-" in console
