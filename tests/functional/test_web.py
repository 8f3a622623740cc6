"""The web service over real HTTP and a real ZooKeeper: status, history, nodes, logs, console relay, admin API."""

from __future__ import annotations

import gzip
import json
import logging
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import yaml

from gatekeeper.child_process import start_tied
from gatekeeper.executor.console import Console, ConsoleRegistry, ConsoleServer
from gatekeeper.history.db import HistoryDB
from gatekeeper.launcher.client import add_autohold
from gatekeeper.launcher.model import Autohold, ImageBuild, Node
from gatekeeper.web.server import STATUS_TTL, WebService
from gatekeeper.zk import paths
from gatekeeper.zk.components import Component
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.history import BuildEvent, BuildsetEvent
from gatekeeper.zk.server import free_port
from tests.helpers import wait_for
from tests.http import call, get, get_json
from tests.unit.test_web_status import sample_state

TOKEN = "s3cret-admin-token"


def layout() -> SimpleNamespace:
    pipelines = {name: SimpleNamespace(name=name, manager=manager, description=f"the {name} pipeline")
                 for name, manager in (("check", "independent"), ("gate", "dependent"))}
    return SimpleNamespace(pipelines=pipelines, projects={"nova": SimpleNamespace(name="nova")})


def start_web(zk, tmp_path) -> WebService:
    """A web service on a free port, its gate holding `sample_state()` (read through the web's state-loader seam,
    as the scheduler's store is not wired yet), its history one build with archived logs."""
    states: dict = {}
    logs = tmp_path / "logs"
    (logs / "1" / "tox" / "sub").mkdir(parents=True)
    (logs / "1" / "tox" / "job-output.txt").write_text("tox: 42 passed\n")
    (logs / "1" / "tox" / "sub" / "pip.log").write_text("pip ok\n")
    history = HistoryDB(f"sqlite:///{tmp_path}/history.sqlite")
    web = WebService(zk, port=0, admin_token=TOKEN, history=history, log_dir=logs, management_timeout=1.0,
                     state_loader=lambda _zk, name: states.get(name), layout_loader=layout).start()
    history.record_buildset(BuildsetEvent(id="bs1", pipeline="gate", project="nova", change=1, patchset=1))
    history.record_build(BuildEvent(id="build-tox-a", buildset="bs1", job="tox", result="SUCCESS", start_time=100,
                                    end_time=200, log_url=f"{web.url}/logs/1/tox/",
                                    node={"name": "n1", "label": "debian", "provider": "sim-a"}))
    history.record_build(BuildEvent(id="old-devstack", buildset="bs1", job="devstack", result="NODE_FAILURE",
                                    final=False, start_time=100, end_time=110))
    states["gate"] = sample_state(now=time.time(), log_url=f"{web.url}/logs/1/tox/")
    return web


@contextmanager
def running_web(zk, tmp_path) -> Iterator[WebService]:
    """`start_web`'s service, stopped and its history database closed on the way out."""
    service = start_web(zk, tmp_path)
    try:
        yield service
    finally:
        service.stop()
        service.history.close()


@pytest.fixture
def web(zk, tmp_path) -> Iterator[WebService]:
    with running_web(zk, tmp_path) as service:
        yield service


class LiveConsole:
    """A build's open console on a console server that a registered executor announces in ZooKeeper: what the
    web relays. `stop()` unregisters the executor and stops the server."""

    def __init__(self, zk, tmp_path, build: str = "build-devstack-a") -> None:
        self.registry = ConsoleRegistry()
        self.console = Console(build, str(tmp_path / "console" / f"{build}.txt"))
        self.registry.add(self.console)
        self.server = ConsoleServer(self.registry).start()
        self.executor = Component(zk, "executor", extra={"console": f"http://{self.server.host}:{self.server.port}"})
        self.executor.register()

    def stop(self) -> None:
        self.executor.unregister()
        self.server.stop()


def post(web: WebService, action: str, body: dict, token: str | None = TOKEN, user: str = "alice"):
    """An admin request as `user`."""
    return call(f"{web.url}/api/v1/admin/{action}", "POST", token, body, headers={"X-Gatekeeper-User": user})


