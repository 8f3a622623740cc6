"""Parsing Gerrit's stream-events JSON into typed events, and skipping what the gate must not see."""

from __future__ import annotations

import json
import logging

import pytest

from gatekeeper.gerrit.events import (
    ChangeMergedEvent,
    CommentAddedEvent,
    GerritEvent,
    PatchsetCreatedEvent,
    ProjectCreatedEvent,
    RefUpdatedEvent,
    parse_event,
)

JANE = {"name": "Jane Dev", "email": "jane@example.com", "username": "jane"}
RITA = {"name": "Rita Core", "email": "rita@example.com", "username": "rita"}
PATCHSET = {"number": 1, "revision": "9108f306de1364fa9f6f510b189b3de1c2a31365",
            "parents": ["eb37540e5ffd5326e18a4c72ea6660a04a368728"], "ref": "refs/changes/33/3033/1",
            "uploader": JANE, "createdOn": 1572010523, "author": JANE, "kind": "REWORK", "sizeInsertions": 1,
            "sizeDeletions": 1}
CHANGE = {"project": "org/project", "branch": "master", "id": "I920acf0faf8f78f5c1b4a5bc86e3715e2df4b953",
          "number": 3033, "subject": "Fix typo", "owner": JANE,
          "url": "https://review.example.com/c/org/project/+/3033",
          "commitMessage": "Fix typo\n\nChange-Id: I920acf0faf8f78f5c1b4a5bc86e3715e2df4b953\n",
          "createdOn": 1572010523, "status": "NEW"}
COMMON = {"change": CHANGE, "project": "org/project", "refName": "refs/heads/master",
          "changeKey": {"id": CHANGE["id"]}}


def line(**event: object) -> str:
    return json.dumps(event, separators=(",", ":"))


def test_comment_added_with_string_values_becomes_int_approvals() -> None:
    event = parse_event(line(
        author=RITA, comment="Patch Set 1: Code-Review+2 Workflow+1\n\nLGTM", patchSet=PATCHSET,
        approvals=[{"type": "Code-Review", "description": "Code-Review", "value": "2", "oldValue": "0"},
                   {"type": "Verified", "description": "Verified", "value": "0"},
                   {"type": "Workflow", "description": "Workflow", "value": "1", "oldValue": "0"}],
        **COMMON, type="comment-added", eventCreatedOn=1572010600))
    assert isinstance(event, CommentAddedEvent)
    assert (event.project, event.branch, event.change_number, event.patchset) == ("org/project", "master", 3033, 1)
    assert (event.change_id, event.ref, event.subject) == (CHANGE["id"], "refs/changes/33/3033/1", "Fix typo")
    assert (event.owner, event.author, event.event_created_on) == ("jane", "rita", 1572010600)
    assert event.approval("Code-Review").value == 2 and event.approval("Code-Review").old_value == 0
    assert event.approval("Verified").old_value is None and not event.approval("Verified").changed
    assert event.comment.endswith("LGTM") and event.change_key == "3033,1"


def test_patchset_created_change_merged_ref_updated_project_created() -> None:
    created = parse_event(line(uploader=JANE, patchSet=PATCHSET, **COMMON, type="patchset-created",
                               eventCreatedOn=1))
    assert isinstance(created, PatchsetCreatedEvent) and created.author == "jane"
    merged = parse_event(line(submitter=RITA, newRev="5b1c" * 10, patchSet=PATCHSET,
                              **{**COMMON, "change": {**CHANGE, "status": "MERGED"}}, type="change-merged",
                              eventCreatedOn=2))
    assert isinstance(merged, ChangeMergedEvent) and merged.new_rev == "5b1c" * 10 and merged.status == "MERGED"
    ref = parse_event(line(submitter=RITA, refUpdate={"oldRev": "a" * 40, "newRev": "b" * 40,
                                                      "refName": "refs/heads/stable", "project": "org/project"},
                           type="ref-updated", eventCreatedOn=3))
    assert isinstance(ref, RefUpdatedEvent)
    assert (ref.project, ref.branch, ref.ref_name, ref.old_rev, ref.new_rev) == (
        "org/project", "stable", "refs/heads/stable", "a" * 40, "b" * 40)
    project = parse_event(line(projectName="org/new", headName="refs/heads/master", type="project-created",
                               eventCreatedOn=4))
    assert isinstance(project, ProjectCreatedEvent) and project.project == "org/new"


def test_old_gerrit_string_change_number_and_short_ref_name() -> None:
    event = parse_event(line(uploader=JANE, patchSet={**PATCHSET, "number": "2"},
                             **{**COMMON, "change": {**CHANGE, "number": "3033"}}, type="patchset-created"))
    assert (event.change_number, event.patchset) == (3033, 2)
    ref = parse_event(line(refUpdate={"oldRev": "a" * 40, "newRev": "b" * 40, "refName": "master",
                                      "project": "p"}, type="ref-updated"))
    assert ref.branch == "master"


def test_change_ref_noise_is_dropped() -> None:
    for ref in ("refs/changes/33/3033/1", "refs/changes/33/3033/meta"):
        assert parse_event(line(refUpdate={"oldRev": "0" * 40, "newRev": "b" * 40, "refName": ref,
                                           "project": "p"}, type="ref-updated")) is None


