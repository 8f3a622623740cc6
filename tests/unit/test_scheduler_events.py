"""Trigger events as the scheduler reads them from the connection's queue, and the trigger filters."""

from __future__ import annotations

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.gerrit.events import GerritEvent, event_from_gerrit
from gatekeeper.gerrit.trigger import from_gerrit, from_record
from gatekeeper.models.events import UnreadableEvent
from gatekeeper.models.pipeline import Change
from gatekeeper.scheduler.triggers import pipeline_triggered, unmet_requirements
from tests.unit.test_scheduler_manager import LAYOUT

APPROVED = {
    "type": "comment-added",
    "change": {"project": "org/a", "branch": "master", "number": 7, "status": "NEW"},
    "patchSet": {"number": 2, "ref": "refs/changes/07/7/2"},
    "author": {"username": "rita"},
    "approvals": [{"type": "Code-Review", "value": "2"}, {"type": "Approved", "value": "1", "oldValue": "0"}],
    "comment": "Patch Set 2: Code-Review+2 Approved+1",
}


def test_a_queued_typed_event_reads_like_gerrits_own_json() -> None:
    queued = GerritEvent.from_dict(event_from_gerrit(APPROVED).to_dict()).to_dict()  # as the listener queues it
    for event in (from_gerrit(APPROVED, "gerrit", "q-0000000003"), from_record(queued, "gerrit", "q-0000000003")):
        assert (event.type, event.project, event.branch, event.key, event.account, event.id) == \
            ("comment-added", "org/a", "master", "7,2", "rita", "q-0000000003")
        assert {"label": "Approved", "value": 1, "old": 0} in event.approvals


@pytest.mark.parametrize("record", [
    [1, 2], "text", {"no": "type"}, {"type": "comment-added", "change_number": "abc"},
    {"type": "comment-added", "patchset": [2]}, {"type": "comment-added", "approvals": [{"label": "x"}]},
])
def test_a_queue_record_that_is_not_an_event_is_unreadable(record) -> None:
    with pytest.raises(UnreadableEvent, match="event q-0000000009 of connection gerrit"):
        from_record(record, "gerrit", "q-0000000009")


def test_gerrits_json_is_validated_by_the_one_parser() -> None:
    with pytest.raises(UnreadableEvent):
        from_gerrit({**APPROVED, "change": {**APPROVED["change"], "number": "abc"}})


def test_gate_triggers_on_approval_and_check_on_recheck_comments() -> None:
    layout = parse_layout({"layout.yaml": LAYOUT})
    gate, check = layout.pipelines["gate"], layout.pipelines["check"]
    approved = from_gerrit(APPROVED)
    assert pipeline_triggered(gate, approved) and not pipeline_triggered(check, approved)
    recheck = from_gerrit({**APPROVED, "approvals": [], "comment": "Patch Set 2:\n\nrecheck"})
    assert pipeline_triggered(check, recheck) and not pipeline_triggered(gate, recheck)


def test_requirements_say_why_a_change_may_not_stay() -> None:
    gate = parse_layout({"layout.yaml": LAYOUT}).pipelines["gate"]
    ok = Change(project="org/a", number=7, patchset=2, current_patchset=2,
                approvals=[{"label": "Code-Review", "value": 2}, {"label": "Approved", "value": 1}])
    assert unmet_requirements(gate, ok) == ""
    assert unmet_requirements(gate, Change(**{**_fields(ok), "current_patchset": 3})) == \
        "a new patch set (7,3) was uploaded"
    assert unmet_requirements(gate, Change(**{**_fields(ok), "status": "ABANDONED"})) == "it was abandoned"
    assert unmet_requirements(gate, Change(**{**_fields(ok), "wip": True})) == "it is marked work in progress"


def _fields(change: Change) -> dict:
    data = change.to_dict()
    data.pop("_v")
    return data


