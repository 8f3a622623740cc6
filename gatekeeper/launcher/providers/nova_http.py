"""Nova's frequent calls (list servers, create, delete, console log) sent straight through urllib3.

keystoneauth still authenticates, finds the compute endpoint in the catalog, and renews the token; only the
sending is done here. Why: keystoneauth's `Session.request` spends about 1.3 ms of CPU per call on top of the
request itself (the endpoint looked up in the catalog again, the token's expiry parsed, requests' proxy, netrc and
cookie merging, a user agent built). A launcher that hands out ready nodes while it boots and deletes their
replacements spent a fifth of its CPU there, and a node's hand-out waited for that CPU (measured with
bench/launcher.py: hand-out p50 about 3 ms lower with these calls sent here).

What keystoneauth would honour is honoured: the session's TLS verification (on, off, or a CA bundle) and client
certificate, the environment's proxy for the endpoint (as requests reads it), the cloud's API timeout, and a token
the cloud refuses (401) is renewed once and the call sent again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass

import requests.certs
import requests.utils
import urllib3

log = logging.getLogger("gatekeeper.launcher.providers.openstack")

# Connections kept open per cloud. A burst's calls open more, each closed after its call (as requests' pool of 10
# did); keeping a hundred open made a 100-server burst slower against the simulator (measured: 2.45 s against 2.2).
POOL_SIZE = 16


class _QuietFullPool(logging.Filter):
    """urllib3 warns each time it closes a connection beyond the pool's size: expected in a burst, not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Connection pool is full, discarding connection")


logging.getLogger("urllib3.connectionpool").addFilter(_QuietFullPool())


class NovaUnreachable(Exception):
    """No answer: the connection failed, broke or timed out (the message says which, and where)."""


@dataclass
class Answer:
    """Nova's answer, with what the adapter reads of a requests Response."""

    status_code: int
    reason: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self):
        return json.loads(self.content)


class NovaHTTP:
    """Send requests to one cloud's compute endpoint with the token of an openstacksdk connection."""

    def __init__(self, conn, timeout: float | None) -> None:
        self.conn = conn
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout) if timeout else urllib3.Timeout()
        self._endpoint = ""
        self._pool: urllib3.PoolManager | None = None
        self._lock = threading.Lock()

    def _connect(self) -> tuple[str, urllib3.PoolManager]:
        """The endpoint and connection pool, made on first use (that is when keystoneauth authenticates)."""
        with self._lock:
            if self._pool is None:
                self._endpoint, self._pool = self._make_pool()
            return self._endpoint, self._pool

    def _make_pool(self) -> tuple[str, urllib3.PoolManager]:
        endpoint = self.conn.compute.get_endpoint()
        if not endpoint:
            raise NovaUnreachable("the service catalog has no compute endpoint")
        session = self.conn.session
        verify, cert = session.verify, session.cert
        tls: dict = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
        if verify:
            tls["ca_certs"] = verify if isinstance(verify, str) else requests.certs.where()
        if cert:
            tls["cert_file"], tls["key_file"] = cert if isinstance(cert, tuple) else (cert, None)
        proxy = requests.utils.get_environ_proxies(endpoint).get(urllib3.util.parse_url(endpoint).scheme)
        if proxy:
            pool = urllib3.ProxyManager(proxy, num_pools=4, maxsize=POOL_SIZE, **tls)
        else:
            pool = urllib3.PoolManager(num_pools=4, maxsize=POOL_SIZE, **tls)
        return endpoint.rstrip("/"), pool

    def request(self, method: str, path: str, body: dict | None = None, microversion: str = "") -> Answer:
        """One call; an HTTP error is an Answer, no answer at all raises NovaUnreachable."""
        endpoint, pool = self._connect()
        headers = {"Accept": "application/json", "User-Agent": "gatekeeper-launcher"}
        if microversion:
            headers["OpenStack-API-Version"] = f"compute {microversion}"
            headers["X-OpenStack-Nova-API-Version"] = microversion
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = endpoint + path if path.startswith("/") else path  # (a listing's next link is a whole URL)
        resp = self._send(pool, method, url, data, headers)
        if resp.status == 401:  # a token the cloud no longer takes: authenticate again, once
            self.conn.session.invalidate()
            resp = self._send(pool, method, url, data, headers)
        return Answer(resp.status, resp.reason or "", resp.data)

    def _send(self, pool: urllib3.PoolManager, method: str, url: str, data: bytes | None, headers: dict):
        headers = {**headers, **(self.conn.session.get_auth_headers() or {})}
        started = time.monotonic()
        try:
            resp = pool.request(method, url, body=data, headers=headers, timeout=self.timeout, retries=False,
                                redirect=False)
        except urllib3.exceptions.HTTPError as e:
            raise NovaUnreachable(f"{method} {url}: {type(e).__name__}: {e}") from None
        log.debug("%s %s: %s (%.0f ms)", method, url, resp.status, (time.monotonic() - started) * 1000)
        return resp

    def close(self) -> None:
        if self._pool is not None:
            self._pool.clear()
