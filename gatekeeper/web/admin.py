"""Admin actions behind the bearer token: each checks its input, writes what the owning service accepts from
operators (a management event for the scheduler, an autohold or a node change for the launcher), and is logged
with who did what.  The token itself is never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

from gatekeeper.zk.client import ZKClient

audit = logging.getLogger("gatekeeper.web.audit")

CHANGE_KEY = re.compile(r"^\d+,\d+$")


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


def _require(body: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if body.get(k) in (None, "", [])]
    if missing:
        raise AdminError(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")


def _change_key(value: Any) -> str:
    key = str(value).strip()
    if not CHANGE_KEY.match(key):
        raise AdminError(f'"{key}" is not a change (expected NUMBER,PATCHSET such as 5,1)')
    return key


class Admin:
    """The admin actions, given a ZooKeeper client and the known pipelines (to refuse typos early)."""

    def __init__(self, zk: ZKClient, pipelines: Any, timeout: float = 30.0) -> None:
        self.zk = zk
        self._pipelines = pipelines  # callable returning the known pipeline names
        self.timeout = timeout  # how long to wait for a scheduler's answer

    def _management(self, request: dict[str, Any], who: str) -> None:
        """Send an operator request to the scheduler (its own helper and format) and wait for its answer."""
        from gatekeeper.scheduler.cli import ManagementTimeout, send_management

        try:
            error = send_management(self.zk, {**request, "user": who}, self.timeout)
        except ManagementTimeout as exc:
            raise AdminError(str(exc), 504) from None
        if error:
            raise AdminError(error, 404 if error.startswith("no ") else 409)

    def _pipeline(self, body: dict[str, Any]) -> str:
        _require(body, "pipeline")
        name = str(body["pipeline"])
        known = self._pipelines()
        if known and name not in known:
            raise AdminError(f'no pipeline "{name}" (known: {", ".join(sorted(known))})', 404)
        return name

    def run(self, action: str, body: dict[str, Any], who: str) -> dict[str, Any]:
        handler = getattr(self, f"do_{action.replace('-', '_')}", None)
        if handler is None:
            raise AdminError(f'unknown admin action "{action}"', 404)
        result = handler(body, who)
        outcome = result.get("result") or result.get("id")
        audit.info("admin %s by %s: %s -> %s", action, who, describe_request(body), outcome)
        return result

    def do_enqueue(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        pipeline = self._pipeline(body)
        _require(body, "change")
        key = _change_key(body["change"])
        self._management({"action": "enqueue", "pipeline": pipeline, "change": key}, who)
        return {"action": "enqueue", "pipeline": pipeline, "change": key, "result": "done"}

    def do_dequeue(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        pipeline = self._pipeline(body)
        _require(body, "change")
        key = _change_key(body["change"])
        self._management({"action": "dequeue", "pipeline": pipeline, "change": key}, who)
        return {"action": "dequeue", "pipeline": pipeline, "change": key, "result": "done"}

    def do_promote(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        pipeline = self._pipeline(body)
        _require(body, "changes")
        changes = body["changes"]
        if isinstance(changes, str):
            changes = changes.split()
        keys = [_change_key(c) for c in changes]
        self._management({"action": "promote", "pipeline": pipeline, "changes": keys}, who)
        return {"action": "promote", "pipeline": pipeline, "changes": keys, "result": "done"}

    def do_retrigger(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        """Run the change's jobs again: dequeue it when it is in the pipeline, then enqueue it afresh."""
        pipeline = self._pipeline(body)
        _require(body, "change")
        key = _change_key(body["change"])
        try:
            self._management({"action": "dequeue", "pipeline": pipeline, "change": key}, who)
        except AdminError as exc:
            if exc.status != 404:  # not in the pipeline: nothing to take out first
                raise
        self._management({"action": "enqueue", "pipeline": pipeline, "change": key}, who)
        return {"action": "retrigger", "pipeline": pipeline, "change": key, "result": "done"}

    def do_autohold(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        from gatekeeper.launcher.client import add_autohold
        from gatekeeper.launcher.model import Autohold

        _require(body, "project", "reason")
        change = str(body.get("change") or ".*")
        try:
            re.compile(change)
        except re.error as exc:
            raise AdminError(f'change pattern "{change}" is not a regular expression: {exc}') from None
        hold = Autohold(project=str(body["project"]), job=str(body.get("job", "")), change=change,
                        count=int(body.get("count", 1)), hold_hours=float(body.get("hours", 24.0)),
                        reason=f"{body['reason']} (by {who})")
        ident = add_autohold(self.zk, hold)
        return {"id": ident, "action": "autohold", "project": hold.project, "job": hold.job, "change": change}

    def do_hold_node(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        _require(body, "node", "reason")
        node_id, reason = str(body["node"]), f"{body['reason']} (by {who})"
        hours = float(body.get("hours", 24.0))
        from gatekeeper.launcher.client import hold_node

        node = _node_change(lambda: hold_node(self.zk, node_id, reason, hours))
        return {"id": node_id, "action": "hold-node", "state": node.state}

    def do_release_node(self, body: dict[str, Any], who: str) -> dict[str, Any]:
        _require(body, "node")
        node_id = str(body["node"])
        from gatekeeper.launcher.client import release_node

        node = _node_change(lambda: release_node(self.zk, node_id))
        return {"id": node_id, "action": "release-node", "state": node.state}


def describe_request(body: dict[str, Any]) -> str:
    """What was asked, for the audit log: every field but secrets."""
    return " ".join(f"{k}={body[k]}" for k in sorted(body) if k not in ("token", "user"))


def _node_change(action: Any) -> Any:
    """Run a node change from gatekeeper.launcher.client, its refusal turned into the admin API's error."""
    from gatekeeper.launcher.client import NodeChangeError

    try:
        return action()
    except NodeChangeError as exc:
        raise AdminError(str(exc), exc.status) from None