def test_a_triggers_current_patchset_requirement_is_decided_on_the_events_patch_set() -> None:
    layout = parse_layout({"layout.yaml": LAYOUT.replace(
        "          comment: (?im)^\\s*recheck\\s*$\n",
        "          comment: (?im)^\\s*recheck\\s*$\n          require: {current-patchset: true}\n", 1)})
    check = layout.pipelines["check"]
    assert check.triggers[-1].require is not None
    # the change as looked up is its current patch set, 3; the recheck was left on patch set 2
    now = Change(project="org/a", number=7, patchset=3, current_patchset=3)
    old_recheck = from_gerrit({**APPROVED, "approvals": [], "comment": "Patch Set 2:\n\nrecheck"})
    assert not pipeline_triggered(check, old_recheck, now)
    current_recheck = from_gerrit({**APPROVED, "patchSet": {"number": 3, "ref": "refs/changes/07/7/3"},
                                   "approvals": [], "comment": "Patch Set 3:\n\nrecheck"})
    assert pipeline_triggered(check, current_recheck, now)


def _check_with(filters: str):
    """The shared layout's check pipeline, its patchset-created trigger given `filters` (YAML lines)."""
    layout = parse_layout({"layout.yaml": LAYOUT.replace(
        "        - event: patchset-created\n", "        - event: patchset-created\n" + filters, 1)})
    return layout.pipelines["check"]


UPLOADED = {"type": "patchset-created", "change": {**APPROVED["change"], "branch": "feature/stable/1"},
            "patchSet": APPROVED["patchSet"], "uploader": {"username": "jane", "email": "jane@example.com"}}


def test_a_triggers_branch_is_matched_at_the_start_of_the_branch_as_zuul_does() -> None:
    """Zuul's EventFilter (`branch.match(event.branch)`): stable/.* is not found inside feature/stable/1."""
    check = _check_with("          branch: stable/.*\n")
    assert not pipeline_triggered(check, from_gerrit(UPLOADED))
    assert pipeline_triggered(check, from_gerrit({**UPLOADED, "change": {**UPLOADED["change"], "branch": "stable/1"}}))


def test_a_triggers_ref_is_matched_at_the_start_of_the_ref_as_zuul_does() -> None:
    """Zuul's EventFilter (`ref.match(event.ref)`): heads/.* is not found inside refs/heads/master."""
    post = parse_layout({"layout.yaml": LAYOUT.replace("pipelines:\n", (
        "pipelines:\n  - name: post\n    manager: independent\n    trigger:\n      gerrit:\n"
        "        - event: ref-updated\n          ref: [heads/.*, refs/tags/.*]\n"), 1)}).pipelines["post"]
    updated = {"type": "ref-updated", "refUpdate": {"project": "org/a", "oldRev": "1" * 40, "newRev": "2" * 40}}
    assert not pipeline_triggered(post, from_gerrit({**updated, "refUpdate": {**updated["refUpdate"],
                                                                             "refName": "refs/heads/master"}}))
    assert pipeline_triggered(post, from_gerrit({**updated, "refUpdate": {**updated["refUpdate"],
                                                                         "refName": "refs/tags/1.0"}}))


def test_a_triggers_email_filter_is_searched_in_the_email_of_the_account_behind_the_event() -> None:
    """Zuul's Gerrit trigger `email` (searched in the event account's email, as `username` in its username):
    Jane's upload passes `@example\\.com$` and not `^rita@`; an event whose account has no email passes none."""
    queued = GerritEvent.from_dict(event_from_gerrit(UPLOADED).to_dict()).to_dict()  # as the listener queues it
    for event in (from_gerrit(UPLOADED), from_record(queued)):
        assert event.email == "jane@example.com"
        assert pipeline_triggered(_check_with("          email: '@example\\.com$'\n"), event)
        assert not pipeline_triggered(_check_with("          email: [^rita@, ^bob@]\n"), event)
    anonymous = from_gerrit({**UPLOADED, "uploader": {"username": "jane"}})
    assert not pipeline_triggered(_check_with("          email: .*\n"), anonymous)
