"""Node providers on the web, against a real ZooKeeper: their health in the status document, the page (headless
Chromium) and /metrics, and drain/undrain through the admin API, which the launcher reads from ZooKeeper."""

from __future__ import annotations

import time

from gatekeeper.web.server import WebService
from gatekeeper.zk.provider_store import ProviderStore
from tests.functional.test_browser import chromium
from tests.http import call

TOKEN = "providers-admin"


def test_provider_health_is_shown_and_operators_drain_through_the_admin_api(zk, tmp_path):
    store = ProviderStore(zk)
    until = time.time() + 120
    store.publish_health("cloud-a", {"name": "cloud-a", "state": "healthy", "error_rate": 0.0})
    store.publish_health("cloud-b", {"name": "cloud-b", "state": "backing-off", "error_rate": 0.8,
                                     "consecutive_failures": 4, "backing_off_until": until})
    store.set_drained("cloud-a", False)
    store.set_drained("cloud-b", False)
    web = WebService(zk, port=0, admin_token=TOKEN, layout_loader=lambda: None).start()
    try:
        code, status = call(f"{web.url}/api/v1/status")
        rows = {p["name"]: p for p in status["providers"]}
        assert rows["cloud-b"]["state"] == "backing-off" and rows["cloud-b"]["error_rate"] == 0.8
        code, text = call(f"{web.url}/metrics")
        assert 'gatekeeper_provider_state{provider="cloud-b",state="backing-off"} 1.0' in text.decode()
        dom = chromium(tmp_path, f"{web.url}/", "--dump-dom")
        assert 'data-provider="cloud-b" data-state="backing-off"' in dom and "80% of recent boots failed" in dom

        assert call(f"{web.url}/api/v1/admin/providers/cloud-a/drain", "POST")[0] == 401
        assert call(f"{web.url}/api/v1/admin/providers/nope/drain", "POST", TOKEN)[0] == 404
        code, body = call(f"{web.url}/api/v1/admin/providers/cloud-a/drain", "POST", TOKEN,
                          {"reason": "hypervisor maintenance"})
        assert code == 200 and body["drained"] is True
        assert store.provider_state("cloud-a").drained and \
            store.provider_state("cloud-a").drain_reason == "hypervisor maintenance"
        assert call(f"{web.url}/api/v1/admin/providers/cloud-a/drain", "POST", TOKEN, {"reason": 5})[0] == 400
        code, body = call(f"{web.url}/api/v1/admin/providers/cloud-a/undrain", "POST", TOKEN)
        assert code == 200 and not store.provider_state("cloud-a").drained
        code, listed = call(f"{web.url}/api/v1/providers")
        assert {p["name"]: p["drained"] for p in listed} == {"cloud-a": False, "cloud-b": False}
    finally:
        web.stop()
