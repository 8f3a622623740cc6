"""Typed Gerrit stream events, parsed from Gerrit's JSON (one line of `gerrit stream-events`).

`parse_event(line)` returns a GerritEvent subclass chosen by the `type` key, or None for input that is not an
event gatekeeper acts on: malformed JSON, a non-object, no `type`, an unknown type, or a `ref-updated` of a
`refs/changes/*` ref (NoteDb noise). Such lines are logged with their text and skipped, never raised.

This is the one place Gerrit's JSON is read. Every event is validated here, at the edge: a field of the wrong
type or a missing field the gate needs (`change.number`, `patchSet.number`, `project`, `branch`, approvals, ...)
rejects the whole event with a warning naming the field, so nothing downstream ever sees half an event.

Every event round-trips through `to_dict()` / `GerritEvent.from_dict()` (dispatching on `type`), which is how
events travel through the ZooKeeper event queue.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

log = logging.getLogger("gatekeeper.gerrit.events")

MAX_LOGGED_TEXT = 500  # characters of an offending line to put in a log message


@dataclass
class Approval:
    """One label in an event's approvals list; `value`/`old_value` are ints (Gerrit sends strings)."""

    type: str  # the label, e.g. "Code-Review"
    value: int
    old_value: int | None = None  # set only for labels this review changed
    description: str | None = None
    by: str | None = None  # username, when Gerrit names the voter (query rows)

    @property
    def label(self) -> str:
        return self.type

    @property
    def changed(self) -> bool:
        return self.old_value is not None and self.old_value != self.value

    @classmethod
    def from_gerrit(cls, data: dict) -> Approval:
        """Build from one (already validated) entry of Gerrit's approvals list."""
        old = data.get("oldValue")
        by = data.get("by")
        return cls(
            type=str(data.get("type") or data.get("description") or ""),
            value=_int(data.get("value"), 0),
            old_value=_int(old, None) if old is not None else None,
            description=data.get("description"),
            by=by.get("username") if isinstance(by, dict) else None,
        )


