"""Admin actions behind the bearer token: each checks its input against a typed request model, writes what the
owning service accepts from operators (a management event for the scheduler, an autohold or a node change for
the launcher), and is logged with who did what.  The token itself is never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from gatekeeper.config.schema_parts import reason_problem
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.management import (
    Action,
    MalformedRequest,
    ManagementRequest,
    ManagementTimeout,
    NotFound,
    Refused,
    apply_management,
)
from gatekeeper.zk.node_changes import MAX_HOLD_HOURS

audit = logging.getLogger("gatekeeper.web.audit")

CHANGE_KEY = re.compile(r"^\d+,\d+$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # no slash, no leading dot: never a path


class AdminError(Exception):
    """A request an operator must fix; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_token(header: str | None, expected: str | None) -> None:
    """Raise AdminError 401 without a bearer token, 403 with a wrong one (or when no token is configured)."""
    if not header or not header.startswith("Bearer ") or not header[7:].strip():
        raise AdminError("admin requests need an 'Authorization: Bearer <token>' header", 401)
    if not expected:
        raise AdminError("the admin API is disabled: no web admin-token is configured", 403)
    if not hmac.compare_digest(header[7:].strip().encode(), expected.encode()):
        raise AdminError("the admin token is not valid", 403)


def identify(header: str | None, admin_token: str | None, user_tokens: dict[str, str]) -> tuple[str, bool]:
    """(user, is_operator) of a bearer token: the admin token is an operator's, a user token its developer's.
    Raises AdminError 401 without a token and 403 for a token nobody holds."""
    if not header or not header.startswith("Bearer ") or not header[7:].strip():
        raise AdminError("this request needs an 'Authorization: Bearer <token>' header", 401)
    given = header[7:].strip().encode()
    if admin_token and hmac.compare_digest(given, admin_token.encode()):
        return "", True
    for user, token in user_tokens.items():
        if token and hmac.compare_digest(given, str(token).encode()):
            return user, False
    raise AdminError("the token is not valid", 403)


class AccessRequest(BaseModel):
    """A developer's key for a node held after their change's failed build."""

    model_config = ConfigDict(extra="forbid")
    public_key: str = Field(min_length=1, max_length=16384, description="one OpenSSH public key line")
    hours: float | None = Field(default=None, gt=0, le=MAX_HOLD_HOURS, allow_inf_nan=False,
                                description="default: until the hold expires")
    user: str | None = Field(default=None, max_length=64,
                             description="whose key (operators only; default: the change owner)")


# -- request models: one per action; every field is checked before anything is written ---------------------------
def _change_key(value: str) -> str:
    key = value.strip()
    if not CHANGE_KEY.match(key):
        raise ValueError(f'"{key}" is not a change (expected NUMBER,PATCHSET such as 5,1)')
    return key


def _split_words(value: Any) -> Any:
    return value.split() if isinstance(value, str) else value


def _node_id(value: str) -> str:
    if not NODE_ID.match(value):
        raise ValueError(f'"{value[:200]}" is not a node id (letters, digits, ".", "_" and "-", such as 0000000042)')
    return value


def _regex(value: str) -> str:
    # a change number, as zuul-client gives it: that change at any patch set
    if re.fullmatch(r"\d+", value.strip(), re.ASCII):
        return rf"{int(value)},\d+"
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f'change pattern "{value}" is not a regular expression: {exc}') from None
    return value


def _reason(value: str) -> str:
    problem = reason_problem(value)
    if problem:
        raise ValueError(f"the reason {problem}")
    return value


