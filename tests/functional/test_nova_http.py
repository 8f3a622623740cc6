"""The OpenStack adapter's frequent compute calls (list, create, delete, console log) go straight through urllib3
(gatekeeper.launcher.providers.nova_http), over HTTP to the cloud simulator: a revoked token is renewed, the
environment's proxy is used, and a cloud that does not answer is an error naming the call."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from gatekeeper.launcher.providers.base import ProviderError
from gatekeeper.launcher.providers.nova_http import NovaHTTP
from gatekeeper.launcher.providers.openstack import OpenStackAdapter
from gatekeeper.sim.openstack.sim import CloudSim


@pytest.fixture
def sim(tmp_path):
    with CloudSim(["alpha"], workdir=str(tmp_path / "sim"), hosts=False) as s:
        yield s


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def adapter(sim, **kw) -> OpenStackAdapter:
    return OpenStackAdapter("alpha", sim.clouds_yaml, owner="gk-test", **kw)


def create(cloud: OpenStackAdapter, name: str) -> str:
    return cloud.create(name, "debian-12", "m1.small", {"gatekeeper-node": name})


def test_servers_are_created_listed_and_deleted_through_the_compute_endpoint(sim, no_proxy_env):
    cloud = adapter(sim)
    try:
        sid = create(cloud, "n1")
        assert cloud.poll()[sid].name == "n1"
        cloud.delete(sid)
        deadline = time.monotonic() + 10
        while sid in cloud.poll():
            assert time.monotonic() < deadline, "the deleted server is still listed"
            time.sleep(0.05)
    finally:
        cloud.close()
    calls = [(method, path) for method, path, _ in sim.servers["alpha"].requests]
    assert ("POST", "/compute/v2.1/servers") in calls and ("GET", "/compute/v2.1/servers/detail") in calls
    assert ("DELETE", f"/compute/v2.1/servers/{sid}") in calls


def test_a_token_the_cloud_no_longer_takes_is_renewed_once_and_the_call_sent_again(sim, no_proxy_env):
    cloud = adapter(sim)
    try:
        sid = create(cloud, "n1")
        api = sim.servers["alpha"]
        api.tokens.clear()  # as a Keystone restart or a revocation does
        seen = len(api.requests)
        assert sid in cloud.poll()
        after = [(method, path, status) for method, path, status in api.requests[seen:]]
        assert after == [("GET", "/compute/v2.1/servers/detail", 401), ("POST", "/identity/v3/auth/tokens", 201),
                         ("GET", "/compute/v2.1/servers/detail", 200)]
    finally:
        cloud.close()


def test_a_cloud_that_stops_answering_is_an_error_naming_the_cloud_the_call_and_the_cause(sim, no_proxy_env):
    cloud = adapter(sim, api_timeout=0.5)
    try:
        sid = create(cloud, "n1")
        sim.cloud("alpha").set_faults(hang_requests=1, api_hang=3.0)
        started = time.monotonic()
        with pytest.raises(ProviderError) as hung:
            cloud.delete(sid)
        assert time.monotonic() - started < 2.5  # the API timeout, not the hang
        assert str(hung.value).startswith(f"cloud alpha: delete server {sid}: DELETE http://127.0.0.1:")
        assert "ReadTimeoutError" in str(hung.value)
        sim.servers["alpha"].stop()
        with pytest.raises(ProviderError) as refused:
            cloud.poll()
        assert str(refused.value).startswith("cloud alpha: list servers: GET http://127.0.0.1:")
        assert "Connection refused" in str(refused.value) and " object at 0x" not in str(refused.value)
    finally:
        cloud.close()


class _RecordingProxy(BaseHTTPRequestHandler):
    """A forward HTTP proxy that records what it forwards."""

    seen: list[str] = []

    def _forward(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
        req = urllib.request.Request(self.path, data=body, headers=headers, method=self.command)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            resp = direct.open(req)
        except urllib.error.HTTPError as e:
            resp = e
        data = resp.read()
        self.send_response(resp.status if hasattr(resp, "status") else resp.code)
        for k, v in resp.headers.items():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


def test_the_environments_proxy_carries_the_compute_calls_unless_no_proxy_names_the_cloud(sim, no_proxy_env,
                                                                                         monkeypatch):
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), type("Proxy", (_RecordingProxy,), {"seen": []}))
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        cloud = adapter(sim)
        try:
            sid = create(cloud, "n1")
            assert sid in cloud.poll()
        finally:
            cloud.close()
        forwarded = proxy.RequestHandlerClass.seen
        assert any(s.startswith("POST http://127.0.0.1:") and s.endswith("/compute/v2.1/servers") for s in forwarded)
        assert any(s.endswith("/compute/v2.1/servers/detail") for s in forwarded)

        monkeypatch.setenv("no_proxy", "127.0.0.1")
        forwarded.clear()
        cloud = adapter(sim)
        try:
            assert sid in cloud.poll()
        finally:
            cloud.close()
        assert forwarded == []
    finally:
        proxy.shutdown()
        proxy.server_close()


class _Session:
    def __init__(self, verify, cert) -> None:
        self.verify, self.cert = verify, cert


class _Conn:
    """What NovaHTTP reads of an openstacksdk connection to make its connection pool."""

    def __init__(self, verify, cert=None) -> None:
        self.session = _Session(verify, cert)
        self.compute = type("Compute", (), {"get_endpoint": lambda _self: "https://nova.example:8774/v2.1/"})()


@pytest.mark.parametrize(("verify", "cert", "expect"), [
    (True, None, {"cert_reqs": "CERT_REQUIRED"}),
    (False, None, {"cert_reqs": "CERT_NONE"}),
    ("/etc/ssl/cloud-ca.pem", None, {"cert_reqs": "CERT_REQUIRED", "ca_certs": "/etc/ssl/cloud-ca.pem"}),
    (True, ("/c.pem", "/k.pem"), {"cert_reqs": "CERT_REQUIRED", "cert_file": "/c.pem", "key_file": "/k.pem"}),
    (True, "/both.pem", {"cert_reqs": "CERT_REQUIRED", "cert_file": "/both.pem", "key_file": None}),
])
def test_tls_is_verified_and_a_client_certificate_sent_as_the_clouds_configuration_says(verify, cert, expect,
                                                                                         no_proxy_env):
    endpoint, pool = NovaHTTP(_Conn(verify, cert), timeout=5)._connect()
    assert endpoint == "https://nova.example:8774/v2.1"
    assert isinstance(pool, urllib3.PoolManager) and not isinstance(pool, urllib3.ProxyManager)
    for key, value in expect.items():
        assert pool.connection_pool_kw.get(key) == value, key
    if verify is True:
        assert pool.connection_pool_kw["ca_certs"].endswith(".pem")  # requests' bundle, as keystoneauth uses


def test_a_burst_of_calls_beyond_the_kept_connections_is_served_without_a_warning_each(sim, no_proxy_env, caplog):
    from concurrent.futures import ThreadPoolExecutor

    from gatekeeper.launcher.providers.nova_http import POOL_SIZE

    cloud = adapter(sim)
    caplog.set_level(logging.WARNING)
    try:
        with ThreadPoolExecutor(POOL_SIZE * 2) as pool:
            ids = list(pool.map(lambda i: create(cloud, f"n{i}"), range(POOL_SIZE * 3)))
        assert set(ids) <= set(cloud.poll()) and len(set(ids)) == POOL_SIZE * 3
    finally:
        cloud.close()
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
