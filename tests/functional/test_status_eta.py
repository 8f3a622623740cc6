"""The status document over a real gate and a real history database: every item carries an ETA range from the
history's job durations and pass rates (items behind count the chance of a reset), and a provider whose job
failure rate is an outlier is flagged; `gatekeeper status` and the page show both."""

from __future__ import annotations

import urllib.request

from gatekeeper.cmd import main
from gatekeeper.zk.history import BuildEvent
from tests.functional.test_browser import CHROMIUM, chromium
from tests.functional.test_web_gate import GateWeb, gate_web  # noqa: F401 (the fixture)
from tests.helpers import wait_for


def seed_history(db) -> None:
    """org/a's unit job: 600 s, passes 9 times in 10; integration: 300 s, always passes.  Over the same weeks
    cloud-b failed 15 of 20 jobs, cloud-a 2 of 40 and cloud-c 1 of 40."""
    n = 0
    for job, duration, failing in (("unit", 600.0, 10), ("integration", 300.0, 0)):
        for i in range(40):
            n += 1
            failed = failing and i % failing == 0
            db.record_build(BuildEvent(id=f"h{n}", buildset=f"hs{n}", pipeline="gate", project="org/a", change=900 + n,
                                       patchset=1, job=job, result="FAILURE" if failed else "SUCCESS",
                                       start_time=1000.0 * n, end_time=1000.0 * n + duration,
                                       node={"provider": "cloud-a" if n % 2 else "cloud-c"}))
    for cls in ("change", "change", "infrastructure", "change", "change"):  # the latest failures, classed
        n += 1
        db.record_build(BuildEvent(id=f"h{n}", buildset=f"hs{n}", pipeline="check", project="org/c", job="unit",
                                   result="NODE_FAILURE" if cls == "infrastructure" else "FAILURE",
                                   failure_class=cls, start_time=1e6 + n, end_time=1e6 + n + 1))
    for i in range(20):
        n += 1
        db.record_build(BuildEvent(id=f"h{n}", buildset=f"hs{n}", pipeline="check", project="org/b", change=900 + n,
                                   patchset=1, job="unit", result="FAILURE" if i < 15 else "SUCCESS",
                                   start_time=1000.0 * n, end_time=1000.0 * n + 60, node={"provider": "cloud-b"}))


def test_items_show_an_eta_range_and_an_outlier_provider_is_flagged(gate_web: GateWeb, tmp_path,  # noqa: F811
                                                                     capsys) -> None:
    gate, web = gate_web.gate, gate_web.web
    seed_history(web.history)
    a = gate.change("org/a", subject="First")
    b = gate.change("org/a", subject="Second")
    gate.approve(a)
    gate.approve(b)
    wait_for(lambda: len(gate.executor.held()) == 4, 30, "both items' builds to start")
    status = gate_web.status()
    first, second = gate_web.items("gate")
    # unit (600 s, 9 in 10 pass) bounds each item; the second one is reset when the first fails
    assert 590 <= first["eta"]["p50"] <= 610 and 590 <= first["eta"]["p90"] <= 610
    assert 0.8 < first["eta"]["merge_probability"] < 0.95
    assert 590 <= second["eta"]["p50"] <= 610 and 1190 <= second["eta"]["p90"] <= 1210
    (outlier,) = status["provider_outliers"]
    assert outlier["provider"] == "cloud-b" and (outlier["builds"], outlier["failures"]) == (20, 15)
    assert outlier["description"].startswith("cloud-b's failure rate is ")
    assert status["failure_classes"] == {"change": 4, "infrastructure": 1, "unknown": 0}

    with urllib.request.urlopen(f"{web.url}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert 'gatekeeper_recent_failures{failure_class="change"} 4.0' in metrics
    assert 'gatekeeper_recent_failures{failure_class="infrastructure"} 1.0' in metrics
    assert f'gatekeeper_provider_failure_outlier{{provider="cloud-b"}} {outlier["ratio"]}' in metrics

    assert main(["status", "--url", web.url, "--pipeline", "gate"]) == 0
    out = capsys.readouterr().out
    assert "! provider cloud-b: cloud-b's failure rate is " in out
    assert any("2,1" in line and "ETA 10m00s-20m00s" in line for line in out.splitlines()), out

    if CHROMIUM is not None:
        dom = chromium(tmp_path, f"{web.url}/", "--dump-dom")
        assert 'data-provider="cloud-b"' in dom and "failures there may not be the changes' fault" in dom
        assert "ETA 10m00s–20m00s" in dom
