"""Which events start a pipeline, and what a change must keep satisfying to stay in it."""

from __future__ import annotations

import re
from typing import Any

from gatekeeper.config.layout import Pipeline, Requirements, Trigger
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import Change

REF_ITEM_PREFIXES = ("refs/heads/", "refs/tags/")  # the refs whose updates can enqueue a ref item


def trigger_matches(trigger: Trigger, event: TriggerEvent) -> bool:
    """Whether `event` passes every filter `trigger` gives (its own require and reject aside)."""
    if event.connection != trigger.connection or event.type not in trigger.events:
        return False
    # Zuul's EventFilter matches branch and ref at the start (re.match) and searches the others
    if trigger.refs and not any(p.match(event.ref) for p in trigger.refs):
        return False
    if event.deletes_ref and trigger.ignore_deletes:
        return False  # Zuul's ignore-deletes (true by default): a deleted ref enqueues nothing
    if trigger.branches and not any(p.match(event.branch) for p in trigger.branches):
        return False
    if trigger.usernames and not any(p.search(event.account) for p in trigger.usernames):
        return False
    if trigger.emails and not (event.email and any(p.search(event.email) for p in trigger.emails)):
        return False
    if trigger.comments and not any(p.search(event.comment) for p in trigger.comments):
        return False
    return all(approval_present(event.approvals, wanted, voter=event.account) for wanted in trigger.approvals)


def approval_present(approvals: list[dict[str, Any]], wanted: dict[str, Any], voter: str = "") -> bool:
    """Whether `approvals` ([{label, value, by}]) hold what one layout approval entry asks for: for each label
    in it, a vote of that value (or of one of a list of values), cast by a user matching `username` when given
    (`voter` stands for an approval that names nobody, as an event's own votes do)."""
    username = wanted.get("username")
    for label, value in wanted.items():
        if label == "username":
            continue
        values = value if isinstance(value, list) else [value]
        if not any(a["label"] == label and int(a["value"]) in values
                   and (username is None or re.search(username, a.get("by") or voter))
                   for a in approvals):
            return False
    return True


def _describe(wanted: dict[str, Any]) -> str:
    parts = []
    for label, value in wanted.items():
        if label != "username":
            values = value if isinstance(value, list) else [value]
            parts.append(f"{label}: " + " or ".join(f"{x:+d}" if x else "0" for x in values))
    who = f" from {wanted['username']}" if wanted.get("username") else ""
    return ", ".join(parts) + who


def pipeline_triggered(pipeline: Pipeline, event: TriggerEvent, change: Change | None = None) -> bool:
    """Whether the event enqueues something: its change, or (a branch or a tag updated, or a timer fired for this
    pipeline) a ref's revision. A change's own refs (refs/changes/..., Gerrit's NoteDb) never do. With the event's
    `change` (as it is now), a trigger's own require and reject must hold for it too (without it: they may)."""
    if event.type == "timer":
        return bool(pipeline.timers) and event.raw.get("pipeline") == pipeline.name
    about = event.change > 0 or (event.type == "ref-updated" and event.ref.startswith(REF_ITEM_PREFIXES))
    return about and any(trigger_matches(t, event) and (change is None or not trigger_unmet(t, change, event.patchset))
                         for t in pipeline.triggers)


def trigger_unmet(trigger: Trigger, change: Change, patchset: int = 0) -> str:
    """Why `change` does not satisfy what `trigger` itself requires of it (Zuul's trigger require and reject), ""
    when it does. `patchset`: the event's patch set (Zuul decides current-patchset on it: a comment on an old patch
    set is not on the current one, though the change looked up is)."""
    req = trigger.require
    if req is None or change.is_ref:
        return ""
    if req.open is not None and (change.status == "NEW") != req.open:
        return "it is open" if change.status == "NEW" else f"it is {change.status.lower()}"
    current = change.is_current if not patchset else patchset == change.current_patchset
    if req.current_patchset is not None and current != req.current_patchset:
        return "it is not the current patch set" if req.current_patchset else "it is the current patch set"
    if req.wip is not None and change.wip != req.wip:
        return "it is marked work in progress" if change.wip else "it is not marked work in progress"
    return _approvals_unmet(req, change)