def test_status_json_lists_every_pipeline_with_queued_items_and_jobs(web):
    code, status = get_json(f"{web.url}/api/v1/status")
    assert code == 200 and status["schema"] == 1
    assert [p["name"] for p in status["pipelines"]] == ["check", "gate"]
    gate = status["pipelines"][1]
    items = gate["queues"][0]["items"]
    assert [(i["change"]["key"], [j["name"] for j in i["jobs"]]) for i in items] == [
        ("1,1", ["tox", "devstack"]), ("2,1", ["tox", "devstack"])]
    tox = items[0]["jobs"][0]
    assert tox["estimated"] == 100.0  # from the history
    assert tox["log_url"].endswith("/logs/1/tox/") and tox["build_url"] == "/build/build-tox-a"
    assert status["event_queues"]["management"] == 0
    code, found = get_json(f"{web.url}/api/v1/status/change/2")
    assert code == 200 and found[0]["pipeline"] == "gate"
    assert get_json(f"{web.url}/api/v1/status/change/99")[0] == 404


def test_history_filters_and_build_page_data_with_archived_log_files(web):
    code, rows = get_json(f"{web.url}/api/v1/builds?project=nova&result=SUCCESS")
    assert code == 200 and [r["uuid"] for r in rows] == ["build-tox-a"]
    assert [r["uuid"] for r in get_json(f"{web.url}/api/v1/builds?final=false")[1]] == ["old-devstack"]
    assert get_json(f"{web.url}/api/v1/builds?change=1&job=devstack")[1][0]["result"] == "NODE_FAILURE"
    assert get_json(f"{web.url}/api/v1/builds?change=abc")[0] == 400
    code, build = get_json(f"{web.url}/api/v1/builds/build-tox-a")
    assert (build["result"], build["node_provider"]) == ("SUCCESS", "sim-a")
    assert [f["name"] for f in build["logs"]] == ["job-output.txt", "sub/pip.log"]
    code, body, headers = get(build["logs"][0]["url"])
    assert code == 200 and body == b"tox: 42 passed\n" and headers["Content-Type"].startswith("text/plain")
    code, running = get_json(f"{web.url}/api/v1/builds/build-devstack-a")  # running: from the status
    assert running["state"] == "running" and running["console_url"] == "/api/v1/builds/build-devstack-a/console"
    assert get_json(f"{web.url}/api/v1/builds/nope")[0] == 404


def test_log_server_refuses_paths_outside_the_store_and_lists_folders(web):
    assert get(f"{web.url}/logs/../history.sqlite")[0] == 404
    assert get(f"{web.url}/logs/%2e%2e/history.sqlite")[0] == 404
    code, body, _ = get(f"{web.url}/logs/1/tox/")
    assert code == 200 and b'href="job-output.txt"' in body and b'href="sub/"' in body
    (web.logs.root / "1" / "tox" / "big.txt.gz").write_bytes(gzip.compress(b"a big log\n"))
    code, body, headers = get(f"{web.url}/logs/1/tox/big.txt.gz")  # shown inline, decompressed by the browser
    assert (headers["Content-Type"], headers["Content-Encoding"]) == ("text/plain; charset=utf-8", "gzip")
    assert gzip.decompress(body) == b"a big log\n"


def test_pages_are_served_without_a_build_step(web):
    for page, marker in (("/", b"gk.statusPage()"), ("/builds", b"gk.buildsPage()"),
                         ("/build/build-tox-a", b"gk.buildPage()"), ("/nodes", b'"/api/v1/nodes"'),
                         ("/images", b'"/api/v1/images"'), ("/holds", b'"/api/v1/holds"'),
                         ("/static/gatekeeper.js", b"gk.renderStatus")):
        code, body, _ = get(web.url + page)
        assert code == 200 and marker in body, page
    assert get(f"{web.url}/static/../server.py")[0] == 404


