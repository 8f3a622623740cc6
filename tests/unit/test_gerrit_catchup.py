"""Rebuilding missed events from `gerrit query` rows, shaped so their keys match the live events."""

from __future__ import annotations

import json

from gatekeeper.gerrit.catchup import events_from_change
from gatekeeper.gerrit.events import parse_event

JANE = {"name": "Jane Dev", "email": "jane@example.com", "username": "jane"}
RITA = {"name": "Rita Core", "email": "rita@example.com", "username": "rita"}


def ps(n: int, created: int) -> dict:
    return {"number": n, "revision": f"{n}" * 40, "parents": ["0" * 40], "ref": f"refs/changes/07/7/{n}",
            "uploader": JANE, "createdOn": created, "author": JANE, "kind": "REWORK", "sizeInsertions": 1,
            "sizeDeletions": 0}


ROW = {
    "project": "org/p", "branch": "master", "id": "I" + "a" * 40, "number": 7, "subject": "S", "owner": JANE,
    "url": "https://r/c/org/p/+/7", "hashtags": [], "createdOn": 100, "lastUpdated": 300, "open": False,
    "status": "MERGED",
    "comments": [
        {"timestamp": 100, "reviewer": JANE, "message": "Uploaded patch set 1."},
        {"timestamp": 150, "reviewer": RITA, "message": "Patch Set 1: Code-Review+1"},
        {"timestamp": 200, "reviewer": JANE, "message": "Uploaded patch set 2."},
        {"timestamp": 210, "reviewer": RITA, "message": "Patch Set 2: Approved+1 Code-Review+2\n\nship it"},
        {"timestamp": 220, "reviewer": RITA, "message": "Patch Set 2: -Approved"},
        {"timestamp": 230, "reviewer": JANE, "message": "Abandoned\n\nwrong"},
        {"timestamp": 240, "reviewer": JANE, "message": "Restored"},
        {"timestamp": 300, "reviewer": RITA, "message": "Change has been successfully merged by Rita Core"},
    ],
    "patchSets": [ps(1, 100), ps(2, 200)],
}


def test_events_since_a_time_are_rebuilt_in_order_with_vote_changes() -> None:
    events = events_from_change(ROW, since=200)
    assert [e.type for e in events] == ["patchset-created", "comment-added", "comment-added", "change-abandoned",
                                        "change-restored", "change-merged"]
    assert all(e.catch_up and e.change_number == 7 for e in events)
    approve = events[1]
    assert (approve.patchset, approve.author, approve.comment) == (
        2, "rita", "Patch Set 2: Approved+1 Code-Review+2\n\nship it")
    assert {a.type: (a.value, a.old_value) for a in approve.approvals} == {"Approved": (1, 0),
                                                                          "Code-Review": (2, 0)}
    removed = events[2]
    assert removed.approval("Approved").value == 0 and removed.approval("Approved").old_value == 1
    assert events[3].raw["reason"] == "wrong" and events[5].author == "rita"


def test_rebuilt_comment_has_the_same_key_as_the_live_event() -> None:
    rebuilt = events_from_change(ROW, since=150)[0]
    live = parse_event(json.dumps({
        "author": RITA, "approvals": [{"type": "Code-Review", "value": "1", "oldValue": "0"}],
        "comment": "Patch Set 1: Code-Review+1", "patchSet": ps(1, 100),
        "change": {"project": "org/p", "branch": "master", "id": "I" + "a" * 40, "number": 7},
        "project": "org/p", "refName": "refs/heads/master", "type": "comment-added", "eventCreatedOn": 150,
    }))
    assert rebuilt.type == "comment-added" and rebuilt.dedup_key() == live.dedup_key()
