"""Providers flagged as job-failure outliers drained automatically when the layout says so (real ZooKeeper, the
history recorder on SQLite), never the last undrained provider of a label; shown by `gatekeeper providers` and in
the status document."""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest

from gatekeeper.cmd import main
from gatekeeper.config.layout import parse_layout
from gatekeeper.config.store import publish_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.history import recorder as recorder_module
from gatekeeper.history.db import HistoryDB
from gatekeeper.history.recorder import HistoryRecorder
from gatekeeper.web.server import WebService
from gatekeeper.zk.history import BuildEvent, report_build
from gatekeeper.zk.provider_outliers import read_outliers
from gatekeeper.zk.provider_store import ProviderStore
from tests.functional.test_outlier_reports import report_history
from tests.helpers import wait_for


def pool(auto_drain: bool | None, arm_elsewhere: bool) -> str:
    """cloud-a, -b and -c serve debian; cloud-b serves arm64 too, and cloud-c when `arm_elsewhere`."""
    setting = "" if auto_drain is None else f"  auto-drain-outliers: {str(auto_drain).lower()}\n"
    hosts = {"cloud-a": "[debian]", "cloud-b": "[debian, arm64]",
             "cloud-c": "[debian, arm64]" if arm_elsewhere else "[debian]"}
    providers = "".join(f"    - name: {name}\n      driver: static\n      hosts:\n"
                        f"        - {{name: {name}-1, address: 127.0.0.1, labels: {labels}}}\n"
                        for name, labels in hosts.items())
    return ("nodepool:\n" + setting + "  labels:\n    - {name: debian}\n    - {name: arm64}\n  providers:\n"
            + providers)


def one_more_build(zk, n: int) -> None:
    report_build(zk, BuildEvent(id=f"more-{n}", buildset="bs", job="devstack", result="SUCCESS",
                                start_time=500 + n, end_time=501 + n, node={"provider": "cloud-a"}))


def test_outlier_is_drained_only_when_the_layout_asks_and_another_provider_serves_its_labels(
        zk, zk_factory, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(recorder_module, "RETRY_SECONDS", 600.0)  # only the queue's watch wakes it in time
    store = ProviderStore(zk)
    db = HistoryDB(f"sqlite:///{tmp_path}/h.sqlite")
    recorder = HistoryRecorder(zk, db).start()
    try:
        # no setting: flagged, not drained
        publish_layout(zk, parse_layout({"pool.yaml": pool(None, arm_elsewhere=True)}))
        total = report_history(zk, {"cloud-a": (30, 5), "cloud-b": (20, 12), "cloud-c": (30, 4)})
        wait_for(lambda: recorder.stored == total + 1, timeout=20, what="every build to be recorded")
        wait_for(lambda: [o["builds"] for o in read_outliers(zk).outliers] == [20], timeout=20,
                 what="cloud-b flagged over all its builds")
        assert not store.provider_state("cloud-b").drained

        # the setting on, but cloud-b alone serves arm64: kept, and the log says why
        publish_layout(zk, parse_layout({"pool.yaml": pool(True, arm_elsewhere=False)}))
        with caplog.at_level(logging.WARNING, logger="gatekeeper.history"):
            one_more_build(zk, 1)
            wait_for(lambda: any("last undrained provider serving arm64" in r.getMessage() for r in caplog.records),
                     timeout=20, what="the recorder to say why cloud-b stays")
        assert not store.provider_state("cloud-b").drained

        # cloud-c serves arm64 too: cloud-b is drained, through the node pool's drain, with the reason
        publish_layout(zk, parse_layout({"pool.yaml": pool(True, arm_elsewhere=True)}))
        with caplog.at_level(logging.INFO, logger="gatekeeper.audit"):
            one_more_build(zk, 2)
            wait_for(lambda: store.provider_state("cloud-b").drained, timeout=20, what="cloud-b to be drained")
            # the audit line follows the stored drain (the recorder's thread writes it just after)
            wait_for(lambda: any(r.name == "gatekeeper.audit" and "provider cloud-b drained automatically, as a "
                                 "job-failure outlier" in r.getMessage() for r in caplog.records),
                     timeout=10, what="the drain in the audit log")
        reason = store.provider_state("cloud-b").drain_reason
        assert reason.startswith("automatically, as a job-failure outlier (cloud-b's")
        assert not store.provider_state("cloud-a").drained and not store.provider_state("cloud-c").drained
    finally:
        recorder.stop()
        db.close()

    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"zookeeper:\n  hosts: {zk.hosts}\n  chroot: {zk.chroot}\n")
    capsys.readouterr()
    assert main(["providers", "-c", str(config)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("cloud-b "))
    assert "drained: automatically, as a job-failure outlier" in row and row.split()[1] == "drained"
    web = WebService(zk_factory(), port=0).start()
    try:
        with urllib.request.urlopen(f"{web.url}/api/v1/status", timeout=10) as resp:
            providers = {p["name"]: p for p in json.loads(resp.read())["providers"]}
    finally:
        web.stop()
    assert providers["cloud-b"]["drained"]
    assert "automatically, as a job-failure outlier" in providers["cloud-b"]["drain_reason"]


def test_layout_setting_must_be_true_or_false():
    text = pool(True, True).replace("auto-drain-outliers: true", "auto-drain-outliers: 3")
    with pytest.raises(ConfigErrors, match="pool.yaml:2: nodepool.auto-drain-outliers: expected true or false"):
        parse_layout({"pool.yaml": text})
