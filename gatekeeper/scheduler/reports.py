"""What a pipeline tells Gerrit, and how items leave: the reports of an item at the head (success, failure,
merge conflict, infrastructure failure), dequeue reports per reason with the root cause, and the build history.

A mixin of `PipelineManager` (gatekeeper.scheduler.manager): it acts on the same pass's state and backend.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from gatekeeper.models.interfaces import Report, ReportOutcome
from gatekeeper.models.pipeline import Build, Change, ChangeQueue, Item
from gatekeeper.zk.builds import INFRASTRUCTURE, BuildResult
from gatekeeper.zk.history import BuildEvent, BuildsetEvent
from gatekeeper.zk.merges import MergeState

log = logging.getLogger("gatekeeper.scheduler.manager")

# what a disabled pipeline no longer reports (its results go to its `disabled` reporters instead)
DISABLED_ACTIONS = frozenset({"start", "success", "failure", "merge-conflict", "infra-failure"})
MERGE_FAILED = "Merge failed."  # Zuul's merge-conflict-message, when the failure reporters report a conflict
INFRA_MESSAGE = ("Build could not be completed because of an infrastructure failure ({pipeline} pipeline). "
                 "This is not the change's fault, and no vote is given: a recheck will retry it.")
MERGER_MESSAGE = ("The change could not be merged for testing because the merger failed ({pipeline} pipeline). "
                  "This is not the change's fault, and no vote is given: a recheck will retry it.")

# Kinds of dequeue reasons (the layout's `dequeue: {reasons: {...}}` turns each one's report on or off).
DEPENDENCY = "dependency-failed"
OPERATOR = "operator"
SILENT_DEQUEUE = frozenset({"abandoned"})  # by default: whoever abandoned a change needs no message about it
# As Zuul's _reportItem: a dependent pipeline reports these through its failure reporters (their vote), opening with
# Zuul's sentence (dequeued_needing_change, dequeued_missing_requirements) before ours naming the cause.
FAILURE_LEADS = {DEPENDENCY: "This change depends on a change that failed to merge.",
                 "lost-approval": "This change is unable to merge due to a missing merge requirement."}


def format_duration(seconds: float) -> str:
    """A build's duration as Zuul's report gives it: whole seconds, cut (1m 02s for 62.7 s)."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def _number(item: Item) -> int | None:
    """The change number the history keeps for the item (none for a ref: it records the ref instead)."""
    return None if item.change.is_ref else item.change.number


def _patchset(item: Item) -> int | None:
    return None if item.change.is_ref else item.change.patchset


