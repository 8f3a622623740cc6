"""The OpenStack adapter's frequent compute calls (list, create, delete, console log) go straight through urllib3
(gatekeeper.launcher.providers.nova_http), over HTTP to the cloud simulator: a revoked token is renewed, the
environment's proxy is used, and a cloud that does not answer is an error naming the call."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests.certs
import urllib3
import yaml

from gatekeeper.launcher.providers.base import ProviderError
from gatekeeper.launcher.providers.nova_http import NovaHTTP, NovaUnreachable, tls_settings
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
        assert sid in cloud.poll()
        expected = [("GET", "/compute/v2.1/servers/detail", 401), ("POST", "/identity/v3/auth/tokens", 201),
                    ("GET", "/compute/v2.1/servers/detail", 200)]
        deadline = time.monotonic() + 5  # (the simulator logs a call once it has answered it)
        while True:
            since = [tuple(r) for r in api.requests if r[:2] != ("POST", "/compute/v2.1/servers")][-3:]
            if since == expected or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert since == expected
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


class _Quiet(BaseHTTPRequestHandler):
    """A test server's handler: records each request line in `seen`, answers through `reply`, logs nothing."""

    seen: list[str] = []

    def take_request(self) -> bytes | None:
        """Record the request; its body, if any."""
        self.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def reply(self, status: int, body: bytes = b"", headers=()) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on a loopback port for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _RecordingProxy(_Quiet):
    """A forward HTTP proxy that records what it forwards."""

    def _forward(self) -> None:
        body = self.take_request()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
        req = urllib.request.Request(self.path, data=body, headers=headers, method=self.command)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            resp = direct.open(req)
        except urllib.error.HTTPError as e:
            resp = e
        self.reply(resp.status if hasattr(resp, "status") else resp.code, resp.read(), resp.headers.items())

    do_GET = do_POST = do_DELETE = _forward


def test_the_environments_proxy_carries_the_compute_calls_unless_no_proxy_names_the_cloud(sim, no_proxy_env,
                                                                                         monkeypatch):
    handler = type("Proxy", (_RecordingProxy,), {"seen": []})
    with serving(handler) as proxy:
        monkeypatch.setenv("http_proxy", proxy)
        cloud = adapter(sim)
        try:
            sid = create(cloud, "n1")
            assert sid in cloud.poll()
        finally:
            cloud.close()
        forwarded = handler.seen
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


class _Session:
    def __init__(self, verify, cert, project_id: str | None = "p-1") -> None:
        self.verify, self.cert, self.project_id = verify, cert, project_id

    def get_project_id(self) -> str | None:
        return self.project_id

    def get_user_id(self) -> str:
        return "u-1"


class _Config:
    def __getattr__(self, name):
        return lambda service: None  # no retries configured


class _Conn:
    """What NovaHTTP reads of an openstacksdk connection to make its connection pool."""

    def __init__(self, verify, cert=None, endpoint: str = "https://nova.example:8774/v2.1/",
                 project_id: str | None = "p-1") -> None:
        self.session = _Session(verify, cert, project_id)
        self.config = _Config()
        self.compute = type("Compute", (), {"get_endpoint": lambda _self: endpoint})()


@pytest.mark.parametrize(("verify", "cert", "expect"), [
    (True, None, {"cert_reqs": "CERT_REQUIRED"}),
    (False, None, {"cert_reqs": "CERT_NONE"}),
    ("/etc/ssl/cloud-ca.pem", None, {"cert_reqs": "CERT_REQUIRED", "ca_certs": "/etc/ssl/cloud-ca.pem"}),
    (True, ("/c.pem", "/k.pem"), {"cert_reqs": "CERT_REQUIRED", "cert_file": "/c.pem", "key_file": "/k.pem"}),
    (True, "/both.pem", {"cert_reqs": "CERT_REQUIRED", "cert_file": "/both.pem", "key_file": None}),
])
def test_tls_is_verified_and_a_client_certificate_sent_as_the_clouds_configuration_says(verify, cert, expect,
                                                                                         no_proxy_env, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    endpoint, pool = NovaHTTP(_Conn(verify, cert), timeout=5)._connect()
    assert endpoint == "https://nova.example:8774/v2.1"
    assert isinstance(pool, urllib3.PoolManager) and not isinstance(pool, urllib3.ProxyManager)
    for key, value in expect.items():
        assert pool.connection_pool_kw.get(key) == value, key
    if verify is True:
        assert pool.connection_pool_kw["ca_certs"] == requests.certs.where()  # requests' bundle


def test_with_verification_on_the_ca_bundle_named_by_the_environment_or_a_ca_directory_is_used(
        no_proxy_env, monkeypatch, tmp_path):
    bundle = tmp_path / "private-ca.pem"
    bundle.write_text("")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    assert tls_settings(True, None)["ca_certs"] == str(bundle)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle) + ".first")
    assert tls_settings(True, None)["ca_certs"] == str(bundle) + ".first"
    assert tls_settings(str(tmp_path), None) == {"cert_reqs": "CERT_REQUIRED", "ca_cert_dir": str(tmp_path)}
    assert tls_settings(False, None) == {"cert_reqs": "CERT_NONE"}


