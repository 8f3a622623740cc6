"""Hostile and malformed input to the web over real HTTP (raw sockets where a client library would refuse to send
it): every case gets a 4xx with a sentence naming what is wrong, never a 500 or a hung connection, and nothing is
written to ZooKeeper."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gatekeeper.launcher.model import Node
from gatekeeper.web.server import WebService
from gatekeeper.zk import paths
from gatekeeper.zk.event_queue import EventQueue
from tests import http
from tests.functional.test_web import TOKEN, post, running_web
from tests.http import get, get_json


@pytest.fixture
def web(zk, tmp_path) -> Iterator[WebService]:
    with running_web(zk, tmp_path) as service:
        yield service


def raw(web: WebService, request: bytes) -> tuple[int, bytes]:
    return http.raw(web.port, request)


def admin_request(path: str, headers: str, body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\n{headers}\r\n").encode() + body


def management_events(zk) -> list:
    return EventQueue(zk, paths.management_queue()).list()


@pytest.mark.parametrize(("action", "body", "field", "words"), [
    ("autohold", {"project": "nova", "reason": "flaky", "count": "abc"}, "count", "valid integer"),
    ("autohold", {"project": "nova", "reason": "flaky", "hours": "lots"}, "hours", "valid number"),
    ("autohold", {"project": "nova", "reason": "flaky", "change": "(("}, "change", "not a regular expression"),
    ("autohold", {"project": "nova", "reason": "flaky", "count": 0}, "count", "greater than or equal to 1"),
    ("hold-node", {"node": "../../etc", "reason": "look"}, "node", '"../../etc" is not a node id'),
    ("hold-node", {"node": "0001", "reason": "look", "hours": 1e999}, "hours", "finite"),
    ("hold-node", {"node": "0001", "reason": "look", "hours": 1e308}, "hours", "less than or equal to 720"),
    ("autohold", {"project": "nova", "reason": "flaky", "hours": 721}, "hours", "less than or equal to 720"),
    ("release-node", {"node": "/zookeeper"}, "node", "not a node id"),
    ("promote", {"pipeline": "gate", "changes": 5}, "changes", "valid list"),
    ("promote", {"pipeline": "gate", "changes": ["1,1", "x"]}, "changes.1", '"x" is not a change'),
    ("enqueue", {"pipeline": ["gate"], "change": "1,1"}, "pipeline", "valid string"),
    ("enqueue", {"pipeline": "gate", "change": 5}, "change", "valid string"),
])
def test_a_wrong_field_is_a_400_naming_the_field_and_nothing_is_written(web, zk, action, body, field, words):
    code, answer = post(web, action, body)
    assert code == 400, answer
    assert f"field {field}:" in answer["error"] and words in answer["error"], answer
    assert management_events(zk) == []
    assert zk.client.exists(paths.HOLDS) is None or zk.client.get_children(paths.HOLDS) == []


def test_missing_and_unknown_fields_are_named_together(web):
    code, answer = post(web, "enqueue", {"pipline": "gate", "change": "1,1"})
    assert (code, answer["error"]) == (400, "missing field: pipeline; unknown field: pipline")


def test_bad_content_length_or_oversized_request_line_or_header_is_a_400(web):
    for value in ("abc", "-1", "1e3", ""):
        code, body = raw(web, admin_request("/api/v1/admin/enqueue", f"Content-Length: {value}\r\n", b"{}"))
        assert (code, json.loads(body)) == (400, {"error": "the request is not valid HTTP: bad Content-Length"})
    huge = "x" * 70000
    code, _ = raw(web, f"GET /logs/{huge} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert code == 404  # a name longer than the file system allows: no such file
    code, _ = raw(web, f"GET / HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n".encode())
    assert code in (200, 400)  # h11 takes a big header that arrives whole, and refuses one that trickles in
    assert get_json(f"{web.url}/api/v1/info")[0] == 200  # and the server goes on serving


def test_a_body_that_never_arrives_is_let_go_with_408_and_no_thread_waits_for_it(web, zk):
    web.body_timeout = 0.5
    code, body = raw(web, admin_request("/api/v1/admin/enqueue", "Content-Length: 100\r\n", b'{"pipeline": '))
    assert code == 408 and "did not arrive within 0.5 s" in json.loads(body)["error"]
    assert management_events(zk) == []


def test_an_oversized_or_malformed_body_is_refused_before_it_is_read(web):
    code, body = raw(web, admin_request("/api/v1/admin/enqueue", "Content-Length: 1000000000\r\n"))
    assert code == 413 and "too large" in json.loads(body)["error"]
    chunked = b"10000\r\n" + b" " * 0x10000 + b"\r\n10000\r\n" + b" " * 0x10000 + b"\r\n0\r\n\r\n"
    code, body = raw(web, admin_request("/api/v1/admin/enqueue", "Transfer-Encoding: chunked\r\n", chunked))
    assert code == 413 and "too large" in json.loads(body)["error"]
    for text, message in ((b"{not json", "request body is not JSON"),
                          (b'["gate", "1,1"]', "request body must be a JSON object"),
                          (b"\xff\xfe", "request body is not JSON"),
                          (b"[" * 30000 + b"]" * 30000, "request body is nested too deeply")):
        head = f"Content-Length: {len(text)}\r\n"
        code, body = raw(web, admin_request("/api/v1/admin/enqueue", head, text))
        assert (code, json.loads(body)["error"]) == (400, message)


def test_the_token_is_checked_before_the_body_is_looked_at(web):
    request = b"POST /api/v1/admin/enqueue HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{bad!"
    code, body = raw(web, request)
    assert code == 401 and "Bearer" in json.loads(body)["error"]


def test_log_paths_with_nul_dot_dot_absolute_or_overlong_names_are_4xx(web):
    code, body, _ = get(f"{web.url}/logs/1/tox/job-output.txt%00.png")
    assert code == 400 and "NUL" in json.loads(body)["error"]
    for path in ("/logs/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/logs/..%2f..%2fhistory.sqlite",
                 "/logs//etc/passwd", "/logs/%2fetc%2fpasswd", "/logs/" + "a" * 5000, "/logs/1/%ff%fe",
                 "/static/%00", "/static/..%2f..%2fserver.py"):
        code, body, _ = get(web.url + path)
        assert code == 404 and "error" in json.loads(body), path
    code, body = raw(web, b"GET /logs/../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert code == 404 and b"root:" not in body


LOG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


@pytest.mark.parametrize("name", ["report.html", "diagram.svg", "job-output.txt", "screen.log.gz", "blob.bin"])
def test_a_jobs_log_cannot_run_script_in_the_webs_origin(web, name):
    """A job writes its own logs: an .html or .svg log with a script is served as a sandboxed document that may run
    and load nothing, whatever its type; so is every other log, and the folder listing."""
    page = b"<html><body><script>fetch('/api/v1/admin/dequeue', {method: 'POST'})</script></body></html>"
    (web.logs.root / "1" / "tox" / name).write_bytes(page)
    for path in (f"/logs/1/tox/{name}", "/logs/1/tox/"):
        code, body, headers = get(web.url + path)
        assert code == 200, path
        assert (headers["Content-Security-Policy"], headers["X-Content-Type-Options"]) == (LOG_CSP, "nosniff"), path
    assert get(f"{web.url}/logs/1/tox/{name}")[1] == page  # served as written, only never run


@pytest.mark.parametrize(("path", "code", "words"), [
    ("/api/v1/builds?limit=lots", 400, 'query parameter limit="lots" is not a number'),
    ("/api/v1/builds?offset=-3", 400, "query parameter offset=-3 is negative"),
    ("/api/v1/buildsets?change=1%00", 400, "is not a number"),
    ("/api/v1/builds/..%2f..%2fetc", 404, "no such page or endpoint"),
    ("/api/v1/builds/..", 400, "is not a build id"),
    ("/api/v1/builds/%00/console", 400, "is not a build id"),
    ("/api/v1/status/change/1%27%20or%201=1", 400, "is not a change"),
    ("/api/v1/nope", 404, "no such page or endpoint: /api/v1/nope"),
])
def test_bad_query_and_path_values_are_4xx_with_a_sentence(web, path, code, words):
    answer = get_json(web.url + path)
    assert answer[0] == code and words in answer[1]["error"], answer


def test_a_wrong_method_is_405_not_500(web):
    code, body = raw(web, b"DELETE /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert code == 405 and "DELETE is not allowed on /api/v1/status" in json.loads(body)["error"]


def test_a_node_id_that_is_a_path_never_reaches_zookeeper(web, zk):
    zk.client.create(paths.node("0007"), Node(id="0007", provider="sim-a", label="debian", state="in-use")
                     .to_bytes(), makepath=True)
    for node in ("../../etc", "..", ".hidden", "0007/../../x", "0007\x00"):
        assert post(web, "hold-node", {"node": node, "reason": "x"})[0] == 400, node
    assert Node.from_bytes(zk.client.get(paths.node("0007"))[0]).hold_requested == ""
    assert zk.client.get_children(paths.NODES) == ["0007"]
    assert post(web, "hold-node", {"node": "0007", "reason": "x", "hours": "2"}) == (
        200, {"id": "0007", "action": "hold-node", "state": "in-use"})


def test_head_is_answered_like_get_without_a_body(web):
    code, body = raw(web, b"HEAD /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (code, body) == (200, b"")


def test_a_developer_access_request_is_held_to_the_same_body_limit_and_never_echoed_whole(web):
    path = "/api/v1/nodes/0123456789ab/access"
    code, body = raw(web, admin_request(path, "Content-Length: 5000000\r\n"))
    assert code == 413 and "too large" in json.loads(body)["error"]
    key = "ssh-ed25519 " + "A" * 20000  # within the limit, but no key: refused, quoting a little of it
    text = json.dumps({"public_key": key, "hours": "many"}).encode()
    code, body = raw(web, admin_request(path, f"Content-Length: {len(text)}\r\n", text))
    assert code == 400 and len(body) < 2000, body[:300]
