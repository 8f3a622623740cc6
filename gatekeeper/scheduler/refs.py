"""Items for refs: a branch's or a tag's new revision (Gerrit's ref-updated), as post and tag pipelines run jobs
on it, and the operator's enqueue and dequeue of a ref (Zuul's enqueue-ref and dequeue --ref).

A ref item is a `Change` of number 0 (gatekeeper.models.pipeline.ref_item): its project at the new revision (a
tag's: the commit it tags), with no change merged onto it, in an independent pipeline; a deleted ref's item
(a trigger's ignore-deletes: false) runs on the project's default branch. Nothing about a ref item is reported to
Gerrit (there is no change to vote on), its builds go to the build history.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.interfaces import SourceError, SourceUnavailable
from gatekeeper.models.pipeline import Item, PipelineState, ref_item
from gatekeeper.scheduler.triggers import pipeline_triggered
from gatekeeper.zk.management import ManagementRequest, NotFound

if TYPE_CHECKING:
    from gatekeeper.scheduler.manager import PipelineManager

log = logging.getLogger("gatekeeper.scheduler.refs")


def enqueue_ref(manager: PipelineManager, event: TriggerEvent) -> str:
    """Enqueue the branch's or tag's revision a ref-updated event names (or its deletion, when the trigger does not
    ignore deletes), when it triggers the manager's pipeline; returns the new item's key ("" when nothing was
    enqueued)."""
    pipeline = manager.pipeline
    if pipeline.dependent or not pipeline_triggered(pipeline, event):
        return ""
    if not event.newrev:
        log.info("[%s] %s of %s names no new revision: nothing to enqueue", manager.name, event.type, event.ref)
        return ""
    if event.deletes_ref:
        log.info("[%s] %s of %s deleted %s: enqueued on its default branch (the trigger's ignore-deletes is false)",
                 manager.name, event.type, event.project, event.ref)
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


def ref_items(state: PipelineState, pipeline: str, request: ManagementRequest) -> list[Item]:
    """The live items of the ref an operator's request names (of that new revision only, when it gives one);
    raises NotFound when there is none."""
    found = [item for item in state.items.values()
             if item.live and item.change.is_ref and item.change.project == request.project
             and item.change.ref == request.ref and (not request.newrev or item.change.commit == request.newrev)]
    if not found:
        raise NotFound(f"no item of {request.ref_key} in {pipeline}")
    return sorted(found, key=lambda item: item.key)


def enqueue_ref_request(manager: PipelineManager, request: ManagementRequest) -> str:
    """Apply an operator's enqueue of a ref (Zuul's enqueue-ref): its item goes in as a ref-updated would put it,
    whatever the pipeline's triggers say; a branch without `newrev` at its tip in Gerrit. Returns "" or why not,
    and raises NotFound for a project or branch that is not there."""
    name = manager.name
    if manager.pipeline.dependent:
        return (f"{request.ref_key}: a ref does not enter a dependent pipeline ({name}); it enters independent, "
                "supercedent and serial ones (post, tag, periodic, deploy)")
    if request.project not in manager.layout.projects:
        raise NotFound(f"no project {request.project} in the layout")
    newrev = request.newrev or _branch_tip(manager, request)
    if not newrev:
        return f"{request.ref_key}: give the revision (newrev) to enqueue: only a branch's tip is looked up"
    change = ref_item(request.project, request.ref, newrev, request.oldrev)
    if manager.state.find(change.key):
        return f"{change.key} is already in {name}"
    reason = manager.enqueue(change, quiet=True)
    if not reason:
        log.info("[%s %s] enqueued by an operator", name, change.key)
    return reason


def _branch_tip(manager: PipelineManager, request: ManagementRequest) -> str:
    """The tip in Gerrit of the branch a request names ("" for a tag, or a source that lists no branches);
    NotFound when there is no such branch."""
    heads = getattr(manager.source, "branch_heads", None)
    if not request.ref.startswith("refs/heads/") or heads is None:
        return ""
    branch = request.ref[len("refs/heads/"):]
    try:
        tip = heads(request.project).get(branch)
    except SourceUnavailable:
        raise  # Gerrit is down: the scheduler's outage handling, not a refusal
    except SourceError as exc:
        raise NotFound(f"the branches of {request.project} cannot be read: {exc}") from None
    if not tip:
        raise NotFound(f"{request.project} has no branch {branch} in Gerrit")
    return tip


def tag_jobs(manager: PipelineManager, item: Item, containing: list[str]) -> list[str]:
    """A tag item's merge told which branches contain its commit: its jobs are now those whose branch matchers match
    the tag or one of those branches (as Zuul matches tag items); returns them (none: the item is to leave)."""
    item.change.containing = list(containing)
    project = manager.layout.projects.get(item.change.project)
    jobs = (list(project.jobs_on_branch(manager.name, item.change.branch, manager.layout.jobs, item.change.files,
                                        item.change.containing_branches)) if project else [])
    manager.state.touch(item)
    if jobs == item.jobs:
        return jobs
    on = ", ".join(containing) or "no branch"
    log.info("%s: the tagged commit is on %s: its jobs are %s (were %s)", item.label(manager.name), on,
             ", ".join(jobs) or "none", ", ".join(item.jobs))
    item.jobs = jobs
    return jobs
