"""The pipeline manager asks the layout's job file matchers with each change's files: when it adds an item, and
again when a new layout changes them for an item already in the pipeline."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.models.pipeline import Change
from tests.layouts import GATE_LAYOUT
from tests.unit.test_scheduler_manager import Gate

IRRELEVANT_DOCS = GATE_LAYOUT.replace("  - name: unit\n", "  - name: unit\n    irrelevant-files: ['^doc/']\n", 1)


@pytest.fixture
def gate() -> Gate:
    return Gate()


def docs_change(gate: Gate, files: tuple[str, ...] = ("/COMMIT_MSG", "doc/index.rst")) -> Change:
    change = gate.change("org/a")
    change.files = list(files)
    return change


def test_an_item_added_runs_only_the_jobs_its_files_select(gate: Gate) -> None:
    gate.layout = parse_layout({"layout.yaml": IRRELEVANT_DOCS})
    code, docs = docs_change(gate, ("/COMMIT_MSG", "doc/index.rst", "nova/api.py")), docs_change(gate)
    gate.approve(code)
    gate.approve(docs)  # added to a pipeline already walked with this layout: its jobs are chosen as it is added
    assert gate.states["gate"].find("2,1").jobs == ["integration"]
    gate.settle()
    assert gate.merged() == ["1,1", "2,1"]
    assert sorted(gate.history) == [("integration", "SUCCESS", "1,1"), ("integration", "SUCCESS", "1,1 2,1"),
                                    ("unit", "SUCCESS", "1,1")]


def test_a_new_layout_applies_its_file_matchers_to_the_items_in_the_pipeline(gate: Gate) -> None:
    docs = docs_change(gate)
    gate.hold = True
    gate.approve(docs)
    gate.settle()
    item = gate.states["gate"].find("1,1")
    assert sorted(item.builds) == ["integration", "unit"]
    unit = item.builds["unit"].id
    gate.layout = parse_layout({"layout.yaml": IRRELEVANT_DOCS})
    gate.process()
    assert item.jobs == ["integration"] and unit in gate.backend.cancelled
    gate.hold = False
    gate.settle()
    assert gate.merged() == ["1,1"]


def test_a_change_stored_before_changes_had_files_loads_with_unknown_files_and_runs_every_job(gate: Gate) -> None:
    old = gate.change("org/a").to_dict()
    del old["files"]
    loaded = Change.from_dict(old)
    assert loaded.files == []
    layout = parse_layout({"layout.yaml": IRRELEVANT_DOCS})
    assert layout.projects["org/a"].jobs_on_branch("gate", "master", layout.jobs, loaded.files) == \
        ("unit", "integration")
