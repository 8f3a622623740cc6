"""Zuul's job file matchers over real wires: a job with `irrelevant-files` skips a change whose every file is
irrelevant, a job with `files` runs only for a change touching one of them; Gerrit's /COMMIT_MSG is no file; a change
none of whose gate jobs its files select stays out, and an operator is told why."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper.gerrit.source import GerritChangeSource
from gatekeeper.zk.client import ZKClient
from tests.functional.gate_harness import GateHarness
from tests.layouts import GATE_LAYOUT

LAYOUT = GATE_LAYOUT.replace("  - name: unit\n", """  - name: unit
    irrelevant-files: ['^doc/.*$']
  - name: api
    files: '^nova/'
""", 1).replace("pipelines: {check: [unit], gate: [unit, integration]}",
                "pipelines: {check: [unit], gate: [unit, integration, api]}", 1)
DOCS = {"doc/index.rst": "Docs\n"}


@pytest.fixture
def gate(tmp_path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    assert LAYOUT.count("irrelevant-files") == 1 and "integration, api]" in LAYOUT
    harness = GateHarness(tmp_path, zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.stop()


def gate_jobs(gate: GateHarness, change) -> set[str]:
    return {r.job for r in gate.executor.history if r.pipeline == "gate" and r.change == change.number}


def test_a_docs_only_change_skips_the_job_its_files_are_irrelevant_to_and_merges_without_it(gate: GateHarness) -> None:
    docs = gate.change("org/a", "Document the API", files=DOCS)
    gate.settle()
    assert GerritChangeSource(gate.connection).get_change(docs.number).files == ["/COMMIT_MSG", "doc/index.rst"]
    gate.approve(docs)
    gate.settle()
    assert gate.status(docs) == "MERGED"
    assert gate.history("gate") == [("integration", "SUCCESS", "1,1")]
    (report,) = [r for r in gate.reports(docs) if "Build succeeded" in r]
    assert "integration" in report and "unit" not in report
    assert gate.history("check") == []  # check runs only unit, irrelevant here: the change stays out of check


def test_a_change_touching_docs_and_code_runs_every_job_its_files_select(gate: GateHarness) -> None:
    both = gate.change("org/a", "Document and fix the API", files={**DOCS, "nova/api.py": "x = 1\n"})
    readme = gate.change("org/a", "Reword the README", files={"README": "Read me\n"})
    gate.settle()
    gate.approve(both, readme)
    gate.settle()
    assert [gate.status(c) for c in (both, readme)] == ["MERGED", "MERGED"]
    assert gate_jobs(gate, both) == {"unit", "integration", "api"}
    assert gate_jobs(gate, readme) == {"unit", "integration"}  # api's files: '^nova/' matches no file of it
    gate.assert_history(("api", "SUCCESS", "1,1"), ("unit", "SUCCESS", "1,1 2,1"))


def test_a_change_to_its_commit_message_only_touches_no_file(gate: GateHarness) -> None:
    message_only = gate.change("org/a", "Only a commit message", files={})
    gate.settle()
    assert GerritChangeSource(gate.connection).get_change(message_only.number).files == ["/COMMIT_MSG"]
    gate.approve(message_only)
    gate.settle()
    assert gate.status(message_only) == "MERGED"
    assert gate.history("gate") == [("integration", "SUCCESS", "1,1")]


def test_a_change_none_of_whose_gate_jobs_its_files_select_stays_out_and_an_operator_is_told_why(
        gate: GateHarness) -> None:
    docs = gate.change("org/c", "Document org/c", files=DOCS)
    code = gate.change("org/c", "Fix org/c", files={"setup.py": "x = 2\n"})
    gate.settle()
    gate.approve(docs, code)
    gate.settle()
    assert [gate.status(c) for c in (docs, code)] == ["NEW", "MERGED"]
    assert gate.reports(docs) == []
    assert gate.management("enqueue", "gate", change="1,1") == \
        "project org/c has no jobs in pipeline gate for the files change 1,1 touches"
    gate.assert_history(("unit", "SUCCESS", "2,1"))
    assert gate_jobs(gate, docs) == set()


def test_a_variant_replaces_the_jobs_file_matchers_on_its_branches(
        tmp_path, zk_factory: Callable[..., ZKClient]) -> None:
    layout = LAYOUT.replace("    irrelevant-files: ['^doc/.*$']\n", """    irrelevant-files: ['^doc/.*$']
    variants:
      - branches: stable/
        irrelevant-files: ['^releasenotes/']
""", 1)
    assert layout != LAYOUT
    gate = GateHarness(tmp_path, zk_factory, layout_text=layout)
    try:
        gate.sim.create_branch("org/a", "stable/2024.1")
        master = gate.change("org/a", "Document master", files=DOCS)
        stable = gate.sim.create_change("org/a", "Document stable", files=DOCS, branch="stable/2024.1", owner="jane")
        gate.settle()
        gate.approve(master, stable)
        gate.settle()
        assert [gate.status(c) for c in (master, stable)] == ["MERGED", "MERGED"]
        assert gate_jobs(gate, master) == {"integration"}
        assert gate_jobs(gate, stable) == {"unit", "integration"}  # doc/ is relevant on stable: its variant says so
    finally:
        gate.stop()


def test_a_change_touching_more_files_than_an_item_can_keep_runs_every_job_and_holds_up_no_other(
        gate: GateHarness) -> None:
    # about 1.2 MB of paths, all of them docs: more than a ZooKeeper record holds, so the files are not kept
    deep = "/".join(c * 250 for c in "xyz")
    tree = gate.change("org/a", "Vendor the docs theme", files={f"doc/{deep}/{i:04d}.rst": "." for i in range(1500)})
    fix = gate.change("org/a", "Fix the API", files={"nova/api.py": "x = 2\n"})
    gate.settle()
    assert len(GerritChangeSource(gate.connection).get_change(tree.number).files) == 0  # not known
    assert [gate.status(c) for c in (tree, fix)] == ["NEW", "NEW"]
    # check runs only unit, whose irrelevant-files (doc/) would skip the tree were its files known
    assert gate.history("check") == [("unit", "SUCCESS", "1,1"), ("unit", "SUCCESS", "2,1")]
    gate.approve(tree, fix)
    gate.settle()
    assert [gate.status(c) for c in (tree, fix)] == ["MERGED", "MERGED"]
    # its files not known, no job is skipped for them: unit (irrelevant-files: doc/) and api (files: nova/) run
    assert gate_jobs(gate, tree) == {"unit", "integration", "api"}