@pytest.mark.parametrize("text", [
    "not json", "[1,2]", '"a string"', '{"no":"type"}', '{"type":42}', "", "[" * 100_000 + "]" * 100_000,
])
def test_lines_that_are_not_events_are_skipped_and_logged(text: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gatekeeper.gerrit.events")
    assert parse_event(text) is None
    if text:
        assert text[:20] in caplog.text


def test_unknown_event_types_are_ignored_with_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gatekeeper.gerrit.events")
    assert parse_event('{"type":"frob-happened"}') is None
    assert [r.levelname for r in caplog.records] == ["DEBUG"] and "frob-happened" in caplog.text


APPROVED = dict(author=RITA, comment="Patch Set 1: Code-Review+2", patchSet=PATCHSET,
                approvals=[{"type": "Code-Review", "value": "2", "oldValue": "0"}], **COMMON, type="comment-added",
                eventCreatedOn=7)


@pytest.mark.parametrize(("change", "field"), [
    ({"change": {**CHANGE, "number": "abc"}}, "change.number is 'abc', expected an integer"),
    ({"change": {**CHANGE, "number": True}}, "change.number is true, expected an integer"),
    ({"change": {**CHANGE, "number": -4}}, "change.number is -4, expected at least 1"),
    ({"change": {k: v for k, v in CHANGE.items() if k != "number"}}, "change.number is missing"),
    ({"change": "oops"}, "change is 'oops', expected an object"),
    ({"change": None}, "change is missing"),
    ({"change": {**CHANGE, "branch": ["master"]}}, 'change.branch is ["master"], expected a string'),
    ({"change": {**CHANGE, "project": 7}, "project": None}, "change.project is 7, expected a string"),
    ({"patchSet": {**PATCHSET, "number": 1.5}}, "patchSet.number is 1.5, expected an integer"),
    ({"patchSet": 7}, "patchSet is 7, expected an object"),
    ({"approvals": "x"}, "approvals is 'x', expected a list"),
    ({"approvals": [3]}, "approvals[0] is 3, expected an object"),
    ({"approvals": [{"type": "Verified", "value": "x"}]}, "approvals[0].value is 'x', expected an integer"),
    ({"approvals": [{"value": "1"}]}, "approvals[0].type is missing, expected a label"),
    ({"author": "rita"}, "author is 'rita', expected an object"),
    ({"comment": {"text": "hi"}}, 'comment is {"text": "hi"}, expected a string'),
    ({"eventCreatedOn": "yesterday"}, "eventCreatedOn is 'yesterday', expected an integer"),
])
def test_malformed_events_are_rejected_naming_the_field(change: dict, field: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gatekeeper.gerrit.events")
    data = {k: v for k, v in {**APPROVED, **change}.items() if v is not None}
    assert parse_event(json.dumps(data)) is None
    assert "Rejected a malformed Gerrit comment-added event: " + field in caplog.text


def test_events_without_what_their_type_needs_are_rejected(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gatekeeper.gerrit.events")
    assert parse_event(line(uploader=JANE, **COMMON, type="patchset-created")) is None
    assert "patchset-created event: patchSet is missing" in caplog.text
    assert parse_event(line(submitter=RITA, refUpdate={"refName": "refs/heads/x"}, type="ref-updated")) is None
    assert "ref-updated event: refUpdate.project is missing" in caplog.text
    assert parse_event(line(type="project-created")) is None
    assert "project-created event: projectName is missing" in caplog.text
    # An abandoned change needs no patch set; a comment's negative vote is a vote.
    assert parse_event(line(abandoner=RITA, **COMMON, type="change-abandoned")) is not None
    event = parse_event(line(**{**APPROVED, "approvals": [{"type": "Verified", "value": "-2", "oldValue": "1"}]}))
    assert event.approval("Verified").value == -2


def test_to_dict_from_dict_round_trip_keeps_type_and_fields() -> None:
    event = parse_event(line(author=RITA, comment="Patch Set 1:\n\nrecheck", patchSet=PATCHSET,
                             approvals=[{"type": "Verified", "value": "-1", "oldValue": "1"}], **COMMON,
                             type="comment-added", eventCreatedOn=5))
    event.received_at = 12.5
    data = json.loads(json.dumps(event.to_dict()))
    back = GerritEvent.from_dict(data)
    assert isinstance(back, CommentAddedEvent) and back == event
    assert back.approvals[0].old_value == 1
    assert GerritEvent.from_dict({**data, "future_field": 1, "_v": 2}) == event


def test_dedup_key_tells_distinct_actions_apart() -> None:
    base = dict(author=RITA, patchSet=PATCHSET, **COMMON, type="comment-added", eventCreatedOn=5)
    a = parse_event(line(comment="Patch Set 1:\n\nrecheck", **base))
    b = parse_event(line(comment="Patch Set 1:\n\nrecheck", **base))
    c = parse_event(line(comment="Patch Set 1:\n\nrecheck please", **base))
    assert a.dedup_key() == b.dedup_key() != c.dedup_key()
