"""Enqueueing: which queue a change goes into, and what it needs ahead of it.

A mixin of `PipelineManager` (gatekeeper.scheduler.manager): it acts on the same pass's state and backend.
"""

from __future__ import annotations

import dataclasses
import json
import logging

from gatekeeper.models.interfaces import Report
from gatekeeper.models.pipeline import Change, ChangeQueue, Item
from gatekeeper.scheduler.triggers import cannot_merge, unmet_requirements

log = logging.getLogger("gatekeeper.scheduler.manager")


class Refusal(Exception):
    """A change cannot enter the pipeline; the message, for people, is reported on the change.

    `waits_on` names the change ("N,P") whose entering may let it in (one it needs that does not yet meet the
    pipeline's requirements): it is reconsidered when that one enters. `warning` is Zuul's text for a refusal Zuul
    reports through the pipeline's failure reporters (their vote): a needed change in another change queue, a
    dependency cycle."""

    def __init__(self, message: str, waits_on: str = "", warning: str = "") -> None:
        super().__init__(message)
        self.waits_on = waits_on
        self.warning = warning


# An item is one ZooKeeper record (1 MiB at most) holding its change and, later, its builds' results: a change
# whose own part alone is larger than this (a subject of megabytes, thousands of Depends-On) cannot be kept.
CHANGE_BUDGET = 512 * 1024


def check_size(change: Change) -> None:
    """Raise Refusal when `change` is too large to be kept in an item (see CHANGE_BUDGET)."""
    size = len(json.dumps(dataclasses.asdict(change)))
    if size > CHANGE_BUDGET:
        raise Refusal(f"change {change.key} is too large for gatekeeper to keep ({size} bytes of subject, votes, "
                      f"dependencies and files; at most {CHANGE_BUDGET})")