class ItemReports:
    """Reporting and leaving, for PipelineManager."""

    # -- reporting and leaving ------------------------------------------------------------------------------------
    def _report_head(self, item: Item, queue: ChangeQueue) -> bool:
        """Report the head and take it out; False while its report is on its way (it stays at the head)."""
        outcome = self._report_complete(item)
        if outcome is None:
            return False
        succeeded = not item.failing and outcome.ok
        window = self._window_config(queue)
        if succeeded:
            queue.window = window.grown(queue.window)
        else:
            # as Zuul, only an item that failed shrinks the window: not one whose submit Gerrit refused after its
            # jobs passed, nor one the infrastructure failed (neither says anything of the queue's health)
            if item.failing and not self._not_its_fault(item):
                queue.window = window.shrunk(queue.window)
            self._left[item.key] = self._failure(item) if outcome.ok else "could not be submitted"
            if outcome.ok and self._not_its_fault(item):
                self._blameless.add(item.key)
        self.state.changed = True
        self._remove(item, merged=succeeded)
        return True

    def _report_complete(self, item: Item) -> ReportOutcome | None:
        if item.merger_failed:  # the merger's outage (a fetch from Gerrit, its disk), not a conflict: no vote
            message = f"{MERGER_MESSAGE.format(pipeline=self.name)}\n\n{item.merge_message}"
            return self._recorded(item, "INFRA_FAILURE", self._report(item, "infra-failure", message))
        if item.merge_state == MergeState.CONFLICT:
            return self._recorded(item, "MERGE_CONFLICT", self._report(item, "merge-conflict", item.merge_message))
        if item.infrastructure_failure:  # never a negative vote: the change is not to blame
            message = INFRA_MESSAGE.format(pipeline=self.name)
            return self._recorded(item, "INFRA_FAILURE", self._report(item, "infra-failure", message))
        if item.failing:
            return self._recorded(item, "FAILURE", self._report(item, "failure"))
        outcome = self._recorded(item, "SUCCESS", self._report(item, "success"))
        if outcome is not None and not outcome.ok:
            log.warning("%s submit refused: %s", item.label(self.name), outcome.message)
            if "submit-refused" not in item.reported:
                item.reported.append("submit-refused")
            self.backend.report(Report(self.name, item.change, "submit-refused",
                                       f"This change passed its {self.name} jobs but could not be merged: "
                                       f"{outcome.message}", {}, key=f"{item.id}:submit-refused"))
        return outcome

    def _disabled(self) -> bool:
        """Whether the pipeline is disabled (Zuul's disable-after-consecutive-failures): from the report that
        follows that many failed items in a row, until a new layout is loaded. Its results then go to the disabled
        reporters only, and nothing reports a start."""
        limit = self.pipeline.disable_after
        if not limit:
            return False
        if self.state.disabled and self.state.disabled != self.layout.digest:
            log.info("[%s] enabled again by a new layout", self.name)
            self.state.disabled, self.state.failures, self.state.changed = "", 0, True
        if not self.state.disabled and self.state.disabled_under(limit, self.layout.digest):
            log.warning("[%s] disabled after %d failed items in a row: it reports to its disabled reporters only "
                        "until a new layout is loaded", self.name, self.state.failures)
            self.state.disabled, self.state.changed = self.layout.digest, True
        return bool(self.state.disabled)

    @staticmethod
    def _not_its_fault(item: Item) -> bool:
        """Whether a failing item fails through no fault of its change: the infrastructure lost its builds, or the
        merger kept failing (what needs it is then not voted on either)."""
        return item.infrastructure_failure or item.merger_failed

    def _report(self, item: Item, action: str, extra: str = "", lead: str = "") -> ReportOutcome | None:
        if action in DISABLED_ACTIONS and self._disabled():
            if action == "start":
                return ReportOutcome()
            action = "disabled"
        report = self._make_report(item, action, extra, lead)
        if report is None:
            return ReportOutcome()
        if action not in item.reported:
            item.reported.append(action)
            self.state.touch(item)
            if hasattr(self.backend, "report_first"):  # ledgered with the state that records the asking
                self.backend.report_first(report)
                return None
        return self.backend.report(report)

    def _report_early(self, item: Item, after: str) -> str:
        """Ask now for the success report of a complete, succeeding item right behind a succeeding head (or such an
        item), to be sent once the report `after` (a key) merged its change; returns this report's key ("" when
        the backend cannot, or there is nothing to send)."""
        report = self._make_report(item, "success")
        if report is None or not report.submit or not hasattr(self.backend, "report_after"):
            return ""
        if "success" not in item.reported:
            item.reported.append("success")
            self.state.touch(item, settle=False)
            self.backend.report_first(report, after)
        else:
            self.backend.report_after(report, after)
        return report.key

    def _make_report(self, item: Item, action: str, extra: str = "", lead: str = "") -> Report | None:
        results = "" if lead else "\n".join(self._job_line(item.builds[j]) for j in item.jobs if j in item.builds)
        return self._change_report(item.change, action, f"{item.id}:{action}", extra, results, lead)

    def _change_report(self, change: Change, action: str, key: str, extra: str = "",
                       results: str = "", lead: str = "") -> Report | None:
        """The report of `action` on `change` as the pipeline's reporters and messages give it (`results`: its job
        lines; `lead`: a text that replaces the reporter's message, as Zuul's for an item dequeued with a failure),
        or None when there is nothing to send."""
        if change.is_ref:
            return None  # no review names a branch: a ref item's outcome goes to the build history only
        conf = self.pipeline.reports.get(action)
        intro = self.pipeline.messages.get(action, "")
        if conf is None and action == "merge-conflict" and "failure" in self.pipeline.reports:
            # as Zuul: without merge-conflict reporters, the failure reporters (their votes, not their text) are used
            conf, intro = self.pipeline.reports["failure"], intro or MERGE_FAILED
            conf = dataclasses.replace(conf, message="", submit=False)
        if conf is None and (not extra or action == "disabled"):
            return None
        parts = [lead] if lead else \
            [conf.message] if conf and conf.message else [intro.replace("{pipeline.name}", self.name)]
        if extra and action == "infra-failure":
            parts, extra = [extra], ""
        if action in ("success", "failure", "infra-failure", "disabled"):
            parts.append(results)
        if extra:
            parts.append(extra)
        if action in ("success", "failure", "infra-failure", "merge-conflict", "disabled"):
            parts.append(self.pipeline.footer)
        # Gerrit takes no votes on an outdated patch set (one kept by dequeue-on-new-patchset: false): a message only
        labels = dict(conf.labels) if conf and change.is_current else {}
        return Report(self.name, change, action, "\n\n".join(p for p in parts if p),
                      labels, submit=bool(conf and conf.submit),
                      tag=conf.tag if conf else "", key=key)

    # -- build history (gatekeeper.zk.history: the history recorder stores these) ----------------------------
    def _record_build(self, item: Item, build: Build, result: BuildResult, outcome: str, message: str,
                      final: bool) -> None:
        self.backend.record_history(BuildEvent(
            id=result.id, buildset=item.id, pipeline=self.name, project=item.change.project,
            change=_number(item), patchset=_patchset(item), job=result.job, result=outcome,
            message=message, start_time=result.start_time, end_time=result.end_time, log_url=result.log_url,
            node=dict(result.node), executor=result.executor, attempt=build.attempt, final=final,
            failure_class=result.failure_class, summary=result.summary, signatures=list(result.signatures)))

    def _recorded(self, item: Item, result: str, outcome: ReportOutcome | None) -> ReportOutcome | None:
        """Record the item's buildset once its report is settled (a success whose submit Gerrit refused is a
        MERGE_FAILURE, as in Zuul), and count the failed items in a row where the pipeline may be disabled for
        them."""
        if outcome is not None:
            if self.pipeline.disable_after and not item.change.is_ref and result in ("SUCCESS", "FAILURE"):
                # as Zuul: only failed jobs count (a merge conflict, the infrastructure's failure: neither way; a
                # refused submit: its jobs succeeded)
                self.state.failures = 0 if result == "SUCCESS" else self.state.failures + 1
                self.state.changed = True
            if result == "SUCCESS" and not outcome.ok:
                result = "MERGE_FAILURE"
            self.backend.record_history(BuildsetEvent(
                id=item.id, pipeline=self.name, project=item.change.project, change=_number(item),
                patchset=_patchset(item), ref=item.change.ref, changes=item.changes or item.key, result=result,
                oldrev=item.change.oldrev, newrev=item.change.commit if item.change.is_ref else "",
                message=outcome.message, enqueue_time=item.enqueued,
                start_time=min((b.start_time for b in item.builds.values() if b.start_time), default=0.0),
                end_time=max((b.end_time for b in item.builds.values() if b.end_time), default=0.0)))
        return outcome

    @staticmethod
    def _job_line(build: Build) -> str:
        # as Zuul: a build without logs (one that never ran) names its job where the URL goes, one word that parsers
        # of "- job url : RESULT in 1m 02s" lines take; what went wrong follows on the lines below it, where those
        # parsers (which read the time right after the result) do not look
        line = f"- {build.job} {build.log_url or build.job} : {build.result}"
        if build.end_time and build.start_time:
            line += f" in {format_duration(build.end_time - build.start_time)}"
        if not build.voting:
            line += " (non-voting)"
        if build.message and build.result != "SUCCESS":
            line += "".join(f"\n  {text}" for text in build.message.splitlines() if text.strip())
        if build.result != "SUCCESS":
            if build.failure_class == INFRASTRUCTURE:
                line += "\n  An infrastructure failure, not this change's fault."
            line += "".join(f"\n  {text}" for text in build.summary.splitlines() if text.strip())
            for bug in build.signatures:
                known = " ".join(str(bug.get(k, "")) for k in ("id", "title", "url") if bug.get(k))
                line += f"\n  Known bug: {known}"
            held_until = (build.node or {}).get("held_until")
            if held_until:
                node = build.node.get("name", "")
                until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(held_until)))
                line += (f"\n  Its node {node} is held until {until} so that the failure can be looked into: the "
                         f"change owner can ask for SSH access with their public key (POST /api/v1/nodes/{node}/"
                         f"access on the status site, or an operator runs: gatekeeper hold-access {node} --key "
                         "KEY.pub).")
                others = [n.get("id", "") for n in build.node.get("nodeset") or []][1:]
                if others:  # a multi-node job's other nodes are held with it
                    line += f" The other nodes of its nodeset are held too: {', '.join(others)}."
        return line

    def _dequeue(self, item: Item, reason: str, kind: str, blameless: bool = False) -> None:
        """Take the item out for `reason`; its owner is told unless the layout keeps that kind of reason silent. A
        dependent pipeline's item that lost a requirement or a change it needs gets the failure reporters' vote, as in
        Zuul, unless the cause is nobody's fault (`blameless`: a needed change lost to the infrastructure)."""
        log.info("%s dequeued: %s", item.label(self.name), reason)
        # Those that need it are told the root cause, through any depth of dependency.
        self._left[item.key] = reason[len("it "):] if kind == DEPENDENCY else \
            f"was removed from the queue because {reason}"
        if blameless:
            self._blameless.add(item.key)
        conf = self.pipeline.reports.get("dequeue")
        told = conf.reasons.get(kind, kind not in SILENT_DEQUEUE) if conf is not None else None
        lead = FAILURE_LEADS.get(kind, "") if self.pipeline.dependent and not blameless else ""
        if item.live and lead and told is not False and "failure" in self.pipeline.reports:
            self._report(item, "failure", f"{reason[0].upper()}{reason[1:]}.", lead=lead)
        elif item.live and told:
            self._report(item, "dequeue", f"Removed because {reason}.")
        # A change someone else merged in Gerrit is on the branch now: those built on it stay, as in Zuul
        # (item_ahead_merged), rather than restart on a branch that holds the same commits. Not when another patch
        # set merged: they were built on this one, which the branch does not hold.
        self._remove(item, merged=item.change.status == "MERGED" and item.change.is_current)

    def _remove(self, item: Item, merged: bool) -> None:
        """Take the item out; when it merged, those built on it now stand on the branch instead (no reset)."""
        self._cancel_builds(item)
        queue = self.state.queues.get(item.queue)
        if queue and item.id in queue.items:
            queue.items.remove(item.id)
        self.state.items.pop(item.id, None)
        self.state.reindex()
        self.state.left.append((item.id, list(item.reported)))
        self.state.dirty.discard(item.id)
        self.state.started.discard(item.id)
        self.state.removed.add(item.id)
        self.state.changed = True
        if merged and queue:
            for other in self.state.queue_items(queue):
                if other.ahead == [item.id, item.gen]:
                    other.ahead = item.ahead
                    self.state.touch(other)
                if item.key in other.change.needs:
                    other.change.needs = [k for k in other.change.needs if k != item.key]
                    self.state.touch(other)

    def _remove_queue_of(self, item: Item) -> None:
        """Remove the item without a report: an independent one with the changes it needs (its queue)."""
        queue = self.state.queues.get(item.queue)
        items = self.state.queue_items(queue) if queue and queue.dynamic and not self.in_turn else [item]
        for other in items:
            self._remove(other, merged=False)

    def _cancel_builds(self, item: Item) -> None:
        for build in item.builds.values():
            if not build.finished:
                self.backend.cancel_build(build.id)

    def _window_config(self, queue: ChangeQueue):
        conf = self.layout.queues.get(queue.layout_queue or queue.name)
        return conf.window if conf and conf.window else self.pipeline.window
