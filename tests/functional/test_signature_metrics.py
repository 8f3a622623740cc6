"""Hits of known-bug signatures counted for good (real ZooKeeper): a counter per signature in /metrics, and the
all-time total beside the last day's and week's in `gatekeeper signatures`, even once old hits are trimmed."""

from __future__ import annotations

import threading
import urllib.request

from gatekeeper.cmd import main
from gatekeeper.web.server import WebService
from gatekeeper.zk.signatures import SignatureHit, read_hits, record_hits, signature_totals
from tests.functional.test_signatures import BUG_1234, BUG_5678, publish

TITLE = "n-cpu times out waiting for vif plugging"


def hit(n: int, signature: str = "1234") -> SignatureHit:
    return SignatureHit(signature=signature, title=TITLE, build=f"b{n}", job="devstack", change=f"{n},1")


def test_hits_count_in_metrics_and_the_cli_after_the_kept_ones_are_trimmed(zk, zk_factory, tmp_path, capsys):
    publish(zk, BUG_1234, BUG_5678)
    # two executors record at once: no hit is lost from the count
    writers = [threading.Thread(target=record_hits, args=(zk_factory(), [hit(n) for n in range(k, k + 3)]),
                                kwargs={"keep": 2}) for k in (0, 3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(30)
    record_hits(zk, [hit(9, "gone-from-layout")], keep=2)
    assert len(read_hits(zk)) == 2  # trimmed
    assert signature_totals(zk, ["5678"]) == {"5678": 0, "1234": 6, "gone-from-layout": 1}

    web = WebService(zk_factory(), port=0).start()
    try:
        with urllib.request.urlopen(f"{web.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        web.stop()
    assert "# TYPE gatekeeper_signature_hits_total counter" in text
    assert 'gatekeeper_signature_hits_total{signature="1234"} 6.0' in text.splitlines()
    assert 'gatekeeper_signature_hits_total{signature="5678"} 0.0' in text.splitlines()

    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"zookeeper:\n  hosts: {zk.hosts}\n  chroot: {zk.chroot}\n")
    assert main(["signatures", "-c", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["signature", "24h", "7d", "kept", "total", "title"]
    row = next(line for line in out if line.startswith("1234 "))
    assert row.split()[1:5] == ["1", "1", "1", "6"] and row.endswith(TITLE)
