"""Which events start a pipeline, and what a change must keep satisfying to stay in it."""

from __future__ import annotations

from gatekeeper.config.layout import Pipeline, Requirements, Trigger
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import Change


def trigger_matches(trigger: Trigger, event: TriggerEvent) -> bool:
    if event.connection != trigger.connection or event.type not in trigger.events:
        return False
    if trigger.branches and not any(p.search(event.branch) for p in trigger.branches):
        return False
    if trigger.usernames and not any(p.search(event.account) for p in trigger.usernames):
        return False
    if trigger.comments and not any(p.search(event.comment) for p in trigger.comments):
        return False
    for wanted in trigger.approvals:
        for label, value in wanted.items():
            if not any(a["label"] == label and a["value"] == value for a in event.approvals):
                return False
    return True


def pipeline_triggered(pipeline: Pipeline, event: TriggerEvent) -> bool:
    return event.change > 0 and any(trigger_matches(t, event) for t in pipeline.triggers)


def unmet_requirements(pipeline: Pipeline, change: Change) -> str:
    """Why `change` may not be (or stay) in `pipeline`, as a phrase for people; "" when it may."""
    req: Requirements = pipeline.require
    if req.open and change.status != "NEW":
        return "it was abandoned" if change.status == "ABANDONED" else f"it is {change.status.lower()}"
    if req.current_patchset and not change.is_current:
        return f"a new patch set ({change.number},{change.current_patchset}) was uploaded"
    for wanted in req.approvals:
        for label, value in wanted.items():
            if not change.has_approval(label, value):
                return f"it does not have {label}: {value:+d}" if value else f"it does not have {label}: 0"
    wip_allowed = req.wip if req.wip is not None else (None if not pipeline.dependent else False)
    if wip_allowed is False and change.wip:
        return "it is marked work in progress"
    if wip_allowed is True and not change.wip:
        return "it is not marked work in progress"
    return ""


def requirement_kind(change: Change) -> str:
    """The kind of reason a change no longer meets a pipeline's requirements (names the layout's dequeue
    `reasons` use): abandoned, new-patchset, lost-approval (an approval or a work-in-progress state), other."""
    if change.status == "ABANDONED":
        return "abandoned"
    if change.status != "NEW":
        return "other"
    if not change.is_current:
        return "new-patchset"
    return "lost-approval"
