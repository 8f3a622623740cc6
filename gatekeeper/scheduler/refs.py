"""Items for refs: a branch's new revision (Gerrit's ref-updated), as a post pipeline runs jobs on it.

A ref item is a `Change` of number 0 (gatekeeper.models.pipeline.ref_item): its project at the new revision, with
no change merged onto it, in an independent pipeline; nothing about it is reported to Gerrit (there is no change
to vote on), its builds go to the build history.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.pipeline import ref_item
from gatekeeper.scheduler.triggers import pipeline_triggered

if TYPE_CHECKING:
    from gatekeeper.scheduler.manager import PipelineManager

log = logging.getLogger("gatekeeper.scheduler.refs")


def enqueue_ref(manager: PipelineManager, event: TriggerEvent) -> str:
    """Enqueue the branch revision a ref-updated event names, when it triggers the manager's pipeline; returns
    the new item's key ("" when nothing was enqueued)."""
    pipeline = manager.pipeline
    if pipeline.dependent or not pipeline_triggered(pipeline, event):
        return ""
    if not event.newrev:
        log.info("[%s] %s of %s names no new revision: nothing to enqueue", manager.name, event.type, event.ref)
        return ""
    change = ref_item(event.project, event.ref, event.newrev, event.oldrev)
    if manager.state.find(change.key):
        log.info("[%s %s] already in the pipeline; %s ignored", manager.name, change.key, event.type)
        return ""
    reason = manager.enqueue(change, quiet=True)
    if reason:
        log.debug("[%s %s] not enqueued: %s", manager.name, change.key, reason)
        return ""
    if pipeline.reports:
        log.info("[%s %s] the pipeline's Gerrit reports (%s) do not apply to a ref: nothing is reported to "
                 "Gerrit for it", manager.name, change.key, ", ".join(sorted(pipeline.reports)))
    return change.key