Reason = Annotated[str, Field(min_length=1), AfterValidator(_reason)]
ChangeKey = Annotated[str, AfterValidator(_change_key)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Hours = Annotated[float, Field(gt=0, le=MAX_HOLD_HOURS, allow_inf_nan=False,
                               description=f"hours to hold, at most {MAX_HOLD_HOURS} (30 days)")]
NodeId = Annotated[str, AfterValidator(_node_id), Field(description="a node id such as 0000000042")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1000)


class ChangeRequest(_Request):
    """enqueue, dequeue, retrigger: one change in one pipeline."""

    pipeline: Name
    change: ChangeKey = Field(description="NUMBER,PATCHSET such as 5,1")


class ChangeOrRefRequest(_Request):
    """enqueue, dequeue: one change, or one ref of a project (Zuul's enqueue-ref and dequeue --ref), in one
    pipeline. A ref's name and revisions are checked as the scheduler's request checks them."""

    pipeline: Name
    change: ChangeKey | None = Field(None, description="NUMBER,PATCHSET such as 5,1")
    project: Name | None = Field(None, description="with ref: the ref's project")
    ref: Annotated[str, Field(max_length=255)] | None = Field(
        None, description="a branch or tag as a full ref, such as refs/heads/master or refs/tags/1.0")
    oldrev: Annotated[str, Field(max_length=40)] | None = Field(None, description="enqueue: the ref's revision before")
    newrev: Annotated[str, Field(max_length=40)] | None = Field(
        None, description="enqueue: the revision to run on (default: a branch's tip); dequeue: only that revision")

    @model_validator(mode="after")
    def _change_or_ref(self) -> ChangeOrRefRequest:
        if not self.change and not (self.project or self.ref):
            raise ValueError("missing field: change")  # a ref's request names project or ref: checked later
        return self

    def management(self, action: Action, who: str) -> ManagementRequest:
        return ManagementRequest(action, pipeline=self.pipeline, change=self.change or "", project=self.project or "",
                                 ref=self.ref or "", oldrev=self.oldrev or "", newrev=self.newrev or "", user=who)

    def answer(self, action: str, pipeline: str) -> dict[str, Any]:
        about = {"change": self.change} if self.change else {
            k: v for k, v in (("project", self.project), ("ref", self.ref), ("oldrev", self.oldrev),
                              ("newrev", self.newrev)) if v}
        return {"action": action, "pipeline": pipeline, **about, "result": "done"}


class PromoteRequest(_Request):
    pipeline: Name
    changes: Annotated[list[ChangeKey], BeforeValidator(_split_words), Field(min_length=1, max_length=500)] = Field(
        description='changes in their new order: ["5,1", "6,2"] or "5,1 6,2"')


class AutoholdRequest(_Request):
    project: Name
    reason: Reason
    job: Annotated[str, Field(max_length=255)] = ""
    change: Annotated[str, AfterValidator(_regex)] = Field(
        ".*", description="a regular expression on NUMBER,PATCHSET, or a change number (any patch set)")
    count: Annotated[int, Field(ge=1, le=1000)] = 1
    hours: Hours = 24.0


class HoldNodeRequest(_Request):
    node: NodeId
    reason: Reason
    hours: Hours = 24.0
    replace: Annotated[bool, Field(strict=True, description="replace the hold of a node held already (its reason "
                                                            "and expiry, which may shorten it)")] = False


class ReleaseNodeRequest(_Request):
    node: NodeId


def parse_request(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """`body` checked against `model`; an empty value counts as missing.  AdminError (400) names every bad field."""
    present = {k: v for k, v in body.items() if v not in (None, "", [])}
    try:
        return model.model_validate(present)
    except ValidationError as exc:
        raise AdminError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """A sentence naming each field that is missing, unknown or wrong, and why."""
    missing, unknown, wrong = [], [], []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"])
        if not field:  # the request's own check across fields: its message says it all
            wrong.append(error["msg"].removeprefix("Value error, "))
        elif error["type"] == "missing":
            missing.append(field)
        elif error["type"] == "extra_forbidden":
            unknown.append(field)
        else:
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            shown = f" (got {given!r:.200})" if isinstance(given, str | int | float | bool) and \
                str(given) not in message else ""
            wrong.append(f"field {field}: {message}{shown}")
    parts = []
    if missing:
        parts.append(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    return "; ".join(parts + wrong)


class Admin:
    """The admin actions, given a ZooKeeper client, the known pipelines and the published layout (to refuse typos
    early)."""

    # action name -> (request model, method name); the web builds its routes and OpenAPI document from this
    ACTIONS: dict[str, tuple[type[BaseModel], str]] = {
        "enqueue": (ChangeOrRefRequest, "do_enqueue"),
        "dequeue": (ChangeOrRefRequest, "do_dequeue"),
        "promote": (PromoteRequest, "do_promote"),
        "retrigger": (ChangeRequest, "do_retrigger"),
        "autohold": (AutoholdRequest, "do_autohold"),
        "hold-node": (HoldNodeRequest, "do_hold_node"),
        "release-node": (ReleaseNodeRequest, "do_release_node"),
    }

    def __init__(self, zk: ZKClient, pipelines: Callable[[], list[str]], timeout: float = 30.0,
                 layout: Callable[[], Any] = lambda: None) -> None:
        self.zk = zk
        self._pipelines = pipelines  # callable returning the known pipeline names
        self._layout = layout  # callable returning the published layout (None when it cannot be read)
        self.timeout = timeout  # how long to wait for a scheduler's answer

    def _management(self, action: Action, pipeline: str, who: str, change: str = "",
                    changes: list[str] | None = None, request: ManagementRequest | None = None) -> None:
        """Send an operator request to the scheduler (its own helper and format) and wait for its answer: a
        refusal naming something that is not there is a 404, any other a 409."""
        if request is None:
            request = ManagementRequest(action, pipeline=pipeline, change=change, changes=changes or [], user=who)
        try:
            apply_management(self.zk, request, self.timeout)
        except MalformedRequest as exc:
            raise AdminError(str(exc)) from None
        except ManagementTimeout as exc:
            raise AdminError(str(exc), 504) from None
        except NotFound as exc:
            raise AdminError(str(exc), 404) from None
        except Refused as exc:
            raise AdminError(str(exc), 409) from None

    def _pipeline(self, name: str) -> str:
        known = self._pipelines()
        if known and name not in known:
            raise AdminError(f'no pipeline "{name}" (known: {", ".join(sorted(known))})', 404)
        return name

    def run(self, action: str, body: dict[str, Any], who: str) -> dict[str, Any]:
        """Check `body` for `action` and carry it out; AdminError for anything the operator must fix."""
        if action not in self.ACTIONS:
            raise AdminError(f'unknown admin action "{action}"', 404)
        model, method = self.ACTIONS[action]
        request = parse_request(model, body)
        result = getattr(self, method)(request, who)
        outcome = result.get("result") or result.get("id")
        audit.info("admin %s by %s: %s -> %s", action, who, describe_request(body), outcome)
        return result

    def do_enqueue(self, req: ChangeOrRefRequest, who: str) -> dict[str, Any]:
        pipeline = self._pipeline(req.pipeline)
        self._management(Action.ENQUEUE, pipeline, who, request=req.management(Action.ENQUEUE, who))
        return req.answer("enqueue", pipeline)

    def do_dequeue(self, req: ChangeOrRefRequest, who: str) -> dict[str, Any]:
        pipeline = self._pipeline(req.pipeline)
        self._management(Action.DEQUEUE, pipeline, who, request=req.management(Action.DEQUEUE, who))
        return req.answer("dequeue", pipeline)

    def do_promote(self, req: PromoteRequest, who: str) -> dict[str, Any]:
        pipeline = self._pipeline(req.pipeline)
        self._management(Action.PROMOTE, pipeline, who, changes=req.changes)
        return {"action": "promote", "pipeline": pipeline, "changes": req.changes, "result": "done"}

    def do_retrigger(self, req: ChangeRequest, who: str) -> dict[str, Any]:
        """Run the change's jobs again: dequeue it when it is in the pipeline, then enqueue it afresh."""
        pipeline = self._pipeline(req.pipeline)
        try:
            self._management(Action.DEQUEUE, pipeline, who, change=req.change)
        except AdminError as exc:
            if exc.status != 404:  # not in the pipeline: nothing to take out first
                raise
        self._management(Action.ENQUEUE, pipeline, who, change=req.change)
        return {"action": "retrigger", "pipeline": pipeline, "change": req.change, "result": "done"}

    def do_autohold(self, req: AutoholdRequest, who: str) -> dict[str, Any]:
        from gatekeeper.config.store import unknown_project
        from gatekeeper.zk.node_changes import add_autohold
        from gatekeeper.zk.node_records import Autohold

        refusal = unknown_project(self._layout(), req.project)
        if refusal:
            raise AdminError(refusal, 404)
        hold = Autohold(project=req.project, job=req.job, change=req.change, count=req.count, hold_hours=req.hours,
                        reason=f"{req.reason} (by {who})")
        ident = add_autohold(self.zk, hold)
        return {"id": ident, "action": "autohold", "project": hold.project, "job": hold.job, "change": req.change}

    def do_hold_node(self, req: HoldNodeRequest, who: str) -> dict[str, Any]:
        from gatekeeper.zk.node_changes import hold_node

        reason = f"{req.reason} (by {who})"
        node = _node_change(lambda: hold_node(self.zk, req.node, reason, req.hours, req.replace))
        return {"id": req.node, "action": "hold-node", "state": node.state}

    def do_release_node(self, req: ReleaseNodeRequest, who: str) -> dict[str, Any]:
        from gatekeeper.zk.node_changes import release_node

        node = _node_change(lambda: release_node(self.zk, req.node))
        return {"id": req.node, "action": "release-node", "state": node.state}


def describe_request(body: dict[str, Any]) -> str:
    """What was asked, for the audit log: every field but secrets."""
    return " ".join(f"{k}={body[k]}" for k in sorted(body) if k not in ("token", "user"))


def _node_change(action: Callable[[], Any]) -> Any:
    """Run a node change from gatekeeper.launcher.client, its refusal turned into the admin API's error."""
    from gatekeeper.zk.node_changes import NodeChangeError

    try:
        return action()
    except NodeChangeError as exc:
        raise AdminError(str(exc), exc.status) from None
