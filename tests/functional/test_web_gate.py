"""The web service over a real gate (Gerrit simulator, scheduler, merger, test executor): it reads the scheduler's
stored pipeline state, and its admin API and the operator CLI drive the real scheduler."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gatekeeper.cmd import main
from gatekeeper.history.db import HistoryDB
from gatekeeper.web.server import WebService
from tests.functional.gate_harness import GateHarness, wait_for

TOKEN = "gate-admin-token"


@dataclass
class GateWeb:
    gate: GateHarness
    web: WebService
    logs: Path

    def status(self) -> dict:
        self.web._status_cache.clear()  # read through, not the one-second cache
        with urllib.request.urlopen(f"{self.web.url}/api/v1/status", timeout=10) as resp:
            return json.loads(resp.read())

    def items(self, pipeline: str) -> list[dict]:
        p = next(p for p in self.status()["pipelines"] if p["name"] == pipeline)
        return [i for q in p["queues"] for i in q["items"]]


@pytest.fixture
def gate_web(tmp_path, zk_factory) -> Iterator[GateWeb]:
    (tmp_path / "gate").mkdir()
    gate = GateHarness(tmp_path / "gate", zk_factory)
    gate.executor.hold = True
    web = None
    try:
        logs = tmp_path / "logs"
        logs.mkdir()
        web = WebService(zk_factory(), port=0, admin_token=TOKEN, history=HistoryDB(f"sqlite:///{tmp_path}/h.db"),
                         log_dir=logs, management_timeout=20).start()  # layout: the one the scheduler runs
        gate.executor.log_url = f"{web.url}/logs"  # the executor archives where this web serves /logs
        yield GateWeb(gate, web, logs)
    finally:
        gate.executor.release()
        if web is not None:
            web.stop()
            web.history.close()
        gate.stop()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_approved_change_shows_in_the_gate_with_its_jobs_from_scheduler_state(gate_web):
    gate = gate_web.gate
    a = gate.change("org/a", subject="Add the frobnicator")
    gate.approve(a)
    wait_for(lambda: len(gate.executor.held()) == 2, 30, "both gate builds to start")
    [item] = wait_for(lambda: gate_web.items("gate"), 10, "the item in the status")
    assert (item["change"]["key"], item["change"]["project"], item["change"]["subject"]) == (
        "1,1", "org/a", "Add the frobnicator")
    assert [(j["name"], j["state"]) for j in item["jobs"]] == [("unit", "queued"), ("integration", "queued")]
    gate.executor.release("unit")
    done = wait_for(lambda: [j for i in gate_web.items("gate") for j in i["jobs"] if j["state"] == "completed"],
                    30, "the unit result in the status")
    assert (done[0]["name"], done[0]["result"]) == ("unit", "SUCCESS")
    assert done[0]["log_url"].startswith(f"{gate_web.web.url}/logs/")


def test_operator_cli_and_admin_api_drive_the_real_scheduler(gate_web, capsys):
    gate, url = gate_web.gate, gate_web.web.url
    a = gate.change("org/a")
    wait_for(lambda: len(gate.executor.held()) == 1, 30, "the check build to start")
    wait_for(lambda: gate_web.items("check"), 10, "the item in the status")
    code, out, _ = run(capsys, "status", "--url", url, "--pipeline", "check")
    assert code == 0 and "1,1        org/a" in out and "unit" in out
    code, out, err = run(capsys, "recheck", "--url", url, "--token", TOKEN, str(a.number))
    assert (code, out.strip()) == (0, "1,1: enqueued again in check"), err
    code, _, err = run(capsys, "recheck", "--url", url, "--token", TOKEN, "99,1")
    assert code == 4 and "no change 99 in Gerrit" in err
    req = urllib.request.Request(f"{url}/api/v1/admin/dequeue", json.dumps({"pipeline": "check", "change": "1,1"})
                                 .encode(), {"Authorization": f"Bearer {TOKEN}", "X-Gatekeeper-User": "ops"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert json.loads(resp.read())["result"] == "done"
    wait_for(lambda: not gate_web.items("check"), 10, "the dequeued change to leave the status")


def admin(url: str, action: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/api/v1/admin/{action}", json.dumps(body).encode(),
                                 {"Authorization": f"Bearer {TOKEN}", "X-Gatekeeper-User": "ops"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_admin_api_answers_404_for_what_the_scheduler_does_not_have_and_409_for_a_conflict(gate_web):
    gate, url = gate_web.gate, gate_web.web.url
    gate.change("org/a")
    wait_for(lambda: gate_web.items("check"), 30, "1,1 in check")
    assert admin(url, "dequeue", {"pipeline": "check", "change": "7,1"}) == (404, {"error": "no change 7,1 in check"})
    assert admin(url, "enqueue", {"pipeline": "check", "change": "99,1"}) == (404, {"error": "no change 99 in Gerrit"})
    assert admin(url, "promote", {"pipeline": "gate", "changes": "7,1"}) == (404, {"error": "no change 7,1 in gate"})
    assert admin(url, "enqueue", {"pipeline": "check", "change": "1,1"}) == (
        409, {"error": "change 1,1 is already in check"})
    assert admin(url, "promote", {"pipeline": "check", "changes": "1,1"}) == (200, {
        "action": "promote", "pipeline": "check", "changes": ["1,1"], "result": "done"})
    # retrigger of a change not in the pipeline: its dequeue is not found, and it is enqueued all the same
    assert admin(url, "dequeue", {"pipeline": "check", "change": "1,1"})[0] == 200
    wait_for(lambda: not gate_web.items("check"), 10, "the dequeued change to leave the status")
    assert admin(url, "retrigger", {"pipeline": "check", "change": "1,1"}) == (200, {
        "action": "retrigger", "pipeline": "check", "change": "1,1", "result": "done"})
    wait_for(lambda: gate_web.items("check"), 10, "1,1 in check again")