class MalformedEvent(ValueError):
    """A Gerrit event with a field of the wrong type, or without a field the gate needs; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}")


_TYPES: dict[str, type[GerritEvent]] = {}


@dataclass
class GerritEvent:
    """Base of all events: the fields gatekeeper's scheduler uses, flattened from Gerrit's nested JSON.

    `author` is the username of whoever caused the event (uploader, reviewer, submitter, abandoner, ...),
    `author_email` that account's email; `raw` keeps the original JSON object. `received_at` is the local time the
    connection got the line, and `catch_up` is True for events the connection reconstructed by querying Gerrit
    after an outage.
    """

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    ACTOR_KEY: ClassVar[str] = ""
    ABOUT_CHANGE: ClassVar[bool] = False  # the event concerns a change: change.number, project, branch required
    NEEDS_PATCHSET: ClassVar[bool] = False  # ... and a patch set: patchSet.number required

    type: str = ""
    project: str | None = None
    branch: str | None = None
    change_number: int | None = None
    patchset: int | None = None
    change_id: str | None = None
    ref: str | None = None  # the patch set's ref, refs/changes/NN/N/P
    revision: str | None = None  # the patch set's commit
    subject: str | None = None
    url: str | None = None
    status: str | None = None  # change status: NEW, MERGED, ABANDONED
    topic: str | None = None
    wip: bool = False
    owner: str | None = None  # change owner's username
    author: str | None = None
    author_email: str | None = None
    approvals: list[Approval] = field(default_factory=list)
    comment: str | None = None
    new_rev: str | None = None
    old_rev: str | None = None
    ref_name: str | None = None  # refUpdate.refName, or the change event's refName (refs/heads/<branch>)
    event_created_on: int | None = None
    raw: dict = field(default_factory=dict)
    received_at: float | None = None
    catch_up: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            _TYPES[cls.TYPE] = cls

    # -- conversions ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["_v"] = self.VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GerritEvent:
        """Rebuild an event written by to_dict() (the subclass comes from `type`; unknown keys ignored)."""
        data = dict(data)
        data.pop("_v", None)
        target = _TYPES.get(data.get("type", ""), cls if cls.TYPE else GerritEvent)
        names = {f.name for f in dataclasses.fields(target)}
        values = {k: v for k, v in data.items() if k in names}
        values["approvals"] = [a if isinstance(a, Approval) else Approval(**a) for a in values.get("approvals", [])]
        return target(**values)

    @classmethod
    def from_gerrit(cls, data: dict) -> Self:
        """Build from Gerrit's JSON object; raises MalformedEvent naming the first field that is wrong.

        Optional fields Gerrit leaves out stay None ("any field may be missing"); the fields the gate acts on
        are required for the event types that carry them."""
        cls.validate(data)
        change = _dict(data.get("change"))
        patchset = _dict(data.get("patchSet"))
        ref_update = _dict(data.get("refUpdate"))
        ref_name = ref_update.get("refName") or data.get("refName")
        branch = change.get("branch")
        if branch is None and ref_update.get("refName"):
            name = ref_update["refName"]
            branch = name[len("refs/heads/"):] if name.startswith("refs/heads/") else None
            if branch is None and not name.startswith("refs/"):
                branch = name  # Gerrit 2.x sent short branch names
        actor = _dict(data.get(cls.ACTOR_KEY)) if cls.ACTOR_KEY else {}
        return cls(
            type=str(data.get("type")),
            project=data.get("project") if isinstance(data.get("project"), str)
            else change.get("project") or ref_update.get("project") or data.get("projectName"),
            branch=branch,
            change_number=_int(change.get("number"), None),
            patchset=_int(patchset.get("number"), None),
            change_id=change.get("id") or _dict(data.get("changeKey")).get("id"),
            ref=patchset.get("ref"),
            revision=patchset.get("revision"),
            subject=change.get("subject"),
            url=change.get("url"),
            status=change.get("status"),
            topic=change.get("topic"),
            wip=bool(change.get("wip", False)),
            owner=_dict(change.get("owner")).get("username"),
            author=actor.get("username"),
            author_email=actor["email"] if isinstance(actor.get("email"), str) else None,
            approvals=[Approval.from_gerrit(a) for a in data.get("approvals") or [] if isinstance(a, dict)],
            comment=data.get("comment"),
            new_rev=data.get("newRev") or ref_update.get("newRev"),
            old_rev=ref_update.get("oldRev"),
            ref_name=ref_name,
            event_created_on=_int(data.get("eventCreatedOn"), None),
            raw=data,
        )

    @classmethod
    def validate(cls, data: dict) -> None:
        """Raise MalformedEvent unless `data` has what this event type needs, each field of the right type."""
        change = _object(data, "change", required=cls.ABOUT_CHANGE)
        patchset = _object(data, "patchSet", required=cls.NEEDS_PATCHSET)
        if change is not None:
            _number(change, "change.number", required=cls.ABOUT_CHANGE)
            _text(change, "change.branch", required=cls.ABOUT_CHANGE)
            for name in ("project", "id", "subject", "url", "status", "topic"):
                _text(change, f"change.{name}")
            _object(change, "change.owner")
        if cls.ABOUT_CHANGE and not isinstance((change or {}).get("project"), str) \
                and not isinstance(data.get("project"), str):
            raise MalformedEvent("change.project", "is missing (no project names the change)")
        if patchset is not None:
            _number(patchset, "patchSet.number", required=cls.NEEDS_PATCHSET)
            for name in ("ref", "revision"):
                _text(patchset, f"patchSet.{name}")
        if "project" in data and not isinstance(data["project"], str | dict):
            raise MalformedEvent("project", f"is {_show(data['project'])}, expected a project name")
        ref_update = _object(data, "refUpdate", required=cls.TYPE == "ref-updated")
        if ref_update is not None:
            _text(ref_update, "refUpdate.refName", required=True)
            _text(ref_update, "refUpdate.project", required=True)
            for name in ("oldRev", "newRev"):
                _text(ref_update, f"refUpdate.{name}")
        if cls.TYPE == "project-created":
            _text(data, "projectName", required=True)
        for name in ("refName", "comment", "newRev", "projectName"):
            _text(data, name)
        _number(data, "eventCreatedOn", minimum=0)
        if cls.ACTOR_KEY:
            actor = _object(data, cls.ACTOR_KEY)
            if actor is not None:
                _text(actor, f"{cls.ACTOR_KEY}.username")
        approvals = data.get("approvals")
        if approvals is not None:
            if not isinstance(approvals, list):
                raise MalformedEvent("approvals", f"is {_show(approvals)}, expected a list")
            for i, approval in enumerate(approvals):
                where = f"approvals[{i}]"
                if not isinstance(approval, dict):
                    raise MalformedEvent(where, f"is {_show(approval)}, expected an object")
                if not isinstance(approval.get("type") or approval.get("description"), str):
                    raise MalformedEvent(f"{where}.type", f"is {_show(approval.get('type'))}, expected a label")
                _number(approval, f"{where}.value", required=True, minimum=None)
                _number(approval, f"{where}.oldValue", minimum=None)

    # -- convenience ------------------------------------------------------------------------------------------
    @property
    def change_key(self) -> str | None:
        """`number,patchset` as Zuul prints it, when the event concerns a patch set."""
        if self.change_number is None:
            return None
        return f"{self.change_number},{self.patchset}" if self.patchset else str(self.change_number)

    def approval(self, label: str) -> Approval | None:
        for a in self.approvals:
            if a.type == label:
                return a
        return None

    def dedup_key(self) -> str:
        """Identity of the Gerrit action behind this event: a live event and the one catch-up rebuilds from a
        query have the same key (catch-up relies on it to enqueue each action exactly once)."""
        if self.type == "patchset-created":
            parts = [self.change_number, self.patchset]
        elif self.type == "change-merged":
            parts = [self.change_number]
        elif self.type in ("change-abandoned", "change-restored"):
            parts = [self.change_number, self.event_created_on]
        elif self.type == "comment-added":
            parts = [self.change_number, self.patchset, self.author, self.event_created_on,
                     _short_hash(self.comment or "")]
        else:
            parts = [self.change_number, self.patchset, self.author, self.event_created_on, self.ref_name,
                     self.new_rev, self.raw.get("projectName")]
        return "|".join([self.type, *(str(p) for p in parts)])


class PatchsetCreatedEvent(GerritEvent):
    TYPE = "patchset-created"
    ACTOR_KEY = "uploader"
    ABOUT_CHANGE = True
    NEEDS_PATCHSET = True


class CommentAddedEvent(GerritEvent):
    TYPE = "comment-added"
    ACTOR_KEY = "author"
    ABOUT_CHANGE = True
    NEEDS_PATCHSET = True


class ChangeMergedEvent(GerritEvent):
    TYPE = "change-merged"
    ACTOR_KEY = "submitter"
    ABOUT_CHANGE = True


class ChangeAbandonedEvent(GerritEvent):
    TYPE = "change-abandoned"
    ACTOR_KEY = "abandoner"
    ABOUT_CHANGE = True


class ChangeRestoredEvent(GerritEvent):
    TYPE = "change-restored"
    ACTOR_KEY = "restorer"
    ABOUT_CHANGE = True


class ChangeDeletedEvent(GerritEvent):
    TYPE = "change-deleted"
    ACTOR_KEY = "deleter"
    ABOUT_CHANGE = True


class RefUpdatedEvent(GerritEvent):
    TYPE = "ref-updated"
    ACTOR_KEY = "submitter"


class ReviewerAddedEvent(GerritEvent):
    TYPE = "reviewer-added"
    ACTOR_KEY = "adder"
    ABOUT_CHANGE = True


class ReviewerDeletedEvent(GerritEvent):
    TYPE = "reviewer-deleted"
    ACTOR_KEY = "remover"
    ABOUT_CHANGE = True


class VoteDeletedEvent(GerritEvent):
    TYPE = "vote-deleted"
    ACTOR_KEY = "remover"
    ABOUT_CHANGE = True


class WipStateChangedEvent(GerritEvent):
    TYPE = "wip-state-changed"
    ACTOR_KEY = "changer"
    ABOUT_CHANGE = True


class PrivateStateChangedEvent(GerritEvent):
    TYPE = "private-state-changed"
    ACTOR_KEY = "changer"
    ABOUT_CHANGE = True


class TopicChangedEvent(GerritEvent):
    TYPE = "topic-changed"
    ACTOR_KEY = "changer"
    ABOUT_CHANGE = True


class HashtagsChangedEvent(GerritEvent):
    TYPE = "hashtags-changed"
    ACTOR_KEY = "editor"
    ABOUT_CHANGE = True


class ProjectCreatedEvent(GerritEvent):
    TYPE = "project-created"


class ProjectHeadUpdatedEvent(GerritEvent):
    TYPE = "project-head-updated"


class DroppedOutputEvent(GerritEvent):
    """Gerrit dropped events for this listener (its buffer overflowed): a catch-up is due."""

    TYPE = "dropped-output"


# Events the gate never needs and Gerrit sends in masses.
def is_noise(event: GerritEvent) -> bool:
    return event.type == "ref-updated" and bool(event.ref_name) and event.ref_name.startswith("refs/changes/")


def parse_event(line: str | bytes) -> GerritEvent | None:
    """One stream-events line -> a typed event, or None (logged) for anything gatekeeper should skip."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser's stack
        log.warning("Gerrit sent a line that is not JSON (%s): %r", e, text[:MAX_LOGGED_TEXT])
        return None
    if not isinstance(data, dict):
        log.warning("Gerrit sent JSON that is not an event object: %r", text[:MAX_LOGGED_TEXT])
        return None
    return event_from_gerrit(data, text)


