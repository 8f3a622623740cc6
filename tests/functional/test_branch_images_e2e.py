"""Stable branches on their own images, end to end: the launcher boots each branch's image from the cloud
simulator, the real executor runs devstack on it, and the console header and build result say which variant and
image ran."""

from __future__ import annotations

import os

import pytest

from gatekeeper.sim.devstack import NOVA_COMPUTE
from tests.functional.test_executor_e2e import E2E, console_lines, devstack_job, e2e_layout

STABLE = "stable/2024.1"
BRANCH_LAYOUT = e2e_layout(
    devstack_job("ubuntu-noble", variants="\n      - branches: stable/\n        label: ubuntu-jammy"),
    "{gate: [devstack]}", {"ubuntu-jammy": ("jammy", "ubuntu-22.04"), "ubuntu-noble": ("noble", "ubuntu-24.04")},
    per_branch=True)


@pytest.fixture
def e2e(tmp_path, zk_factory):
    rig = E2E(tmp_path, zk_factory, layout=BRANCH_LAYOUT)
    try:
        yield rig
    finally:
        rig.stop()


def header(e2e: E2E, change) -> dict[str, str]:
    (result,) = [r for r in e2e.results(change) if r.result == "SUCCESS"]
    lines = console_lines(os.path.join(e2e.log_dir(result), "console.txt"))
    return {k: v for k, _, v in (line.partition("=") for line in lines if "=" in line.split(" ", 1)[0])}


def test_master_and_stable_run_devstack_each_on_its_own_image(e2e):
    gate, sim = e2e.gate, e2e.gate.sim
    for project in ("openstack/nova", "openstack-dev/devstack"):
        sim.create_branch(project, STABLE)
    master = gate.change("openstack/nova", "Master tidy", files={"nova/compute.py": NOVA_COMPUTE + "# tidy\n"})
    stable = sim.create_change("openstack/nova", "Stable backport", branch=STABLE, owner="jane",
                               files={"nova/compute.py": NOVA_COMPUTE + "# backport\n"})
    gate.settle(60)
    gate.approve(master, stable)
    gate.settle(240)
    assert [gate.status(c) for c in (master, stable)] == ["MERGED", "MERGED"], \
        [gate.ci_messages(c) for c in (master, stable)]
    # each branch in its own queue: neither was tested on top of the other
    gate.assert_history(("devstack", "SUCCESS", "1,1"), ("devstack", "SUCCESS", "2,1"))

    on_master, on_stable = header(e2e, master), header(e2e, stable)
    assert (on_master["NODE_LABEL"], on_master["NODE_IMAGE"].split()[0]) == ("ubuntu-noble", "noble")
    assert on_master["JOB_VARIANT"] == "default (branch master)"
    assert (on_stable["NODE_LABEL"], on_stable["NODE_IMAGE"].split()[0]) == ("ubuntu-jammy", "jammy")
    assert on_stable["JOB_VARIANT"] == f"branches stable/ (branch {STABLE})"
    results = {c.number: [r for r in e2e.results(c) if r.result == "SUCCESS"][0] for c in (master, stable)}
    assert results[master.number].node["image"] == "noble" and results[stable.number].node["image"] == "jammy"
