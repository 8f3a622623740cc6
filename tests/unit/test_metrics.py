"""Metrics: the Prometheus exposition (through prometheus_client), statsd datagrams caught by a real UDP listener,
and the gate's numbers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gatekeeper.metrics.gate import GateSnapshot, StatsdReporter, gate_metrics
from gatekeeper.metrics.prometheus import MetricFamily, exposition, render
from gatekeeper.metrics.statsd import StatsdClient
from gatekeeper.web.status import pipeline_status, status_document
from tests.unit.test_web_status import NOW, estimates, sample_state


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    try:
        yield sock
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    data, _ = sock.recvfrom(65536)
    return data.decode().split("\n")


def snapshot() -> GateSnapshot:
    gate = pipeline_status("gate", "dependent", "", sample_state(), NOW, estimates, str, str)
    return GateSnapshot(
        status=status_document([gate], {"management": 2, "trigger:gerrit": 0}, NOW),
        nodes=[{"state": "ready", "label": "debian", "provider": "sim-a"},
               {"state": "ready", "label": "debian", "provider": "sim-a"},
               {"state": "failed", "label": "debian", "provider": "sim-b"}],
        requests=[{"state": "requested", "created": NOW - 30}, {"state": "requested", "created": NOW - 5}],
        event_queues={"management": 2, "trigger:gerrit": 0},
        job_totals=[{"project": "nova", "job": "tox", "result": "SUCCESS", "count": 3, "seconds": 300.0},
                    {"project": "nova", "job": "tox", "result": "FAILURE", "count": 1, "seconds": 50.0}],
        now=NOW,
    )


def test_prometheus_text_has_help_type_and_escaped_labels():
    family = MetricFamily("gatekeeper_x", "gauge", "An x\nwith two lines").add(1.5, job='say "hi"\\')
    family.add(3, job="plain")
    assert render([family]) == (
        "# HELP gatekeeper_x An x\\nwith two lines\n"
        "# TYPE gatekeeper_x gauge\n"
        'gatekeeper_x{job="say \\"hi\\"\\\\"} 1.5\n'
        'gatekeeper_x{job="plain"} 3.0\n'
    )
    counter = MetricFamily("gatekeeper_y_total", "counter", "Ys").add(2, kind="a")
    assert render([counter]) == ("# HELP gatekeeper_y_total Ys\n# TYPE gatekeeper_y_total counter\n"
                                 'gatekeeper_y_total{kind="a"} 2.0\n')
    with pytest.raises(ValueError, match="not a valid Prometheus name"):
        MetricFamily("bad-name", "gauge", "")


def test_gate_metrics_cover_queues_jobs_nodes_requests_and_events():
    text = render(gate_metrics(snapshot()))
    assert 'gatekeeper_queue_items{pipeline="gate",queue="integrated"} 2' in text
    assert 'gatekeeper_queue_window{pipeline="gate",queue="integrated"} 20' in text
    assert 'gatekeeper_item_resident_seconds_max{pipeline="gate",queue="integrated"} 300' in text
    assert 'gatekeeper_jobs{pipeline="gate",state="running"} 1' in text
    assert 'gatekeeper_job_results_total{job="tox",project="nova",result="FAILURE"} 1' in text
    assert 'gatekeeper_job_duration_seconds_sum{job="tox",project="nova"} 350' in text
    assert 'gatekeeper_job_duration_seconds_count{job="tox",project="nova"} 4' in text
    assert 'gatekeeper_nodes{label="debian",provider="sim-a",state="ready"} 2' in text
    assert 'gatekeeper_launch_failures{provider="sim-b"} 1' in text
    assert 'gatekeeper_node_request_wait_seconds_max{state="requested"} 30' in text
    assert 'gatekeeper_event_queue_depth{queue="management"} 2' in text


def test_openmetrics_is_served_to_a_scraper_that_asks_for_it():
    body, content_type = exposition(gate_metrics(snapshot()), "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert "# TYPE gatekeeper_job_results counter\n" in text
    assert 'gatekeeper_job_results_total{job="tox",project="nova",result="SUCCESS"} 3.0' in text
    assert text.endswith("# EOF\n")
    assert exposition([], "")[1] == "text/plain; version=0.0.4; charset=utf-8"


def test_statsd_client_sends_counters_gauges_and_timers_over_udp(udp_listener):
    client = StatsdClient("127.0.0.1", udp_listener.getsockname()[1], prefix="gk")
    try:
        client.incr("builds.nova.SUCCESS")
        assert received(udp_listener) == ["gk.builds.nova.SUCCESS:1|c"]
        client.gauge("queue.gate", 3)
        assert received(udp_listener) == ["gk.queue.gate:3|g"]
        client.timing("job.tox", 1500.25)
        assert received(udp_listener) == ["gk.job.tox:1500.250|ms"]
    finally:
        client.close()


def test_statsd_reporter_sends_the_same_numbers_as_prometheus(udp_listener):
    client = StatsdClient("127.0.0.1", udp_listener.getsockname()[1], prefix="gatekeeper")
    reporter = StatsdReporter(client, snapshot)
    try:
        sent = reporter.report_once()
        lines = []
        while len(lines) < sent:
            lines += received(udp_listener)
    finally:
        client.close()
    # Written out from the snapshot's own numbers, not computed by the code under test.
    assert sorted(lines) == sorted([
        "gatekeeper.queue_items.gate.integrated:2|g",
        "gatekeeper.queue_window.gate.integrated:20|g",
        "gatekeeper.item_resident_seconds_max.gate.integrated:300|g",
        "gatekeeper.jobs.gate.completed:1|g",
        "gatekeeper.jobs.gate.queued:1|g",
        "gatekeeper.jobs.gate.running:1|g",
        "gatekeeper.jobs.gate.waiting:1|g",
        "gatekeeper.job_results_total.tox.nova.SUCCESS:3|g",
        "gatekeeper.job_results_total.tox.nova.FAILURE:1|g",
        "gatekeeper.job_duration_seconds_sum.tox.nova:350|g",
        "gatekeeper.job_duration_seconds_count.tox.nova:4|g",
        "gatekeeper.nodes.debian.sim-b.failed:1|g",
        "gatekeeper.nodes.debian.sim-a.ready:2|g",
        "gatekeeper.launch_failures.sim-b:1|g",
        "gatekeeper.node_requests.requested:2|g",
        "gatekeeper.node_request_wait_seconds_max.requested:30|g",
        "gatekeeper.event_queue_depth.management:2|g",
        "gatekeeper.event_queue_depth.trigger_gerrit:0|g",
    ])
