"""`gerrit query`: the search-operator subset gatekeeper and tests use, and Gerrit's JSON change rows.

Operators: change:N|I..., bare N or I..., project:, branch:, status:/is: open|new|merged|abandoned|closed|wip,
owner:/reviewer: (a name, email or `self`), topic:, hashtag:, commit:, message:, label:Name=V (also Name+V /
Name-V), after:/since:/before:/until: ("YYYY-MM-DD[ HH:MM:SS]" in UTC), -age:/age: (s, m, h, d), limit:N; `-` or
NOT negates a term, OR joins alternatives (no parentheses). Terms are ANDed.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gatekeeper.sim.gerrit.model import Change

if TYPE_CHECKING:
    from gatekeeper.sim.gerrit.simulator import GerritSimulator


class QueryError(ValueError):
    """The query cannot be parsed; Gerrit answers {"type":"error","message":...} with exit 0."""


def _tokens(text: str) -> list[str]:
    out, word, quote = [], [], None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                word.append(ch)
        elif ch in "\"{":
            quote = '"' if ch == '"' else "}"
        elif ch.isspace():
            if word:
                out.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        out.append("".join(word))
    return out


def _parse_time(value: str) -> int:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(value.strip(), fmt))
        except ValueError:
            continue
    raise QueryError(f"Invalid timestamp: {value}")


def _parse_age(value: str) -> int:
    m = re.fullmatch(r"(\d+)\s*(s|sec|second|seconds|m|min|minute|minutes|h|hour|hours|d|day|days|w|week|weeks)?",
                     value)
    if not m:
        raise QueryError(f"Invalid age: {value}")
    unit = (m.group(2) or "s")[0]
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def _label_matcher(value: str) -> Callable[[Change], bool]:
    m = re.fullmatch(r"([A-Za-z0-9-]+?)(=|\+|-)([+-]?\d+)(?:,user=(\S+))?", value)
    if not m:
        raise QueryError(f"Invalid label: {value}")
    label, op, num, user = m.groups()
    want = int(num) if op == "=" else int(op + num.lstrip("+-"))

    def match(c: Change) -> bool:
        for username, labels in c.current.approvals.items():
            if user and username != user:
                continue
            a = labels.get(label)
            if a is not None and a.value == want:
                return True
        return False

    return match


def _term(sim: GerritSimulator, term: str, now: int, username: str | None = None) -> Callable[[Change], bool]:
    if re.fullmatch(r"\d+", term):
        return lambda c: c.number == int(term)
    if re.fullmatch(r"I[0-9a-f]{6,40}", term):
        return lambda c: c.change_id.startswith(term)
    if ":" not in term:
        return lambda c: term.lower() in c.current.commit_message.lower()
    op, value = term.split(":", 1)
    op = op.lower()
    if op == "change":
        return _term(sim, value, now, username)
    if op == "project":
        return lambda c: c.project.name == value
    if op == "projects":
        return lambda c: c.project.name.startswith(value)
    if op == "branch":
        return lambda c: c.branch == value.removeprefix("refs/heads/")
    if op in ("status", "is"):
        v = value.lower()
        checks: dict[str, Callable[[Change], bool]] = {
            "open": lambda c: c.status == "NEW", "new": lambda c: c.status == "NEW",
            "pending": lambda c: c.status == "NEW", "merged": lambda c: c.status == "MERGED",
            "abandoned": lambda c: c.status == "ABANDONED", "closed": lambda c: c.status != "NEW",
            "wip": lambda c: c.wip, "private": lambda c: c.private,
        }
        if v not in checks:
            raise QueryError(f"Unrecognized value: {value}")
        return checks[v]
    if op in ("owner", "reviewer"):
        if value == "self":
            if username is None:
                raise QueryError(f"{op}:self needs a signed-in user")
            value = username
        if op == "owner":
            return lambda c: value in (c.owner.username, c.owner.email, c.owner.name)
        return lambda c: any(value in (a.username, a.email, a.name)
                             for a in (sim.accounts.get(u) for u in c.reviewers) if a)
    if op == "topic":
        return lambda c: c.topic == value
    if op == "hashtag":
        return lambda c: value.lower() in (h.lower() for h in c.hashtags)
    if op == "commit":
        return lambda c: any(ps.revision.startswith(value) for ps in c.patch_sets)
    if op == "message":
        return lambda c: value.lower() in c.current.commit_message.lower()
    if op == "label":
        return _label_matcher(value)
    if op in ("after", "since"):
        t = _parse_time(value)
        return lambda c: c.last_updated >= t
    if op in ("before", "until"):
        t = _parse_time(value)
        return lambda c: c.last_updated <= t
    if op == "-age":
        t = now - _parse_age(value)
        return lambda c: c.last_updated >= t
    if op == "age":
        t = now - _parse_age(value)
        return lambda c: c.last_updated <= t
    raise QueryError(f"Unsupported operator {op}:{value}")


def parse_query(sim: GerritSimulator, text: str, username: str | None = None
                ) -> tuple[Callable[[Change], bool], int | None]:
    """A predicate over changes and the `limit:` (if any); `username` is who `self` means."""
    now = int(time.time())
    limit = None
    groups: list[list[Callable[[Change], bool]]] = [[]]
    negate = False
    for tok in _tokens(text):
        if tok == "OR":
            groups.append([])
            continue
        if tok in ("AND",):
            continue
        if tok == "NOT":
            negate = True
            continue
        if tok.startswith("limit:"):
            try:
                limit = int(tok[len("limit:"):])
            except ValueError:
                raise QueryError(f"Invalid limit: {tok}") from None
            continue
        neg = negate
        negate = False
        if tok.startswith("-") and not tok.startswith("-age:"):
            neg, tok = True, tok[1:]
        pred = _term(sim, tok, now, username)
        groups[-1].append((lambda p: (lambda c: not p(c)))(pred) if neg else pred)
    if not any(groups):
        raise QueryError("missing query field")

    def match(c: Change) -> bool:
        return any(all(p(c) for p in group) for group in groups if group)

    return match, limit


def change_row(
    sim: GerritSimulator,
    c: Change,
    *,
    current_patch_set: bool = False,
    patch_sets: bool = False,
    all_approvals: bool = False,
    files: bool = False,
    commit_message: bool = False,
    dependencies: bool = False,
    comments: bool = False,
    submit_records: bool = False,
    all_reviewers: bool = False,
) -> dict:
    """One change as `gerrit query --format JSON` prints it (ChangeAttribute, field order kept)."""
    row: dict = {"project": c.project.name, "branch": c.branch}
    if c.topic:
        row["topic"] = c.topic
    row.update(id=c.change_id, number=c.number, subject=c.subject, owner=c.owner.attr(), url=c.url)
    if commit_message:
        row["commitMessage"] = c.current.commit_message
    row.update(hashtags=list(c.hashtags), createdOn=c.created_on, lastUpdated=c.last_updated,
               open=c.is_open, status=c.status)
    if c.wip:
        row["wip"] = True
    if c.private:
        row["private"] = True
    if comments:
        row["comments"] = [m.attr() for m in c.messages]
    if current_patch_set:
        row["currentPatchSet"] = c.current.attr(with_approvals=True, with_files=files)
    if patch_sets or all_approvals:
        row["patchSets"] = [ps.attr(with_approvals=all_approvals, with_files=files, with_comments=comments)
                            for ps in c.patch_sets]
    if dependencies:
        depends_on, needed_by = [], []
        for parent in c.current.parents:
            owner = sim._by_revision.get(parent)
            if owner and owner[0].project is c.project:
                oc, ops = owner
                depends_on.append({"id": oc.change_id, "number": oc.number, "revision": ops.revision,
                                   "ref": ops.ref, "isCurrentPatchSet": ops is oc.current})
        revisions = {ps.revision for ps in c.patch_sets}
        for other in sim.changes.values():
            if other is not c and other.project is c.project and set(other.current.parents) & revisions:
                needed_by.append({"id": other.change_id, "number": other.number,
                                  "revision": other.current.revision, "ref": other.current.ref,
                                  "isCurrentPatchSet": True})
        if depends_on:
            row["dependsOn"] = depends_on
        if needed_by:
            row["neededBy"] = needed_by
    if submit_records:
        # SubmitRecordAttribute: a label's `by` is the account whose vote decided it (none for NEED)
        labels = [{"label": label, "status": status, **({"by": by.attr()} if by else {})}
                  for label, status, by in sim.submit_labels(c)]
        ready = all(label["status"] == "OK" for label in labels)
        status = "CLOSED" if not c.is_open else ("OK" if ready else "NOT_READY")
        row["submitRecords"] = [{"status": status, "labels": labels}]
    if all_reviewers:
        row["allReviewers"] = [sim.accounts[u].attr() for u in c.reviewers if u in sim.accounts]
    return row
