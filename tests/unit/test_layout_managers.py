"""Zuul's serial and supercedent pipeline managers in a layout: accepted with the triggers Zuul gives them (a post
or deployment pipeline's ref-updated, a timer), and a window refused with the pipeline, file and line."""

from __future__ import annotations

from gatekeeper.config.layout import parse_layout
from tests.unit.test_layout import errors_of, replace

DEPLOY = """
  - name: deploy
    manager: serial
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/master$
        - event: change-merged
  - name: promote
    manager: supercedent
    trigger:
      gerrit:
        - event: ref-updated
      timer:
        - time: '0 6 * * *'
queues:"""


def with_managers(extra: str = "", pipeline: str = "deploy") -> str:
    text = replace("\nqueues:", DEPLOY).replace("      gate: [unit]\n", "      gate: [unit]\n      deploy: [unit]\n"
                                                "      promote: [unit]\n", 1)
    return text.replace(f"    manager: {'serial' if pipeline == 'deploy' else 'supercedent'}\n",
                        f"    manager: {'serial' if pipeline == 'deploy' else 'supercedent'}\n{extra}", 1)


def test_serial_and_supercedent_pipelines_load_with_ref_updated_and_timer_triggers():
    pipelines = parse_layout({"layout0.yaml": with_managers()}, connections={"gerrit"}).pipelines
    assert (pipelines["deploy"].manager, pipelines["promote"].manager) == ("serial", "supercedent")
    assert not pipelines["deploy"].dependent and not pipelines["promote"].dependent
    assert pipelines["promote"].timers == ("0 6 * * *",)


def test_a_window_on_a_serial_pipeline_is_refused_naming_the_pipeline_file_and_line():
    (msg,) = errors_of(with_managers("    window: 5\n"))
    assert msg == ('layout0.yaml:17: pipeline "deploy": a window applies only to a dependent pipeline (a serial '
                   "pipeline runs one item of each queue at a time, on the branch as it is)")
    (msg,) = errors_of(with_managers("    window: {initial: 4, floor: 2}\n"))
    assert msg.startswith('layout0.yaml:17: pipeline "deploy": a window applies only to a dependent pipeline (a '
                          "serial"), msg


def test_zuuls_flat_window_keys_on_a_supercedent_pipeline_are_refused_too():
    (msg,) = errors_of(with_managers("    window-floor: 1\n", pipeline="promote"))
    assert msg == ('layout0.yaml:24: pipeline "promote": a window applies only to a dependent pipeline (a '
                   "supercedent pipeline runs one item per project and branch at a time, and keeps only the newest "
                   "one waiting)")