def _approvals_unmet(req: Requirements, change: Change) -> str:
    """Which of `req`'s approvals `change` lacks, or which of its rejected ones it has; "" when neither."""
    for wanted in req.approvals:
        if not approval_present(change.approvals, wanted):
            return f"it does not have {_describe(wanted)}"
    for unwanted in req.reject_approvals:
        if approval_present(change.approvals, unwanted):
            return f"it has {_describe(unwanted)}"
    return ""


def unmet_requirements(pipeline: Pipeline, change: Change, staying: bool = False) -> str:
    """Why `change` may not enter `pipeline` (or, `staying`, stay in it), as a phrase for people; "" when it may
    (a ref item always may: requirements are about changes)."""
    req: Requirements = pipeline.require
    if change.is_ref:
        return ""
    if req.open and change.status != "NEW":
        return "it was abandoned" if change.status == "ABANDONED" else f"it is {change.status.lower()}"
    # A change enters only as its current patch set when the pipeline requires it; an item stays after a new
    # patch set only when the pipeline says so (Zuul's dequeue-on-new-patchset, true by default).
    outdated = req.current_patchset if not staying else pipeline.dequeue_on_new_patchset
    if outdated and not change.is_current:
        return f"a new patch set ({change.number},{change.current_patchset}) was uploaded"
    unmet = _approvals_unmet(req, change)
    if unmet:
        return unmet
    if req.status and change.status != req.status:
        return f"its status is {change.status}, not {req.status}"
    rejected = _rejected(req, change)
    if rejected:
        return rejected
    wip_allowed = req.wip if req.wip is not None else (None if not pipeline.dependent else False)
    if wip_allowed is False and change.wip:
        return "it is marked work in progress"
    if wip_allowed is True and not change.wip:
        return "it is not marked work in progress"
    return ""


def cannot_merge(pipeline: Pipeline, change: Change) -> str:
    """Why Gerrit would not submit `change` even after this pipeline's success report (Zuul's canMerge with the
    success reporters' allow-needs): the labels its submit records lack beyond those the report votes on, as a
    phrase for people; "" when it lacks no other. A label the report votes on may even be vetoed (REJECT): the veto
    may be a vote of this pipeline's own, as a gate failure's Verified -2, that its success replaces. Only a
    dependent pipeline asks (it submits what it tests)."""
    if not pipeline.dependent or change.is_ref:
        return ""
    success = pipeline.reports.get("success")
    allowed = set(success.labels) if success else set()
    lacking = {label: status for label, status in change.missing_labels.items() if label not in allowed}
    if not lacking:
        return ""
    needed = [label for label, status in lacking.items() if status != "REJECT"]
    vetoed = [label for label, status in lacking.items() if status == "REJECT"]
    parts = [f"it needs {' and '.join(needed)}"] if needed else []
    parts += [f"{label} has a blocking vote" for label in vetoed]
    return "Gerrit would not submit it: " + ", and ".join(parts)


def _rejected(req: Requirements, change: Change) -> str:
    """Why the pipeline's reject keeps `change` out, beyond its approvals ("" when it does not)."""
    is_open = change.status == "NEW"
    if req.reject_open is not None and is_open == req.reject_open:
        return "it is open" if is_open else f"it is {change.status.lower()}"
    if req.reject_current_patchset is not None and change.is_current == req.reject_current_patchset:
        return "it is the current patch set" if change.is_current else "it is not the current patch set"
    if req.reject_wip is not None and change.wip == req.reject_wip:
        return "it is marked work in progress" if change.wip else "it is not marked work in progress"
    if req.reject_status and change.status == req.reject_status:
        return f"its status is {change.status}"
    return ""


def requirement_kind(change: Change) -> str:
    """The kind of reason a change no longer meets a pipeline's requirements (names the layout's dequeue
    `reasons` use): abandoned, new-patchset, lost-approval (an approval lost, a rejecting vote added, or a
    work-in-progress state), other."""
    if change.status == "ABANDONED":
        return "abandoned"
    if change.status != "NEW":
        return "other"
    if not change.is_current:
        return "new-patchset"
    return "lost-approval"
