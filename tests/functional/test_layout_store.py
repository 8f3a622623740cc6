"""The active layout travels through ZooKeeper: published by one service, read identically by another."""

from __future__ import annotations

import re
from pathlib import Path

from gatekeeper.cmd import main
from gatekeeper.config.layout import load_layout
from gatekeeper.config.store import publish_layout, read_layout
from gatekeeper.zk.server import pid_alive

REPO = Path(__file__).resolve().parents[2]


def test_published_layout_reads_back_the_same_in_another_client(zk, zk_factory):
    assert read_layout(zk) is None
    layout = load_layout(REPO / "layouts")
    publish_layout(zk, layout)
    other = read_layout(zk_factory(), {"gerrit"})
    assert other.summary() == layout.summary()
    assert other.projects == layout.projects and other.jobs == layout.jobs
    assert other.nodepool.providers.keys() == layout.nodepool.providers.keys()


def test_bootstrap_command_runs_zookeeper_and_leaves_nothing_running(capsys):
    assert main(["bootstrap", "--layout", str(REPO / "layouts")]) == 0
    out = capsys.readouterr().out
    assert "layout published to ZooKeeper and read back: 2 pipelines" in out
    assert "registered: bootstrap@" in out
    assert out.rstrip().endswith("ZooKeeper stopped; nothing left running")
    pid = int(re.search(r"\(pid (\d+)\)", out).group(1))
    assert not pid_alive(pid)
