"""Nova's frequent calls (list servers, create, delete, console log) sent straight through urllib3.

keystoneauth still authenticates, finds the compute endpoint in the catalog, and renews the token; only the
sending is done here. Why: keystoneauth's `Session.request` spends about 1.3 ms of CPU per call on top of the
request itself (the endpoint looked up in the catalog again, the token's expiry parsed, requests' proxy, netrc and
cookie merging, a user agent built). A launcher that hands out ready nodes while it boots and deletes their
replacements spent a fifth of its CPU there, and a node's hand-out waited for that CPU (measured with
bench/launcher.py: hand-out p50 about 3 ms lower with these calls sent here).

What keystoneauth and requests would honour for these calls is honoured: TLS verification as the cloud's config
says (on, off, a CA bundle or directory; with verification on and no CA given, REQUESTS_CA_BUNDLE or
CURL_CA_BUNDLE, else requests' bundle) and its client certificate; the environment's proxy for the endpoint (with
its credentials); the cloud's API timeout, connect retries and status-code retries (with Retry-After); up to 30
redirects; `%(project_id)s` in an endpoint override; a token the cloud refuses (401) is renewed once, the endpoint
read again from the new catalog, and the call sent again. Not applied to these four calls: clouds.yaml's
per-service `rate_limit` and `concurrency`, and openstacksdk's statsd/Prometheus/InfluxDB call metrics. Retries
wait as urllib3 does (the first at once, then doubling from the configured delay), not keystoneauth's fixed delay;
a dropped connection is not retried (keystoneauth's connect retries re-sent even a create, and could boot it twice).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

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
    """No answer, or nowhere to ask: the connection failed, broke or timed out, or the compute endpoint could not be
    found or filled in (the message says which, and where)."""


@dataclass
class Answer:
    """Nova's answer, with what the adapter reads of a requests Response."""

    status_code: int
    reason: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class NovaHTTP:
    """Send requests to one cloud's compute endpoint with the token of an openstacksdk connection."""

    def __init__(self, conn, timeout: float | None) -> None:
        self.conn = conn
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout) if timeout else urllib3.Timeout()
        self._endpoint = ""
        self._pool: urllib3.PoolManager | None = None
        self._lock = threading.Lock()
        self._retry = self._retries()

    def _connect(self) -> tuple[str, urllib3.PoolManager]:
        """The endpoint and connection pool, made on first use (that is when keystoneauth authenticates)."""
        with self._lock:
            if self._pool is None:
                self._endpoint, self._pool = self._make_pool()
            return self._endpoint, self._pool

    def _forget_endpoint(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.clear()
            self._pool = None

    def _make_pool(self) -> tuple[str, urllib3.PoolManager]:
        session = self.conn.session
        endpoint = self.conn.compute.get_endpoint()
        if not endpoint:
            raise NovaUnreachable("the service catalog has no compute endpoint")
        if "%(" in endpoint:  # an endpoint override naming the project or user, as keystoneauth fills it in
            try:
                endpoint = endpoint % _Ids(session)
            except (KeyError, TypeError, ValueError) as e:
                raise NovaUnreachable(f"the compute endpoint {endpoint!r} cannot be filled in (it may name "
                                      f"%(project_id)s and %(user_id)s, and a literal % must be %%): {e}") from None
        kw: dict = {"num_pools": 4, "maxsize": POOL_SIZE, **tls_settings(session.verify, session.cert)}
        proxy = requests.utils.select_proxy(endpoint, requests.utils.get_environ_proxies(endpoint))
        if proxy:
            proxy = requests.utils.prepend_scheme_if_needed(proxy, "http")  # (proxy.example:3128, as requests)
            user, password = requests.utils.get_auth_from_url(proxy)
            if user:
                kw["proxy_headers"] = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}")
            pool = urllib3.ProxyManager(proxy, **kw)
        else:
            pool = urllib3.PoolManager(**kw)
        return endpoint.rstrip("/"), pool

    def _retries(self) -> urllib3.Retry:
        """The cloud's compute retries (none unless clouds.yaml sets them), and keystoneauth's 30 redirects."""
        config = self.conn.config
        return urllib3.Retry(
            total=None, connect=config.get_connect_retries("compute") or 0, read=0, other=0,
            status=config.get_status_code_retries("compute") or 0,
            status_forcelist=config.get_retriable_status_codes("compute") or [429, 503], allowed_methods=None,
            backoff_factor=config.get_status_code_retry_delay("compute") or 0.5, backoff_max=60,
            respect_retry_after_header=True, raise_on_status=False, redirect=30, raise_on_redirect=False)

    def request(self, method: str, path: str, body: dict | None = None, microversion: str = "") -> Answer:
        """One call; an HTTP error is an Answer, no answer at all raises NovaUnreachable."""
        endpoint, pool = self._connect()
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate",
                   "User-Agent": "gatekeeper-launcher"}
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
            self._forget_endpoint()  # (read again from the new token's catalog)
            new_endpoint, pool = self._connect()
            if url.startswith(endpoint):
                url = new_endpoint + url[len(endpoint):]
            resp = self._send(pool, method, url, data, headers)
        return Answer(resp.status, resp.reason or "", resp.data)

    def _send(self, pool: urllib3.PoolManager, method: str, url: str, data: bytes | None, headers: dict):
        headers = {**headers, **(self.conn.session.get_auth_headers() or {})}
        started = time.monotonic()
        try:
            resp = pool.request(method, url, body=data, headers=headers, timeout=self.timeout,
                                retries=self._retry)
        except urllib3.exceptions.HTTPError as e:
            cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason else e
            raise NovaUnreachable(f"{method} {url}: {type(cause).__name__}: {cause}") from None
        log.debug("%s %s: %s (%.0f ms, request %s)", method, url, resp.status, (time.monotonic() - started) * 1000,
                  resp.headers.get("x-openstack-request-id", "-"))
        return resp

    def close(self) -> None:
        self._forget_endpoint()


class _Ids:
    """The ids an endpoint override may name, read from the session when named (as keystoneauth does)."""

    def __init__(self, session) -> None:
        self.session = session

    def __getitem__(self, key: str) -> str:
        read = {"project_id": self.session.get_project_id, "user_id": self.session.get_user_id}.get(key)
        if read is None:
            raise KeyError(key)
        value = read()
        if not value:
            raise ValueError(f"the cloud's authentication provides no {key}")
        return value


def tls_settings(verify, cert) -> dict:
    """urllib3's TLS arguments for a keystoneauth session's `verify` (bool, or a CA file or directory) and `cert`
    (a path, or (cert, key)), as requests applies them."""
    tls: dict = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
    if verify is True:
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or requests.certs.where()
    if verify:
        tls["ca_cert_dir" if os.path.isdir(verify) else "ca_certs"] = verify
    if cert:
        tls["cert_file"], tls["key_file"] = cert if isinstance(cert, tuple) else (cert, None)
    return tls