def event_from_gerrit(data: dict, text: str | None = None) -> GerritEvent | None:
    """A decoded Gerrit event object -> a typed event, or None (logged) as parse_event does."""
    if text is None:
        text = json.dumps(data)[:MAX_LOGGED_TEXT]
    etype = data.get("type")
    if not isinstance(etype, str):
        log.warning("Rejected a malformed Gerrit event: type is %s, expected a string: %r", _show(etype),
                    text[:MAX_LOGGED_TEXT])
        return None
    cls = _TYPES.get(etype)
    if cls is None:
        log.debug("Ignoring Gerrit event of unknown type %r: %r", etype, text[:MAX_LOGGED_TEXT])
        return None
    try:
        event = cls.from_gerrit(data)
    except MalformedEvent as e:
        log.warning("Rejected a malformed Gerrit %s event: %s: %r", etype, e, text[:MAX_LOGGED_TEXT])
        return None
    except Exception as e:  # a shape validate() did not foresee must not stop the listener either
        log.warning("Rejected a malformed Gerrit %s event (%s): %r", etype, e, text[:MAX_LOGGED_TEXT])
        return None
    if is_noise(event):
        return None
    return event


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return "missing" if value is None else (text if len(text) <= 40 else text[:37] + "...")


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _object(data: dict, name: str, required: bool = False) -> dict | None:
    value = data.get(_leaf(name))
    if value is None:
        if required:
            raise MalformedEvent(name, "is missing")
        return None
    if not isinstance(value, dict):
        raise MalformedEvent(name, f"is {_show(value)}, expected an object")
    return value


def _text(data: dict, name: str, required: bool = False) -> None:
    value = data.get(_leaf(name))
    if value is None:
        if required:
            raise MalformedEvent(name, "is missing")
    elif not isinstance(value, str):
        raise MalformedEvent(name, f"is {_show(value)}, expected a string")


def _number(data: dict, name: str, required: bool = False, minimum: int | None = 1) -> None:
    """An integer, or a string of one (Gerrit 2.x sent numbers, and always sends votes, as strings)."""
    value = data.get(_leaf(name))
    if value is None:
        if required:
            raise MalformedEvent(name, "is missing")
        return
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
        number = int(value)
    if number is None:
        raise MalformedEvent(name, f"is {_show(value)}, expected an integer")
    if minimum is not None and number < minimum:
        raise MalformedEvent(name, f"is {number}, expected at least {minimum}")


def _int(value: Any, default: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]
