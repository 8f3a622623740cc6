"""Zuul's timer trigger in a layout: cron schedules read and checked (5 fields, or 6 with seconds), only on an
independent pipeline; and which branch tips a fire enqueues (projects with jobs in the pipeline, branches on
which one of those jobs runs)."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.gerrit.client import GerritUnavailableError
from gatekeeper.scheduler.timer import last_fire, timer_event, timer_record, timer_refs
from gatekeeper.scheduler.triggers import pipeline_triggered
from tests.unit.test_layout import BASE, errors_of, replace

CHECK_TRIGGER = """    manager: independent
    trigger:
      gerrit:
        - event: patchset-created"""


def periodic(*times: str) -> str:
    entries = "".join(f"\n        - time: '{t}'" for t in times)
    return replace(CHECK_TRIGGER, f"    manager: independent\n    trigger:\n      timer:{entries}")


def test_timer_schedules_of_five_or_six_fields_are_read_in_order_once_each():
    layout = parse_layout({"layout0.yaml": periodic("0 6 * * *", "* * * * * *", "0 6 * * *")},
                          connections={"gerrit"})
    assert layout.pipelines["check"].timers == ("0 6 * * *", "* * * * * *")
    assert layout.pipelines["check"].triggers == ()  # the timer is no connection's trigger
    assert parse_layout({"layout0.yaml": BASE}, connections={"gerrit"}).pipelines["check"].timers == ()


def test_a_cron_schedule_that_does_not_parse_is_an_error_naming_pipeline_file_and_line():
    msgs = errors_of(periodic("0 6 * *", "61 6 * * *", "* * * * * * *", "0 6 * * *"))
    assert msgs == [
        'layout0.yaml:7: pipeline "check": timer time "0 6 * *" has 4 field(s): a cron schedule has 5 (minute hour '
        "day month weekday) or 6 (with seconds last)",
        'layout0.yaml:8: pipeline "check": timer time "61 6 * * *" does not parse as a cron schedule (minute hour '
        "day month weekday [second])",
        'layout0.yaml:9: pipeline "check": timer time "* * * * * * *" has 7 field(s): a cron schedule has 5 (minute '
        "hour day month weekday) or 6 (with seconds last)",
    ]


def test_a_timer_entry_needs_a_time_given_as_text():
    (msg,) = errors_of(replace(CHECK_TRIGGER, "    manager: independent\n    trigger:\n      timer:\n        - {}"))
    assert msg == 'layout0.yaml:7: pipelines[0] (check).trigger.timer[0]: missing required key "time"'
    (msg,) = errors_of(replace(CHECK_TRIGGER, "    manager: independent\n    trigger:\n      timer: [{time: 5}]"))
    assert msg.endswith("(check).trigger.timer[0].time: expected a cron schedule, as a string, got an integer 5")


def test_a_dependent_pipeline_with_a_timer_trigger_is_an_error():
    (msg,) = errors_of(replace("    manager: dependent\n    trigger:",
                               "    manager: dependent\n    trigger:\n      timer: [{time: '0 6 * * *'}]"))
    assert msg == ('layout0.yaml:11: pipeline "gate": a dependent pipeline cannot have a timer trigger (a branch '
                   "tip has no change to gate): use an independent pipeline")


LAYOUT = periodic("0 6 * * *").replace("""jobs:
  - name: unit
    label: small
""", """jobs:
  - name: unit
    label: small
  - name: nightly
    label: small
    branches: [master, stable/]
""").replace("""    pipelines:
      check: [unit]
      gate: [unit]
""", """    pipelines:
      check: [unit, nightly]
      gate: [unit]
  - name: org/b
    pipelines:
      check: [nightly]
  - name: org/c
    pipelines:
      gate: [unit]
""")

BRANCHES = {
    "org/a": {"master": "a" * 40, "stable/1": "b" * 40, "feature": "c" * 40},
    "org/b": {"master": "d" * 40, "feature": "e" * 40},
    "org/c": {"master": "f" * 40},
}


def test_a_fire_enqueues_each_branch_tip_of_each_project_with_jobs_in_the_pipeline_that_a_job_runs_on():
    layout = parse_layout({"layout0.yaml": LAYOUT}, connections={"gerrit"})
    asked: list[str] = []

    def heads(project: str) -> dict[str, str]:
        asked.append(project)
        return BRANCHES[project]

    # org/a's unit runs on every branch; org/b's only job runs on master and stable/*; org/c has no job in check.
    assert timer_refs(layout, "check", heads) == [
        ("org/a", "feature", "c" * 40), ("org/a", "master", "a" * 40), ("org/a", "stable/1", "b" * 40),
        ("org/b", "master", "d" * 40)]
    assert asked == ["org/a", "org/b"]  # Gerrit is not asked about a project without jobs in the pipeline


def test_a_project_whose_branches_cannot_be_read_is_left_out_of_that_fire():
    layout = parse_layout({"layout0.yaml": LAYOUT}, connections={"gerrit"})

    def heads(project: str) -> dict[str, str]:
        if project == "org/a":
            raise GerritUnavailableError("Gerrit 127.0.0.1:29418: cannot list the branches of org/a: refused")
        return BRANCHES[project]

    assert timer_refs(layout, "check", heads) == [("org/b", "master", "d" * 40)]


def test_a_timer_event_triggers_only_the_pipeline_it_was_fired_for():
    layout = parse_layout({"layout0.yaml": LAYOUT}, connections={"gerrit"})
    event = timer_event(timer_record("check", 60.0, "org/a", "master", "a" * 40), "gerrit", "q-0000000001")
    assert event is not None and (event.type, event.ref, event.newrev, event.project) == (
        "timer", "refs/heads/master", "a" * 40, "org/a")
    assert pipeline_triggered(layout.pipelines["check"], event)
    assert not pipeline_triggered(layout.pipelines["gate"], event)
    assert timer_event({"type": "patchset-created"}, "gerrit", "q-0000000002") is None
    with pytest.raises(ValueError, match="timer event q-0000000003 of connection gerrit lacks"):
        timer_event({"type": "timer", "pipeline": "check"}, "gerrit", "q-0000000003")


def test_the_last_fire_of_a_schedule_is_at_or_before_now():
    assert last_fire("* * * * * *", 100.0) == 100.0
    assert last_fire("* * * * * *", 100.5) == 100.0
    assert last_fire("0 6 * * *", 86400 + 6 * 3600 - 1) == 6 * 3600
