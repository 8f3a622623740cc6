"""Rebuild the events missed during an outage from `gerrit query` rows.

Gerrit has no event replay. What it keeps is each change's patch sets (createdOn) and change messages
(timestamp, author, text: "Patch Set N: Label+V ...", "Abandoned", "Restored", "Change has been successfully
merged ..."). From those we rebuild patchset-created, comment-added (with the changed votes and their old
values), change-abandoned, change-restored and change-merged events, shaped like the live ones so that their
dedup keys match when the same action was also seen live.
"""

from __future__ import annotations

import re

from gatekeeper.gerrit.events import GerritEvent, event_from_gerrit

QUERY_FLAGS = ("--all-approvals", "--comments", "--commit-message")
PATCH_SET_RE = re.compile(r"^Patch Set (\d+):")
VOTE_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*?)([+-]\d+)$")


def _votes(first_line: str) -> dict[str, int]:
    """Label changes in "Patch Set 2: Code-Review+2 Verified-1 -Approved" (a removed vote is 0)."""
    votes = {}
    for word in first_line.split(":", 1)[1].split():
        m = VOTE_RE.match(word)
        if m:
            votes[m.group(1)] = int(m.group(2))
        elif word.startswith("-") and len(word) > 1 and VOTE_RE.match(word[1:] + "+0") is not None:
            votes[word[1:]] = 0
    return votes


def events_from_change(row: dict, since: int) -> list[GerritEvent]:
    """Events of one query row (from QUERY_FLAGS) that happened at or after `since` (epoch seconds)."""
    change = {k: row[k] for k in ("project", "branch", "topic", "id", "number", "subject", "owner", "url",
                                  "commitMessage", "createdOn", "status", "wip") if k in row}
    patch_sets = {ps.get("number"): ps for ps in row.get("patchSets", [])}
    common = {"change": change, "project": row.get("project"), "refName": f"refs/heads/{row.get('branch')}",
              "changeKey": {"id": row.get("id")}}

    def ps_attr(number: int | None) -> dict | None:
        ps = patch_sets.get(number)
        return {k: v for k, v in ps.items() if k not in ("approvals", "files", "comments")} if ps else None

    def make(etype: str, when: int, patchset: int | None, **fields: object) -> GerritEvent | None:
        data: dict = dict(fields)
        attr = ps_attr(patchset)
        if attr is not None:
            data["patchSet"] = attr
        data.update(common, type=etype, eventCreatedOn=when)
        event = event_from_gerrit(data)
        if event is not None:
            event.catch_up = True
        return event

    out: list[tuple[int, int, GerritEvent]] = []
    for number, ps in patch_sets.items():
        when = int(ps.get("createdOn") or 0)
        if when >= since:
            e = make("patchset-created", when, number, uploader=ps.get("uploader"))
            if e:
                out.append((when, len(out), e))
    current: dict[tuple[int, str, str], int] = {}  # (patchset, username, label) -> value, replayed
    latest_ps = max(patch_sets) if patch_sets else None
    for msg in row.get("comments", []):
        when = int(msg.get("timestamp") or 0)
        text = msg.get("message") or ""
        who = msg.get("reviewer") or {}
        user = who.get("username", "")
        m = PATCH_SET_RE.match(text)
        e = None
        if m:
            number = int(m.group(1))
            changed = _votes(text.split("\n", 1)[0])
            approvals = []
            for label, value in changed.items():
                old = current.get((number, user, label), 0)
                current[(number, user, label)] = value
                approvals.append({"type": label, "description": label, "value": str(value), "oldValue": str(old)})
            for (n, u, label), value in current.items():
                if n == number and u == user and label not in changed:
                    approvals.append({"type": label, "description": label, "value": str(value)})
            if when >= since:
                e = make("comment-added", when, number, author=who, approvals=approvals, comment=text)
        elif when < since:
            continue
        elif text == "Abandoned" or text.startswith("Abandoned\n"):
            e = make("change-abandoned", when, latest_ps, abandoner=who, reason=text.partition("\n\n")[2])
        elif text == "Restored" or text.startswith("Restored\n"):
            e = make("change-restored", when, latest_ps, restorer=who, reason=text.partition("\n\n")[2])
        elif text.startswith("Change has been successfully merged"):
            e = make("change-merged", when, latest_ps, submitter=who)
        if e is not None:
            out.append((when, len(out), e))
    out.sort(key=lambda t: (t[0], t[1]))
    return [e for _, _, e in out]
