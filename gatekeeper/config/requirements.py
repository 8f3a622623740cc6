"""A pipeline's (or a trigger's) `require` and `reject`, as the layout gives them, read into Requirements."""

from __future__ import annotations

from typing import Any

from gatekeeper.config.model import Requirements


def approvals(value: Any) -> tuple:
    """An `approval` filter's list (Zuul also takes one mapping alone)."""
    if not value:
        return ()
    return (value,) if isinstance(value, dict) else tuple(value)


def requirements(req: dict, reject: dict) -> Requirements:
    """What `require` asks of a change, and what `reject` keeps out (Zuul's mirror of require)."""
    return Requirements(
        open=req.get("open"), current_patchset=req.get("current-patchset"), approvals=approvals(req.get("approval")),
        wip=req.get("wip"), status=req.get("status"), reject_approvals=approvals(reject.get("approval")),
        reject_open=reject.get("open"), reject_current_patchset=reject.get("current-patchset"),
        reject_wip=reject.get("wip"), reject_status=reject.get("status"))


def trigger_requirements(trigger: dict) -> Requirements | None:
    """A trigger's own require and reject (Zuul's), or None when it gives neither."""
    req, reject = trigger.get("require") or {}, trigger.get("reject") or {}
    return requirements(req, reject) if req or reject else None
