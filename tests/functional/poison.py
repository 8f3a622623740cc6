"""Poison events for the Gerrit stream: every kind of bad input a stream can carry, as raw bytes (tests, bench)."""

from __future__ import annotations

import json

APPROVALS = [{"type": "Code-Review", "value": "2"}, {"type": "Approved", "value": "1", "oldValue": "0"}]


def approval(project: str, number: object, **extra: object) -> dict:
    """A comment-added that would put `number` into the gate, shaped as Gerrit sends it."""
    return {"type": "comment-added", "change": {"project": project, "branch": "master", "number": number,
                                                 "status": "NEW"},
            "patchSet": {"number": 1, "ref": f"refs/changes/00/{number}/1"}, "author": {"username": "rita"},
            "approvals": APPROVALS, "comment": "Patch Set 1: Code-Review+2 Approved+1", "eventCreatedOn": 1,
            **extra}


def poison_lines() -> dict[str, bytes]:
    """Kind -> raw bytes on the stream (each ends its line)."""
    nested = "[" * 50_000 + "]" * 50_000
    no_patchset = approval("org/a", 1)
    del no_patchset["patchSet"]
    return {
        "bad JSON": b"{this is not json\n",
        "not an object": b"[1, 2, 3]\n",
        "no type": json.dumps({"change": {"number": 1}}).encode() + b"\n",
        "unknown type": json.dumps({"type": "frob-happened", "change": {"number": 1}}).encode() + b"\n",
        "wrong type: change.number": json.dumps(approval("org/a", "abc")).encode() + b"\n",
        "wrong type: approvals": json.dumps({**approval("org/a", 1), "approvals": "all of them"}).encode() + b"\n",
        "missing field: patchSet": json.dumps(no_patchset).encode() + b"\n",
        "huge line": b'{"type":"comment-added","comment":"' + b"x" * (5 * 1024 * 1024) + b'"}\n',
        "invalid UTF-8": b'{"type":"comment-added","comment":"\xff\xfe"}\n',
        "nesting bomb": nested.encode() + b"\n",
        "unknown project": json.dumps(approval("org/nope", 9001)).encode() + b"\n",
        "change that does not exist": json.dumps(approval("org/a", 4242)).encode() + b"\n",
        # well formed, but more than ZooKeeper takes in one request
        "oversized event": json.dumps(approval("org/a", 4243, comment="Patch Set 1:\n\n" + "x" * (1536 * 1024)))
        .encode() + b"\n",
    }