@pytest.mark.parametrize("variable", ["https_proxy", "all_proxy"])
def test_a_proxy_from_the_environment_is_used_with_its_credentials(variable, no_proxy_env, monkeypatch):
    monkeypatch.setenv(variable, "http://gk:s3cret@proxy.example:3128")
    _, pool = NovaHTTP(_Conn(True), timeout=5)._connect()
    assert isinstance(pool, urllib3.ProxyManager)
    assert pool.proxy.host == "proxy.example" and pool.proxy.port == 3128
    assert pool.proxy_headers["proxy-authorization"] == urllib3.make_headers(
        proxy_basic_auth="gk:s3cret")["proxy-authorization"]


def test_a_burst_of_calls_beyond_the_kept_connections_is_served_without_a_warning_each(sim, no_proxy_env, caplog):
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


def test_a_proxy_without_a_scheme_is_taken_as_http_as_requests_takes_it(no_proxy_env, monkeypatch):
    monkeypatch.setenv("https_proxy", "proxy.example:3128")
    _, pool = NovaHTTP(_Conn(True), timeout=5)._connect()
    assert isinstance(pool, urllib3.ProxyManager) and pool.proxy.scheme == "http" and pool.proxy.port == 3128


@pytest.mark.parametrize(("endpoint", "project_id", "error"), [
    ("https://nova.example/v2.1/%(project_id)s", "p-1", None),
    ("https://nova.example/v2.1/%(user_id)s/x%%2Fy", "p-1", None),
    ("https://nova.example/v2.1/%(tenant_id)s", "p-1", "cannot be filled in"),
    ("https://nova.example/v2.1/%(project_id)s", None, "provides no project_id"),
])
def test_an_endpoint_override_naming_ids_is_filled_in_or_refused_with_a_reason(endpoint, project_id, error,
                                                                              no_proxy_env):
    nova = NovaHTTP(_Conn(True, endpoint=endpoint, project_id=project_id), timeout=5)
    if error is None:
        assert nova._connect()[0] in ("https://nova.example/v2.1/p-1", "https://nova.example/v2.1/u-1/x%2Fy")
    else:
        with pytest.raises(NovaUnreachable, match=error):
            nova._connect()


def cloud_config(sim, tmp_path, **settings) -> str:
    """The simulator's clouds.yaml with `settings` added to cloud alpha's entry."""
    config = yaml.safe_load(open(sim.clouds_yaml))
    config["clouds"]["alpha"].update(settings)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_cloud_configs_status_code_retries_are_applied(sim, no_proxy_env, tmp_path):
    retrying = OpenStackAdapter("alpha", cloud_config(sim, tmp_path, status_code_retries=2,
                                                      retriable_status_codes=[500], status_code_retry_delay=0.01),
                                owner="gk-test")
    plain = adapter(sim)
    try:
        sid = create(retrying, "n1")
        sim.cloud("alpha").set_faults(api_errors=2)
        assert sid in retrying.poll()  # two 500s, then the listing
        assert sid in plain.poll()  # (authenticated before the fault)
        sim.cloud("alpha").set_faults(api_errors=1)
        with pytest.raises(ProviderError, match=r"^cloud alpha: list servers: 500 Unexpected API Error"):
            plain.poll()
    finally:
        retrying.close()
        plain.close()


class _Redirector(_Quiet):
    """Answers /r/<project id>/<path> with a redirect to the compute endpoint's <path>; anything else with a page
    that is not JSON."""

    target = ""
    project = ""

    def _answer(self) -> None:
        self.take_request()
        prefix = f"/r/{self.project}/"
        if self.path.startswith(prefix):
            self.reply(307, headers=[("Location", self.target + "/" + self.path[len(prefix):])])
        else:
            self.reply(200, b"<html>maintenance</html>", [("Content-Type", "text/html")])

    do_GET = do_POST = do_DELETE = _answer


def test_an_endpoint_override_naming_the_project_is_filled_in_and_redirects_are_followed(sim, no_proxy_env,
                                                                                        tmp_path):
    api = sim.servers["alpha"]
    handler = type("Redirector", (_Redirector,), {"target": f"{api.url}/compute/v2.1", "project": "p-gatekeeper",
                                                  "seen": []})
    with serving(handler) as base:
        cloud = OpenStackAdapter(
            "alpha", cloud_config(sim, tmp_path, compute_endpoint_override=f"{base}/r/%(project_id)s"), owner="gk-test")
        try:
            sid = create(cloud, "n1")  # a POST redirected (307): sent again to the new place
            assert sid in cloud.poll()
            assert "POST /r/p-gatekeeper/servers" in handler.seen
            assert "GET /r/p-gatekeeper/servers/detail" in handler.seen
        finally:
            cloud.close()
        cloud = OpenStackAdapter(
            "alpha", cloud_config(sim, tmp_path, compute_endpoint_override=f"{base}/maintenance"), owner="gk-test")
        try:
            with pytest.raises(ProviderError, match=r"^cloud alpha: list servers: an answer that is not Nova's JSON"):
                cloud.poll()
        finally:
            cloud.close()