class Enqueueing:
    """Putting changes in queues, for PipelineManager."""

    # -- enqueue --------------------------------------------------------------------------------------------------
    def enqueue(self, change: Change, refusal_key: str = "", quiet: bool = False) -> str:
        """Put `change` (and, in order, what it needs) in the pipeline; returns "" or why it was refused (reported
        on the change unless `quiet`)."""
        lacking = cannot_merge(self.pipeline, change)
        if lacking:
            # Zuul's dependent manager: "Change ... can not merge", and the change is left out unreported
            log.info("[%s %s] not enqueued: %s (submit records: %s)", self.name, change.key, lacking,
                     ", ".join(f"{label} {status}" for label, status in change.missing_labels.items()))
            return f"change {change.key} cannot enter {self.name}: {lacking}"
        project = self.layout.projects.get(change.project)
        jobs = (project.jobs_on_branch(self.name, change.branch, self.layout.jobs, change.files,
                                       change.containing_branches) if project else ())
        if not jobs:
            on = f" on branch {change.branch}" if project and project.jobs_for(self.name) else ""
            if on and project.jobs_on_branch(self.name, change.branch, self.layout.jobs,
                                             containing=change.containing_branches):
                on = f" for the files change {change.key} touches"
            if on and not quiet:
                self._report_no_jobs(change, refusal_key)
            return f"project {change.project} has no jobs in pipeline {self.name}{on}"
        if self.state.find(change.key):
            return f"change {change.key} is already in {self.name}"
        try:
            check_size(change)
            # Zuul's ignore-dependencies: an independent pipeline's change alone (a dependent one ignores the setting)
            alone = self.in_turn or (self.pipeline.ignore_dependencies and not self.pipeline.dependent)
            needed = [] if alone else self._needed_chain(change)
        except Refusal as exc:
            message = f"Change {change.key} cannot enter {self.name}: {exc}"
            log.info("[%s %s] refused: %s", self.name, change.key, exc)
            if exc.waits_on and self.pipeline.dependent:
                waiters = self.state.waiting.setdefault(exc.waits_on, [])
                if change.number not in waiters:
                    waiters.append(change.number)
                    self.state.changed = True
            if not quiet:
                self._report_refusal(change, message, exc.warning, f"refused:{refusal_key or self.clock()}:"
                                                                   f"{change.key}")
            return message
        if self.in_turn:  # the change alone (gatekeeper.scheduler.inturn)
            self._enqueue_in_turn(change, project)
            return ""
        if self.pipeline.dependent:
            queue = self._shared_queue(project.queue or project.name, change.branch)
            for dep in needed:
                self._add(queue, dep, live=True)
            self._add(queue, change, live=True)
            for entered in [*needed, change]:
                self._follow(entered)
            return ""
        # Named for people (the status page shows it): the one live change it tests, unique in this pipeline.
        queue = ChangeQueue(name=f"{change.project} {change.key}", dynamic=True)
        self.state.queues[queue.name] = queue
        for dep in needed:
            self._add(queue, dep, live=False)
        self._add(queue, change, live=True)
        return ""

    def _report_refusal(self, change: Change, message: str, warning: str, key: str) -> None:
        """Tell a change why it cannot enter: with Zuul's warning through the failure reporters (their vote, their
        text, then ours), as Zuul's _reportNonEnqueuedItem, when Zuul reports that refusal; else a message alone."""
        report = None
        if warning and "failure" in self.pipeline.reports:
            report = self._change_report(change, "failure", key, f"Warning:\n  {warning}\n\n{message}")
        if report is None:
            report = Report(self.name, change, "refused", message, {}, key=key)
        self.backend.report(dataclasses.replace(report, action="refused", submit=False))  # nothing ran to merge

    def _report_no_jobs(self, change: Change, refusal_key: str) -> None:
        """Tell a change of a project in this pipeline that none of its jobs runs for it, where the pipeline has a
        no-jobs reporter (as Zuul reports an item that leaves without running any job); a disabled pipeline tells
        its disabled reporters instead."""
        action = "disabled" if self._disabled() else "no-jobs"
        if action == "disabled" and "no-jobs" not in self.pipeline.reports:
            return
        report = self._change_report(change, action, f"no-jobs:{refusal_key or self.clock()}:{change.key}")
        if report is not None and (report.message or report.labels):
            log.info("[%s %s] runs no job: reported (%s)", self.name, change.key, action)
            self.backend.report(dataclasses.replace(report, submit=False))  # nothing ran: nothing to merge on

    def _needed_chain(self, change: Change) -> list[Change]:
        """The changes `change` needs that must be enqueued ahead of it, in order; raises Refusal."""
        order: list[Change] = []
        done: set[str] = set()
        my_queue = self._queue_name(change.project, change.branch)

        def visit(c: Change, path: list[str]) -> None:
            if c.needs_error:
                raise Refusal(c.needs_error)
            for key in c.needs:
                if key in path:
                    raise Refusal("dependency cycle " + " -> ".join(path[path.index(key):] + [key]),
                                  warning=f"Dependency cycle detected and project {change.project} doesn't allow "
                                          "circular dependencies")
                if key in done:
                    continue
                queued = self.state.find(key) if self.pipeline.dependent else None
                if queued is not None and queued.queue == my_queue:
                    continue
                number = int(key.split(",")[0])
                dep = self.lookup(number)
                if dep is None:
                    raise Refusal(f"it depends on change {key}, which cannot be found")
                if dep.status == "MERGED":
                    continue
                # An independent pipeline tests a change on what it needs, merged or not (Zuul's independent
                # manager enqueues it ahead, not live, without verifying that it could merge)
                if dep.status != "NEW" and self.pipeline.dependent:
                    raise Refusal(f"it depends on change {key}, which is {dep.status.lower()}")
                if dep.key != key:
                    raise Refusal(f"it depends on {key}, an outdated patch set of change {number}")
                check_size(dep)
                if self.pipeline.dependent:
                    queue = self._queue_name(dep.project, dep.branch)
                    if queue != my_queue:
                        raise Refusal(f"it depends on change {key} in {dep.project}, which is not in the same "
                                      f'change queue ("{queue or "none"}", not "{my_queue}")',
                                      warning=f"Change {dep.number} in project {dep.project} does not share a "
                                              f"change queue with {c.number} in project {c.project}")
                    reason = unmet_requirements(self.pipeline, dep) or cannot_merge(self.pipeline, dep)
                    if reason:
                        raise Refusal(f"it depends on change {key}, which cannot enter {self.name}: {reason}",
                                      waits_on=key)
                visit(dep, path + [key])
                done.add(key)
                order.append(dep)

        visit(change, [change.key])
        return order

    def _follow(self, entered: Change) -> None:
        """Enqueue, behind a change that just entered, the refused changes that waited for it and now may enter
        (approved dependents follow what they need, whatever the order their approvals came in)."""
        waiters = self.state.waiting.pop(entered.key, None)
        if waiters is None:
            return
        self.state.changed = True
        for number in waiters:
            latest = self.lookup(number)
            if latest is None or self.state.find(latest.key) or unmet_requirements(self.pipeline, latest):
                continue
            log.info("[%s %s] follows %s, which it needs", self.name, latest.key, entered.key)
            self.enqueue(latest, quiet=True)

    def _queue_name(self, project: str, branch: str) -> str | None:
        """The shared queue a change of `project` to `branch` goes into: the layout's queue, one per branch where
        the queue is per-branch."""
        name = self.layout.queue_of(project)
        conf = self.layout.queues.get(name) if name else None
        return f"{name} ({branch})" if conf and conf.per_branch else name

    def _shared_queue(self, name: str, branch: str) -> ChangeQueue:
        conf = self.layout.queues.get(name)
        key = f"{name} ({branch})" if conf and conf.per_branch else name
        queue = self.state.queues.get(key)
        if queue is None:
            window = (conf.window if conf and conf.window else self.pipeline.window)
            queue = ChangeQueue(name=key, window=window.initial, layout_queue=name)
            self.state.queues[key] = queue  # saved with the item `_add` puts in it next
        return queue

    def _add(self, queue: ChangeQueue, change: Change, live: bool) -> Item:
        project = self.layout.projects.get(change.project)
        jobs = (list(project.jobs_on_branch(self.name, change.branch, self.layout.jobs, change.files,
                                            change.containing_branches)) if project and live else [])
        item = Item(change=change, queue=queue.name, live=live, jobs=jobs, enqueued=self.clock())
        self.state.items[item.id] = item
        self.state.reindex()
        queue.items.append(item.id)
        self.state.touch(item)
        self.state.changed = True
        log.info("%s enqueued%s in queue %s", item.label(self.name), "" if live else " (not live)", queue.name)
        if live and "enqueue" in self.pipeline.reports:
            self._report(item, "enqueue")  # Zuul's enqueue reporters: the change is in, before any job is decided
        return item