def test_nodes_images_and_holds_read_the_launcher_records(web, zk):
    for node in (Node(id="0001", provider="sim-a", label="debian", state="ready", private_key="/secret/key"),
                 Node(id="0002", provider="sim-b", label="debian", state="hold", hold_reason="debug 1,1")):
        zk.client.create(paths.node(node.id), node.to_bytes(), makepath=True)
    build = ImageBuild(id="0000000001", image="debian", provider="sim-a", state="ready", external_id="img-1")
    zk.client.create(paths.image_build("debian", "sim-a", build.id), build.to_bytes(), makepath=True)
    add_autohold(zk, Autohold(project="nova", job="devstack", reason="why"))
    zk.client.create(f"{paths.node_lock('0002')}/holder", b"", makepath=True)  # a consumer holds it
    nodes = get_json(f"{web.url}/api/v1/nodes")[1]
    assert [(n["id"], n["state"], n["locked"]) for n in nodes] == [("0001", "ready", False), ("0002", "hold", True)]
    assert "private_key" not in nodes[0]
    assert [(i["image"], i["provider"], i["external_id"]) for i in get_json(f"{web.url}/api/v1/images")[1]] == [
        ("debian", "sim-a", "img-1")]
    holds = get_json(f"{web.url}/api/v1/holds")[1]
    assert [n["id"] for n in holds["nodes"]] == ["0002"]
    assert [(h["project"], h["job"]) for h in holds["autoholds"]] == [("nova", "devstack")]
    metrics = get(f"{web.url}/metrics")
    assert metrics[0] == 200 and metrics[2]["Content-Type"].startswith("text/plain; version=0.0.4")
    text = metrics[1].decode()
    assert 'gatekeeper_nodes{label="debian",provider="sim-a",state="ready"} 1' in text
    assert 'gatekeeper_queue_items{pipeline="gate",queue="integrated"} 2' in text
    assert 'gatekeeper_job_results_total{job="tox",project="nova",result="SUCCESS"} 1' in text
    request = urllib.request.Request(f"{web.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().endswith(b"# EOF\n")


def test_admin_api_needs_the_token_401_without_403_wrong(web, zk, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.web")
    code, body = post(web, "enqueue", {"pipeline": "gate", "change": "3,1"}, token=None)
    assert code == 401 and "Bearer" in body["error"]
    code, body = post(web, "enqueue", {"pipeline": "gate", "change": "3,1"}, token="wrong-token")
    assert code == 403 and "not valid" in body["error"]
    assert len(EventQueue(zk, paths.management_queue())) == 0
    assert "wrong-token" not in caplog.text


def test_admin_request_goes_to_the_scheduler_and_is_logged_even_when_no_scheduler_answers(web, zk, caplog):
    caplog.set_level(logging.INFO, logger="gatekeeper.web")
    web.admin.timeout = 3.0
    queue = EventQueue(zk, paths.management_queue())
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post, web, "promote", {"pipeline": "gate", "changes": "2,1 1,1"})
        [(_, event)] = wait_for(queue.list, 3, "the request in the management queue")
        code, body = answer.result()
    assert (event["action"], event["pipeline"], event["changes"], event["user"]) == (
        "promote", "gate", ["2,1", "1,1"], "alice from 127.0.0.1")
    assert code == 504 and "no scheduler answered promote" in body["error"]
    assert queue.list() == []  # withdrawn: it will not run after the operator was told it failed
    audit = [r.getMessage() for r in caplog.records if r.name == "gatekeeper.web.audit"]
    assert any(m.startswith("admin promote by alice from 127.0.0.1: changes=2,1 1,1 pipeline=gate failed: no "
                            "scheduler answered") for m in audit), audit
    assert TOKEN not in caplog.text


def test_admin_refuses_unknown_pipeline_bad_change_and_unknown_action(web):
    assert post(web, "enqueue", {"pipeline": "gat", "change": "3,1"}) == (
        404, {"error": 'no pipeline "gat" (known: check, gate)'})
    assert post(web, "enqueue", {"pipeline": "gate", "change": "three"})[0] == 400
    assert post(web, "dequeue", {"pipeline": "gate"}) == (400, {"error": "missing field: change"})
    assert post(web, "reboot-everything", {})[0] == 404


def test_admin_holds_and_releases_a_node_and_adds_an_autohold(web, zk):
    zk.client.create(paths.node("0007"), Node(id="0007", provider="sim-a", label="debian", state="in-use")
                     .to_bytes(), makepath=True)
    assert post(web, "hold-node", {"node": "0007", "reason": "debug"}) == (
        200, {"id": "0007", "action": "hold-node", "state": "in-use"})
    node = Node.from_bytes(zk.client.get(paths.node("0007"))[0])
    assert node.hold_requested == "debug (by alice from 127.0.0.1)"
    assert post(web, "release-node", {"node": "0007"}) == (409, {"error": "node 0007 is in-use (expected hold)"})
    node.state = "hold"
    zk.client.set(paths.node("0007"), node.to_bytes())
    assert post(web, "release-node", {"node": "0007"})[1]["state"] == "used"
    assert zk.client.exists(paths.released_node("0007"))
    assert post(web, "hold-node", {"node": "0404", "reason": "x"}) == (404, {"error": "no node 0404"})
    code, body = post(web, "autohold", {"project": "nova", "job": "devstack", "reason": "flaky", "count": 2})
    assert code == 200
    holds = get_json(f"{web.url}/api/v1/holds")[1]["autoholds"]
    assert [(h["id"], h["count"], h["reason"]) for h in holds] == [(body["id"], 2, "flaky (by alice from 127.0.0.1)")]


def test_admin_holds_a_held_node_again_only_when_asked_to_replace_its_hold(web, zk):
    zk.client.create(paths.node("0008"), Node(id="0008", provider="sim-a", label="debian", state="hold",
                                              hold_reason="carol's hold", hold_until=time.time() + 3600).to_bytes(),
                     makepath=True)
    code, body = post(web, "hold-node", {"node": "0008", "reason": "mine now", "hours": 0.01})
    assert code == 409 and body["error"].startswith("node 0008 is held already until "), body
    assert "(carol's hold); to put this reason and expiry in its place" in body["error"]
    assert post(web, "hold-node", {"node": "0008", "reason": "mine now", "replace": "yes"})[0] == 400
    assert Node.from_bytes(zk.client.get(paths.node("0008"))[0]).hold_reason == "carol's hold"
    assert post(web, "hold-node", {"node": "0008", "reason": "mine now", "hours": 0.01, "replace": True}) == (
        200, {"id": "0008", "action": "hold-node", "state": "hold"})
    assert Node.from_bytes(zk.client.get(paths.node("0008"))[0]).hold_reason == "mine now (by alice from 127.0.0.1)"


def test_admin_refuses_an_autohold_for_a_project_the_layout_does_not_know(web):
    assert post(web, "autohold", {"project": "nvoa", "reason": "flaky"}) == (
        404, {"error": 'no project "nvoa" in the published layout (did you mean nova?)'})
    assert get_json(f"{web.url}/api/v1/holds")[1]["autoholds"] == []


def test_live_console_is_relayed_from_the_executor_while_it_is_written(web, zk, tmp_path):
    live = LiveConsole(zk, tmp_path)
    registry, console = live.registry, live.console
    try:
        console.line("first line")
        with urllib.request.urlopen(f"{web.url}/api/v1/builds/build-devstack-a/console", timeout=10) as resp:
            assert resp.readline().endswith(b"| first line\n")
            console.line("written while we watch")
            assert resp.readline().endswith(b"| written while we watch\n")
            console.close()
            registry.finish("build-devstack-a")
            assert resp.read() == b""
        assert get(f"{web.url}/api/v1/builds/unknown-build/console")[0] == 404
    finally:
        live.stop()


def test_live_console_streams_as_server_sent_events_and_ends_with_an_end_event(web, zk, tmp_path):
    live = LiveConsole(zk, tmp_path)
    registry, console = live.registry, live.console
    try:
        console.line("first line")
        request = urllib.request.Request(f"{web.url}/api/v1/builds/build-devstack-a/console",
                                         headers={"Accept": "text/event-stream"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.readline() == b"retry: 3000\n" and resp.readline() == b"\n"
            first = resp.readline()
            assert first.startswith(b"data: ") and first.endswith(b"| first line\n") and resp.readline() == b"\n"
            console.line("written while we watch \xe9")
            event = resp.readline()
            assert event.startswith(b"data: ") and event.endswith("| written while we watch \xe9\n".encode())
            assert resp.readline() == b"\n"
            console.close()
            registry.finish("build-devstack-a")
            assert resp.read() == b"event: end\ndata: the console is closed\n\n"
    finally:
        live.stop()


def test_stopping_the_web_ends_an_open_console_relay(zk, tmp_path):
    web = start_web(zk, tmp_path)
    live = LiveConsole(zk, tmp_path)
    console = live.console
    try:
        console.line("a line")
        with urllib.request.urlopen(f"{web.url}/api/v1/builds/build-devstack-a/console", timeout=10) as resp:
            assert resp.readline().endswith(b"| a line\n")
            assert len(web.relays) == 1
            web.stop()  # the console is still open: the relay must end rather than hold the server
            assert resp.read() == b"" and web.relays == set()
    finally:
        web.stop()
        web.history.close()
        live.stop()


def test_openapi_document_describes_every_admin_request_model(web):
    code, doc = get_json(f"{web.url}/openapi.json")
    assert code == 200 and doc["info"]["title"] == "gatekeeper"
    for action in ("enqueue", "dequeue", "promote", "retrigger", "autohold", "hold-node", "release-node"):
        assert "post" in doc["paths"][f"/api/v1/admin/{action}"], action
    autohold = doc["paths"]["/api/v1/admin/autohold"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert autohold["required"] == ["project", "reason"]
    assert autohold["properties"]["count"]["type"] == "integer" and autohold["additionalProperties"] is False
    assert "/api/v1/status" in doc["paths"] and "/api/v1/builds/{build_id}/console" in doc["paths"]
    code, page, _ = get(f"{web.url}/docs")
    assert code == 200 and b"/openapi.json" in page


def test_many_pollers_share_one_status_rebuild_per_second(zk, tmp_path):
    web = start_web(zk, tmp_path)
    loads: list[str] = []
    layouts: list[int] = []
    inner_state, inner_layout = web.state_loader, web.layout_loader
    web.state_loader = lambda z, name: loads.append(name) or inner_state(z, name)
    web.layout_loader = lambda: layouts.append(1) or inner_layout()
    web._status_cache.clear()
    web._layout_cache.clear()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: get(f"{web.url}/api/v1/status"), range(40)))
        elapsed = time.monotonic() - started
        assert [code for code, _, _ in answers] == [200] * 40
        for _, body, headers in answers:  # the cached answers are the whole document, with the usual headers
            doc = json.loads(body)
            assert doc["schema"] == 1 and [p["name"] for p in doc["pipelines"]] == ["check", "gate"]
            assert (headers["Content-Type"], headers["Cache-Control"]) == ("application/json", "no-cache")
        assert 1 <= loads.count("gate") <= 1 + int(elapsed / STATUS_TTL) + 1, (loads, elapsed)
        assert len(layouts) == 1  # the layout is kept for 30 s
    finally:
        web.stop()
        web.history.close()


def test_gatekeeper_web_runs_as_its_own_process_and_stops_on_sigterm(zk_server, zk_chroot, tmp_path):
    port = free_port()
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(yaml.safe_dump({
        "zookeeper": {"hosts": zk_server.hosts, "chroot": zk_chroot},
        "web": {"listen": "127.0.0.1", "port": port, "admin-token": TOKEN},
        "history": {"url": f"sqlite:///{tmp_path}/history.sqlite"},
    }))
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "web", "-c", str(config)],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # the banner is the first line on stdout (the service's log lines go to stderr)
        assert proc.stdout.readline().strip() == f"gatekeeper web on http://127.0.0.1:{port}/"
        code, info = get_json(f"http://127.0.0.1:{port}/api/v1/info")
        assert code == 200 and info["admin"] is True and info["history"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "Traceback" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_console_snapshot_then_the_rest_from_its_offset(web, zk, tmp_path):
    live = LiveConsole(zk, tmp_path)
    console = live.console
    url = f"{web.url}/api/v1/builds/build-devstack-a/console"
    try:
        console.line("one")
        console.line("two")
        code, held, headers = get(f"{url}?snapshot=1")  # a complete answer although the console is open
        assert code == 200 and held.endswith(b"| two\n") and held.count(b"\n") == 2
        assert headers["X-Console-Offset"] == str(len(held))
        request = urllib.request.Request(f"{url}?offset={len(held)}", headers={"Accept": "text/event-stream"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.readline() == b"retry: 3000\n" and resp.readline() == b"\n"
            console.line("three")
            event = resp.readline()
            assert event.startswith(b"data: ") and event.endswith(b"| three\n")  # and nothing it had already
        assert get_json(f"{url}?offset=lots")[1] == {"error": 'query parameter offset="lots" is not a number'}
    finally:
        console.close()
        live.stop()
