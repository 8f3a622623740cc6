"""The web service and the operator CLI on what the scheduler stores in a real ZooKeeper: the pipeline state saved
through the scheduler's own PipelineStore and the layout it publishes; no stand-in loaders."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from gatekeeper.cmd import main
from gatekeeper.config.layout import parse_layout
from gatekeeper.config.store import publish_layout
from gatekeeper.history.db import HistoryDB
from gatekeeper.models.store import PipelineStore
from gatekeeper.web.server import WebService
from tests.layouts import GATE_LAYOUT
from tests.unit.test_web_status import sample_state

TOKEN = "zk-state-admin-token"


@pytest.fixture
def web(zk, tmp_path) -> Iterator[WebService]:
    publish_layout(zk, parse_layout({"layout.yaml": GATE_LAYOUT}))
    state = sample_state(now=time.time())
    state.dirty = set(state.items)  # as the scheduler marks what it changed before a save
    state.changed = True
    assert PipelineStore(zk.client, "gate").save(state)
    (tmp_path / "logs").mkdir()
    service = WebService(zk, port=0, admin_token=TOKEN, history=HistoryDB(f"sqlite:///{tmp_path}/h.db"),
                         log_dir=tmp_path / "logs").start()
    try:
        yield service
    finally:
        service.stop()
        service.history.close()


def test_status_api_shows_the_pipeline_state_the_scheduler_stored(web):
    with urllib.request.urlopen(f"{web.url}/api/v1/status", timeout=10) as resp:
        status = json.loads(resp.read())
    by_name = {p["name"]: p for p in status["pipelines"]}
    assert set(by_name) == {"check", "gate"}  # the published layout's pipelines
    assert by_name["check"]["queues"] == []
    [queue] = by_name["gate"]["queues"]
    assert (queue["name"], queue["window"]) == ("integrated", 20)
    head, behind = queue["items"]
    assert (head["change"]["key"], head["change"]["project"], behind["change"]["key"]) == ("1,1", "nova", "2,1")
    assert [(j["name"], j["state"]) for j in head["jobs"]] == [("tox", "completed"), ("devstack", "running")]
    assert [(j["name"], j["state"]) for j in behind["jobs"]] == [("tox", "queued"), ("devstack", "waiting")]


def test_operator_status_command_prints_the_stored_state(web, capsys):
    code = main(["status", "--url", web.url])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "gate (dependent): 2 items" in out and "queue integrated (window 20)" in out
    assert "1,1        nova" in out and "devstack" in out and "/api/v1/builds/build-devstack-a/console" in out
