"""`gatekeeper status | builds | build | recheck` against a running web service: output, errors, exit codes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from gatekeeper.cmd import main
from gatekeeper.web.server import WebService
from tests.functional.test_web import TOKEN, running_web


@pytest.fixture
def web(zk, tmp_path) -> Iterator[WebService]:
    with running_web(zk, tmp_path) as service:
        yield service


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_prints_queues_items_and_jobs_as_a_table_or_json(web, capsys):
    code, out, _ = run(capsys, "status", "--url", web.url)
    assert code == 0
    assert "gate (dependent): 2 items" in out and "queue integrated (window 20)" in out
    assert "1,1        nova" in out and "devstack" in out and "/api/v1/builds/build-devstack-a/console" in out
    code, out, _ = run(capsys, "status", "--url", web.url, "--json", "--change", "2")
    doc = json.loads(out)
    items = [i["change"]["key"] for p in doc["pipelines"] for q in p["queues"] for i in q["items"]]
    assert code == 0 and doc["schema"] == 1 and items == ["2,1"]


def test_status_of_unknown_change_or_pipeline_exits_4(web, capsys):
    code, _, err = run(capsys, "status", "--url", web.url, "--change", "77")
    assert code == 4 and "change 77 is in no pipeline" in err
    code, _, err = run(capsys, "status", "--url", web.url, "--pipeline", "post")
    assert code == 4 and 'no pipeline "post" (known: check, gate)' in err


def test_builds_filters_and_marks_retried_attempts(web, capsys):
    code, out, _ = run(capsys, "builds", "--url", web.url, "--project", "nova")
    assert code == 0
    assert "build-tox-a  tox" in out and "NODE_FAILURE*" in out and "retried attempt" in out
    code, out, _ = run(capsys, "builds", "--url", web.url, "--result", "SUCCESS", "--json")
    assert [b["uuid"] for b in json.loads(out)] == ["build-tox-a"]


def test_build_shows_result_node_and_log_files_and_unknown_build_exits_4(web, capsys):
    code, out, _ = run(capsys, "build", "--url", web.url, "build-tox-a")
    assert code == 0 and "result    SUCCESS" in out and "node      n1 debian sim-a" in out
    assert f"{web.url}/logs/1/tox/job-output.txt (15 bytes)" in out
    code, _, err = run(capsys, "build", "--url", web.url, "no-such-build")
    assert code == 4 and "no build no-such-build" in err


def test_recheck_without_or_with_wrong_token_exits_5(web, capsys, monkeypatch):
    monkeypatch.delenv("GATEKEEPER_WEB_ADMIN_TOKEN", raising=False)
    code, _, err = run(capsys, "recheck", "--url", web.url, "2,1")
    assert code == 5 and "Authorization: Bearer" in err
    code, _, err = run(capsys, "recheck", "--url", web.url, "--token", "nope", "2,1")
    assert code == 5 and "admin token is not valid" in err
    code, _, err = run(capsys, "recheck", "--url", web.url, "--token", TOKEN, "--pipeline", "gate", "88")
    assert code == 4 and "change 88 is in no pipeline" in err


def test_unreachable_server_exits_6_and_names_the_url(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        code, _, err = run(capsys, "status", "--url", f"http://127.0.0.1:{port}")
    assert code == 6 and f"cannot reach the gatekeeper web server at http://127.0.0.1:{port}" in err


def test_every_operator_command_has_help(capsys):
    for command in ("status", "builds", "build", "recheck"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        out, _ = capsys.readouterr()
        assert exit_info.value.code == 0 and "exit codes: 0 ok" in out and "--url" in out
