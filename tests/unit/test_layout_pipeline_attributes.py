"""Zuul's pipeline attributes in a layout: `supercedes`, `dequeue-on-new-patchset` and the window's increase and
decrease types, read and checked, and the window arithmetic they choose."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.model import Pipeline, Requirements, WindowConfig
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.triggers import unmet_requirements
from tests.unit.test_layout import BASE, errors_of, replace


def pipelines_of(text: str):
    return parse_layout({"layout0.yaml": text}, connections={"gerrit"}).pipelines


def test_nothing_is_superseded_and_new_patch_sets_dequeue_unless_the_layout_says_otherwise():
    check, gate = pipelines_of(BASE).values()
    assert check.supercedes == () and gate.supercedes == ()
    assert check.dequeue_on_new_patchset and gate.dequeue_on_new_patchset
    assert (gate.window.increase_type, gate.window.decrease_type) == ("linear", "exponential")


def test_supercedes_takes_a_name_or_a_list_of_names_and_dequeue_on_new_patchset_a_boolean():
    one = pipelines_of(replace("    manager: dependent", "    manager: dependent\n    supercedes: check"))
    assert one["gate"].supercedes == ("check",)
    both = pipelines_of(replace("    manager: independent",
                                "    manager: independent\n    supercedes: [gate]\n    dequeue-on-new-patchset: false"))
    assert both["check"].supercedes == ("gate",) and not both["check"].dequeue_on_new_patchset


def test_supercedes_naming_an_unknown_pipeline_is_an_error_naming_both():
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    supercedes: [check, chek]"))
    assert msg == 'layout0.yaml:10: pipeline "gate" supercedes: undefined pipeline "chek" (defined: check, gate)'


def test_a_pipeline_cannot_supercede_itself():
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    supercedes: gate"))
    assert msg == 'layout0.yaml:10: pipeline "gate": a pipeline cannot supercede itself'


def test_supercedes_and_dequeue_on_new_patchset_have_types():
    msgs = errors_of(replace("    manager: dependent",
                             "    manager: dependent\n    supercedes: {check: 1}\n    dequeue-on-new-patchset: sure"))
    assert any("(gate).supercedes: expected a pipeline name or a list of them" in m for m in msgs), msgs
    assert any("(gate).dequeue-on-new-patchset: expected true or false" in m for m in msgs), msgs


def test_window_types_are_read_and_an_unknown_type_is_an_error():
    gate = pipelines_of(replace("    manager: dependent", "    manager: dependent\n"
                                "    window: {increase-type: exponential, decrease-type: linear}"))["gate"]
    assert (gate.window.increase_type, gate.window.decrease_type) == ("exponential", "linear")
    (msg,) = errors_of(replace("    manager: dependent",
                               "    manager: dependent\n    window: {increase-type: quadratic}"))
    assert msg.endswith("(gate).window.increase-type: unknown window type (expected linear or exponential)"), msg


# -- the arithmetic -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window, size, grown", [
    (WindowConfig(), 20, 21),  # linear by 1, no ceiling
    (WindowConfig(ceiling=21, increase=5), 20, 21),  # never past the ceiling
    (WindowConfig(ceiling=20), 20, 20),
    (WindowConfig(ceiling=10), 20, 10),  # above a lowered ceiling: down to it (Zuul: min(ceiling, window + 1))
    (WindowConfig(increase=2, increase_type="exponential"), 5, 10),
    (WindowConfig(ceiling=12, increase=2, increase_type="exponential"), 8, 12),
    (WindowConfig(), 0, 21),  # a queue that had no window: from the initial size
    (WindowConfig(increase=2, increase_type="exponential"), 0, 40),
    (WindowConfig(initial=0), 0, 0),  # no window: none
])
def test_window_grows_as_its_increase_type_says(window: WindowConfig, size: int, grown: int):
    assert window.grown(size) == grown


@pytest.mark.parametrize("window, size, shrunk", [
    (WindowConfig(), 20, 10),  # exponential by 2
    (WindowConfig(), 5, 3),  # never below the floor
    (WindowConfig(decrease_factor=3), 10, 3),
    (WindowConfig(decrease_factor=2, decrease_type="linear"), 20, 18),
    (WindowConfig(decrease_factor=1.5, decrease_type="linear"), 10, 8),
    (WindowConfig(floor=4, decrease_factor=3, decrease_type="linear"), 6, 4),
    (WindowConfig(), 0, 10),  # a queue that had no window: from the initial size
    (WindowConfig(initial=0), 5, 0),
])
def test_window_shrinks_as_its_decrease_type_says(window: WindowConfig, size: int, shrunk: int):
    assert window.shrunk(size) == shrunk


# -- Zuul's flat spelling of the window -----------------------------------------------------------------------------
FLAT = """    manager: dependent
    window: 10
    window-floor: 2
    window-ceiling: 40
    window-increase-type: exponential
    window-increase-factor: 2
    window-decrease-type: linear
    window-decrease-factor: 3"""


def test_zuuls_flat_window_keys_mean_the_window_mapping():
    gate = pipelines_of(replace("    manager: dependent", FLAT))["gate"]
    assert gate.window == WindowConfig(initial=10, floor=2, ceiling=40, increase=2, decrease_factor=3,
                                       increase_type="exponential", decrease_type="linear")
    only_size = pipelines_of(replace("    manager: dependent", "    manager: dependent\n    window: 7"))["gate"]
    assert only_size.window == WindowConfig(initial=7)
    only_floor = pipelines_of(replace("    manager: dependent", "    manager: dependent\n    window-floor: 5"))
    assert only_floor["gate"].window == WindowConfig(floor=5)


def test_a_pipeline_mixing_the_flat_window_keys_and_the_window_mapping_is_refused():
    (msg,) = errors_of(replace("    manager: dependent",
                               "    manager: dependent\n    window: {initial: 5}\n    window-floor: 2"))
    assert msg == ('layout0.yaml:11: pipeline "gate": window-floor is Zuul\'s flat spelling of the window, which '
                   "this pipeline also gives as a mapping: write floor inside window, or window as a number")


def test_the_flat_window_is_checked_as_the_mapping_is():
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    window: 2\n    window-floor: 5"))
    assert msg == 'layout0.yaml:11: pipeline "gate": window floor 5 is above its initial size 2'
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    window: -1"))
    assert msg == "layout0.yaml:10: pipelines[1] (gate).window: must not be negative (0: no limit)"
    (msg,) = errors_of(replace("    manager: dependent", "    manager: dependent\n    window: big"))
    assert msg.endswith("(gate).window: expected a window mapping or a number of changes, got a string 'big'"), msg
    (msg,) = errors_of(replace("    manager: independent", "    manager: independent\n    window-ceiling: 30"))
    assert msg == 'layout0.yaml:5: pipeline "check": a window applies only to a dependent pipeline'


# -- what a new patch set does to an item ---------------------------------------------------------------------------
def test_a_new_patch_set_dequeues_unless_the_pipeline_keeps_old_patch_sets():
    outdated = Change(project="org/a", number=1, patchset=1, current_patchset=2)
    requires_current = Requirements(current_patchset=True)
    default = Pipeline("check", "independent", require=requires_current)
    keeps = Pipeline("check", "independent", require=requires_current, dequeue_on_new_patchset=False)
    uploaded = "a new patch set (1,2) was uploaded"
    assert unmet_requirements(default, outdated, staying=True) == uploaded
    assert unmet_requirements(keeps, outdated, staying=True) == ""
    assert unmet_requirements(keeps, outdated) == uploaded  # an outdated patch set still does not enter
    # Zuul's default dequeues an old patch set whatever the pipeline requires of the ones entering
    assert unmet_requirements(Pipeline("check", "independent"), outdated, staying=True) == uploaded
