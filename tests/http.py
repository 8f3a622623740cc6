"""HTTP for the tests: requests over urllib where an error status is an answer to assert on, not an exception,
and raw bytes over a socket for what a client library would refuse to send."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 20.0) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of the answer, whatever its status."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    return request(url, headers=headers)


def get_json(url: str) -> tuple[int, Any]:
    code, body, _ = get(url)
    return code, json.loads(body)


def call(url: str, method: str = "GET", token: str | None = None, body: dict | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A JSON API call: a POST sends `body` (or `{}`) as JSON, `token` goes as a bearer token; the answer is parsed
    when it is JSON (errors always are) and given as bytes otherwise."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = json.dumps({} if body is None else body).encode() if method == "POST" else None
    code, answer, got = request(url, method, data, sent)
    kind = next((v for k, v in got.items() if k.lower() == "content-type"), "")
    return code, json.loads(answer) if code >= 400 or kind.startswith("application/json") else answer


def raw(port: int, request_bytes: bytes, host: str = "127.0.0.1", timeout: float = 10.0) -> tuple[int, bytes]:
    """Send bytes as they are and read the answer until the server closes; a hang fails on the timeout."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
