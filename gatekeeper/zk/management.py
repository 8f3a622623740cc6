"""Operator requests to the schedulers (enqueue, dequeue, promote, reload), sent through ZooKeeper.

A request is a `ManagementRequest` record in the management event queue; a scheduler reads it once with
`ManagementRequest.parse` (a malformed one is refused with the field named), takes it (`take_request`), applies it
and writes a `ManagementAnswer` at `/events/management/results/<id>`: done, or refused with a sentence for people,
typed as `NotFound` (something the request names is not there) or `Refused` (any other refusal). A sender that gets
no answer in time withdraws the request unless a scheduler took it. Used by the operator CLI and the web's admin API
alike.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
import uuid
from enum import StrEnum
from typing import Any, Self

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.recipe.watchers import DataWatch

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import EventQueue
from gatekeeper.zk.record import Record

CHANGE_KEY = re.compile(r"\d+,\d+")  # matched whole (fullmatch: no trailing newline)
REVISION = re.compile(r"[0-9a-f]{40}")  # a full commit (or tag object) sha, matched whole
# a branch or tag, as git-check-ref-format allows it (no "..", "@{", "//", control characters, space or ~^:?*[\)
REF_NAME = re.compile(r"refs/(heads|tags)/(?!.*(\.\.|@\{|//|\.lock(/|$)|/\.))[^\x00-\x20\x7f~^:?*\[\\]+(?<![./])")
MAX_NAME = 255  # a pipeline or user name
PROJECT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+/-]*(?<![./])")  # a Gerrit project name such as org/a
MAX_CHANGES = 500  # changes in one promote
TAKEN = "taken"  # child of a queued request once a scheduler applies it: from then on it cannot be withdrawn


class Action(StrEnum):
    """What an operator asks a scheduler to do."""

    ENQUEUE = "enqueue"
    DEQUEUE = "dequeue"
    PROMOTE = "promote"
    RELOAD = "reload"


class MalformedRequest(ValueError):
    """An operator request that does not read; the message names the field and what is wrong with it."""


class ManagementTimeout(RuntimeError):
    """No scheduler answered in time; the message says whether the request was withdrawn or may still run."""


class Refused(Exception):
    """A scheduler refused an operator request (a change already there, a promote in the wrong pipeline, ...);
    the message says why."""


class NotFound(Refused):
    """A scheduler refused an operator request because something it names is not there: a pipeline, a change in
    a pipeline or in Gerrit."""


@dataclasses.dataclass
class ManagementRequest(Record):
    """One operator request: `action` on `change` (enqueue, dequeue) or `changes` (promote) in `pipeline`;
    a reload names no pipeline. `id` and `created` are set by `send_management`."""

    VERSION = 1
    action: Action
    pipeline: str = ""
    change: str = ""  # NUMBER,PATCHSET
    # enqueue or dequeue of a ref item instead of a change (Zuul's enqueue-ref, dequeue --ref): a branch or tag of
    # `project`; enqueue takes its revisions (newrev: default, a branch's tip), dequeue its revision (default: all)
    project: str = ""
    ref: str = ""
    oldrev: str = ""
    newrev: str = ""
    changes: list[str] = dataclasses.field(default_factory=list)  # promote: in their new order
    user: str = ""  # who asked, for the log (the web's admin API sets it)
    id: str = ""
    created: float = 0.0

    @classmethod
    def parse(cls, data: Any) -> Self:
        """The request in `data` (as decoded from its znode), checked; MalformedRequest names the bad field.
        Keys this version does not know are kept (a newer sender's), as with every record."""
        if not isinstance(data, dict):
            raise MalformedRequest(f"the request is not an object (got {type(data).__name__})")
        action = data.get("action")
        if not isinstance(action, str) or action not in Action.__members__.values():
            expected = ", ".join(a.value for a in Action)
            raise MalformedRequest(f'field "action": {_shown(action)} is not an operator action '
                                   f"(expected one of {expected})")
        for name in ("pipeline", "change", "user", "id", "project", "ref", "oldrev", "newrev"):
            if not isinstance(data.get(name, ""), str):
                raise MalformedRequest(f'field "{name}": {_shown(data[name])} is not a string')
        created = data.get("created", 0.0)
        if isinstance(created, bool) or not isinstance(created, int | float) or not math.isfinite(created):
            raise MalformedRequest(f'field "created": {_shown(created)} is not a time in seconds')
        changes = data.get("changes", [])
        if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
            raise MalformedRequest(f'field "changes": {_shown(changes)} is not a list of changes')
        request = cls.from_dict(data)
        request.action = Action(action)
        request.check()
        return request

    def check(self) -> None:
        """Raise MalformedRequest naming the field when this request cannot be applied as it stands."""
        if len(self.user) > MAX_NAME:
            raise MalformedRequest(f'field "user": a name of {len(self.user)} characters is too long '
                                   f"(at most {MAX_NAME})")
        if self.action is Action.RELOAD:
            return
        if not self.pipeline:
            raise MalformedRequest(f'field "pipeline": {self.action.value} needs a pipeline')
        if len(self.pipeline) > MAX_NAME:
            raise MalformedRequest(f'field "pipeline": a name of {len(self.pipeline)} characters is not a '
                                   f"pipeline (at most {MAX_NAME})")
        if self.action is Action.PROMOTE:
            if not self.changes:
                raise MalformedRequest('field "changes": promote needs at least one change')
            if len(self.changes) > MAX_CHANGES:
                raise MalformedRequest(f'field "changes": {len(self.changes)} changes are more than one promote '
                                       f"takes (at most {MAX_CHANGES})")
            for key in self.changes:
                _check_change("changes", key)
            twice = sorted({key for key in self.changes if self.changes.count(key) > 1})
            if twice:
                raise MalformedRequest(f'field "changes": {", ".join(twice)} named more than once')
        elif self.ref or self.project:
            self._check_ref()
        else:
            _check_change("change", self.change)

    def _check_ref(self) -> None:
        if self.change:
            raise MalformedRequest(f'field "change": {self.action.value} takes a change or a ref, not both')
        if not self.project or not self.ref:
            missing = "project" if not self.project else "ref"
            raise MalformedRequest(f'field "{missing}": {self.action.value} of a ref needs a project and a ref')
        if len(self.project) > MAX_NAME or not PROJECT.fullmatch(self.project):
            raise MalformedRequest(f'field "project": {_shown(self.project)} is not a project name')
        if not REF_NAME.fullmatch(self.ref):
            raise MalformedRequest(f'field "ref": {_shown(self.ref)} is not a branch or tag (expected a full ref '
                                   "such as refs/heads/master or refs/tags/1.0)")
        for name in ("oldrev", "newrev"):
            value = getattr(self, name)
            if value and not REVISION.fullmatch(value):
                raise MalformedRequest(f'field "{name}": {_shown(value)} is not a revision (expected 40 hex digits)')
        if self.action is Action.DEQUEUE and self.oldrev:
            raise MalformedRequest('field "oldrev": dequeue names a ref item by its ref and new revision only')

    @property
    def ref_key(self) -> str:
        """What a ref request is about, for people: "org/a refs/heads/master" (and "@<newrev>" when given)."""
        return f"{self.project} {self.ref}" + (f"@{self.newrev[:12]}" if self.newrev else "")

    def subject(self) -> str:
        """What the request is about, for log lines: "5,1", "5,1 6,1" or "" (a reload)."""
        if self.action in (Action.ENQUEUE, Action.DEQUEUE):
            return self.ref_key if self.ref else self.change
        return " ".join(self.changes)


@dataclasses.dataclass
class ManagementAnswer(Record):
    """A scheduler's answer to one request: "" when it was done, else the error for people."""

    VERSION = 1
    error: str = ""
    not_found: bool = False  # the refusal is that something named is not there (an older scheduler never says)

    @classmethod
    def of(cls, outcome: Refused | str | None) -> ManagementAnswer:
        """The answer to a request that was done ("" or None) or refused (an error, typed or not)."""
        return cls(error=str(outcome or ""), not_found=isinstance(outcome, NotFound))

    def refusal(self) -> Refused | None:
        """The refusal as its typed error; None when the request was done."""
        if not self.error:
            return None
        return NotFound(self.error) if self.not_found else Refused(self.error)


def _check_change(field: str, key: str) -> None:
    if not CHANGE_KEY.fullmatch(key):
        raise MalformedRequest(f'field "{field}": {_shown(key)} is not a change (expected NUMBER,PATCHSET '
                               "such as 5,1)")


def _shown(value: Any) -> str:
    """A value as an error quotes it: short, and never the whole of a huge one."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def send_management(zk: ZKClient, request: ManagementRequest, timeout: float = 30.0) -> str:
    """Write an operator request and wait for a scheduler's answer: "" when done, else the error for people."""
    return exchange_management(zk, request, timeout).error


def apply_management(zk: ZKClient, request: ManagementRequest, timeout: float = 30.0) -> None:
    """Have a scheduler apply an operator request; raises NotFound or Refused when it refuses it (besides
    MalformedRequest and ManagementTimeout, as `send_management`)."""
    refusal = exchange_management(zk, request, timeout).refusal()
    if refusal is not None:
        raise refusal


def exchange_management(zk: ZKClient, request: ManagementRequest, timeout: float = 30.0) -> ManagementAnswer:
    """Write an operator request and wait for a scheduler's answer.

    When no answer comes in time the request is withdrawn from the queue if no scheduler has taken it yet, so that
    an operator told "it failed" is never surprised by it running later.
    """
    request.check()
    request = dataclasses.replace(request, id=uuid.uuid4().hex, created=time.time())
    ident = EventQueue(zk, paths.management_queue()).put(request.to_dict())
    answered = threading.Event()
    answer: list[ManagementAnswer] = []
    path = paths.management_result(ident)

    def on_data(data: bytes | None, stat: Any) -> bool | None:
        if data is not None:
            answer.append(ManagementAnswer.from_bytes(data))
            answered.set()
            return False
        return None

    zk.client.ensure_path(paths.MANAGEMENT_RESULTS)
    DataWatch(zk.client, path, on_data)
    if not answered.wait(timeout) and not answered.is_set():
        if _withdraw(zk, ident):
            raise ManagementTimeout(f"no scheduler answered {request.action.value} within {timeout:.0f}s (is a "
                                    "scheduler running?); the request was withdrawn and will not run")
        else:
            raise ManagementTimeout(f"a scheduler took {request.action.value} but did not answer within "
                                    f"{timeout:.0f}s; it may still take effect (see gatekeeper status)")
    try:
        zk.client.delete(path)
    except NoNodeError:
        pass
    return answer[0]


def take_request(zk: ZKClient, ident: str) -> bool:
    """Mark queued request `ident` as taken by a scheduler, before applying it; False when its sender withdrew
    it (it must then not be applied). Taking it twice (a pass run again) is fine."""
    try:
        zk.client.create(_taken_path(ident))
    except NodeExistsError:
        pass
    except NoNodeError:
        return False
    return True


def request_paths(ident: str) -> list[str]:
    """The znodes of one queued request, in the order they are deleted once it is consumed."""
    return [_taken_path(ident), f"{paths.management_queue()}/{ident}"]


def _taken_path(ident: str) -> str:
    return f"{paths.management_queue()}/{ident}/{TAKEN}"


def _withdraw(zk: ZKClient, ident: str) -> bool:
    """Delete a queued request no scheduler has taken; False when one has (the taken mark is a child, so the
    delete fails: the two cannot both succeed) or it is gone (answered, or set aside)."""
    try:
        zk.client.delete(f"{paths.management_queue()}/{ident}")
        return True
    except (NoNodeError, NotEmptyError):
        return False
    except KazooException:  # ZooKeeper unreachable: whether a scheduler took it is unknown
        return False
