"""A pipeline manager: applies events to one pipeline's state and runs the queue loop.

The gate's rule is in `_process_dependent`: walk each queue head to tail keeping the nearest non-failing item
(nnfi); an item whose base is no longer the nnfi is reset onto it; items are tested as soon as the state ahead
is merged; only the head is reported, and it leaves the queue when it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gatekeeper.config.layout import Job, Layout, Pipeline
from gatekeeper.models.events import TriggerEvent
from gatekeeper.models.interfaces import Backend, ChangeSource
from gatekeeper.models.pipeline import MERGE_ATTEMPTS, Build, Change, ChangeQueue, Item, PipelineState
from gatekeeper.scheduler.enqueue import Enqueueing
from gatekeeper.scheduler.inturn import InTurn
from gatekeeper.scheduler.jobgraph import next_jobs, skipped_build
from gatekeeper.scheduler.promote import promote
from gatekeeper.scheduler.refs import enqueue_ref, enqueue_ref_request, ref_items, tag_jobs
from gatekeeper.scheduler.reports import DEPENDENCY, OPERATOR, ItemReports
from gatekeeper.scheduler.supersede import superseded_by
from gatekeeper.scheduler.triggers import pipeline_triggered, requirement_kind, unmet_requirements
from gatekeeper.zk.builds import INFRASTRUCTURE, RETRY_LIMIT, RETRYABLE, SKIPPED, BuildRequest, BuildResult
from gatekeeper.zk.management import Action, ManagementRequest, NotFound
from gatekeeper.zk.merges import MergeRequest, MergeResult, MergeState

log = logging.getLogger("gatekeeper.scheduler.manager")

# reports that tell no result: an item that sent only these still takes a new layout's jobs
UNRESULTED = frozenset({"enqueue", "start"})


def _provider_of(result: BuildResult) -> list[str]:
    """The provider an infrastructure failure happened on, for its retry to avoid (none if it had no node)."""
    provider = (result.node or {}).get("provider", "")
    return [provider] if provider else []


def job_params(job: Job) -> dict:
    """What an executor needs to run `job` (frozen into each build request)."""
    return {
        "run": list(job.run),
        "timeout": job.timeout,
        "vars": dict(job.vars),
        "collect": list(job.collect),
        "devstack": {"localrc": dict(job.devstack_localrc), "local_conf": job.devstack_local_conf},
        "required_projects": list(job.required_projects),
        "label": job.label or "",
        "voting": job.voting,
        "hold_hours": job.hold_hours,
        "variant": job.variant,
    }


class PipelineManager(Enqueueing, InTurn, ItemReports):
    """Acts on one pipeline's state; built afresh for each pass (it holds nothing between passes)."""

    def __init__(self, layout: Layout, pipeline: Pipeline, state: PipelineState, backend: Backend,
                 source: ChangeSource, clock: Callable[[], float] = time.time) -> None:
        self.layout = layout
        self.pipeline = pipeline
        self.state = state
        self.backend = backend
        self.source = source
        self.clock = clock
        self._looked_up: dict[int, Change | None] = {}
        self._left: dict[str, str] = {}  # change key -> why it left the queue during this pass ("failed (...)")
        self._blameless: set[str] = set()  # keys of those that left this pass through no fault of their own

    @property
    def name(self) -> str:
        return self.pipeline.name

    # -- events ---------------------------------------------------------------------------------------------------
    def lookup(self, number: int) -> Change | None:
        if number not in self._looked_up:
            self._looked_up[number] = self.source.get_change(number)
        return self._looked_up[number]

    def remember(self, change: Change) -> None:
        """Use `change` as the latest snapshot of its change for this pass (the caller already queried it)."""
        self._looked_up[change.number] = change

    def apply_trigger(self, event: TriggerEvent) -> None:
        """Refresh the items of the event's change, then enqueue the change if the event triggers this pipeline."""
        if not event.change:
            enqueue_ref(self, event)  # a branch updated (post pipelines)
            return
        latest = self.lookup(event.change)
        if latest is None:
            return
        for item in self.state.items_for_change(event.change):
            fresh = item.change.refreshed(latest)
            if fresh != item.change:
                # A vote that changes nothing the queue loop looks at (whether the change may stay, what it
                # needs) is saved with the item, but costs no walk over the queue.
                relevant = fresh.needs != item.change.needs or self._unmet(fresh) != self._unmet(item.change)
                item.change = fresh
                self.state.touch(item, settle=relevant)
        taker = superseded_by(self.layout, self.pipeline, event, latest)
        if taker:
            for item in self.state.items_for_change(event.change):
                if item.live and item.id in self.state.items:
                    log.info("%s leaves %s for %s, which supercedes it", item.label(self.name), self.name, taker)
                    self._remove_queue_of(item)
            return
        if not pipeline_triggered(self.pipeline, event, latest):
            return
        if self.state.find(latest.key):
            log.info("[%s %s] already in the pipeline; %s ignored", self.name, latest.key, event.type)
            return
        reason = unmet_requirements(self.pipeline, latest)
        if reason:
            log.debug("[%s %s] not enqueued: %s", self.name, latest.key, reason)
            return
        self.enqueue(latest, refusal_key=event.id)

    def apply_merge_result(self, result: MergeResult) -> bool:
        item = self.state.items.get(result.item)
        if item is None or item.merge_id != result.id:
            return False
        if result.ok:
            item.merge_state, item.repo_state = MergeState.OK, result.repo_state
            if item.change.is_tag and not tag_jobs(self, item, result.containing_branches):
                self._remove_queue_of(item)  # a ref item: nothing is reported
        elif result.conflict:
            item.merge_state, item.merge_message = MergeState.CONFLICT, result.message
            log.info("%s merge conflict: %s", item.label(self.name), result.message)
        else:
            item.merge_attempts += 1
            log.warning("%s merger error (%d): %s", item.label(self.name), item.merge_attempts, result.message)
            if item.merge_attempts >= MERGE_ATTEMPTS:
                item.merge_state = MergeState.CONFLICT
                item.merge_message = f"The merger failed {item.merge_attempts} times: {result.message}"
            else:
                item.merge_state, item.merge_id = MergeState.NONE, ""
        self.state.touch(item)
        return True

    def apply_build_result(self, result: BuildResult) -> bool:
        item = self.state.items.get(result.item)
        build = item.builds.get(result.job) if item else None
        if item is None or build is None or build.id != result.id or build.finished:
            return False
        outcome, message = result.result, result.message
        if outcome in RETRYABLE:
            job = self._job(item, result.job)
            if job and build.attempt < job.attempts:
                log.info("%s %s: %s on attempt %d, retrying", item.label(self.name), result.job, outcome,
                         build.attempt)
                self._record_build(item, build, result, outcome, result.message, final=False)
                self._request_build(item, result.job, build.attempt + 1, self._position(item),
                                    avoid=_provider_of(result))
                return True
            message = f"{outcome} on {build.attempt} attempts" + (f": {message}" if message else "")
            outcome = RETRY_LIMIT
        build.result, build.message, build.log_url = outcome, message, result.log_url
        build.node, build.start_time, build.end_time = dict(result.node), result.start_time, result.end_time
        build.failure_class = INFRASTRUCTURE if outcome == RETRY_LIMIT else result.failure_class
        build.summary, build.signatures = result.summary, [dict(s) for s in result.signatures]
        self._record_build(item, build, result, outcome, message, final=True)
        log.info("%s %s: %s", item.label(self.name), result.job, outcome)
        self.state.touch(item)
        return True

    # -- the queue loop -------------------------------------------------------------------------------------------
    def process(self) -> None:
        """One pass over every queue; nothing when nothing the loop looks at changed since its last pass."""
        progress = self.backend.progress() if hasattr(self.backend, "progress") else -1
        if self.state.settled and not (self.state.changed or self.state.removed) and progress == self.state.progress \
                and self.state.layout is self.layout:
            return
        self.state.walks += 1
        if self.state.layout is not self.layout:
            self._relayout()
        ranks = self._project_ranks()
        for queue in list(self.state.queues.values()):
            if self.pipeline.dependent:
                self._process_dependent(queue)
            elif self.in_turn:
                self._process_in_turn(queue)
            else:
                self._process_independent(queue, ranks.get(queue.name, 0))
            if queue.dynamic and not queue.items:
                del self.state.queues[queue.name]
                self.state.changed = True
        # What the walk itself changed needs no second walk: it waits for results, events or report outcomes.
        self.state.settled, self.state.progress, self.state.layout = True, progress, self.layout

    def _relayout(self) -> None:
        """A new layout (or the first pass after loading the state): each live item runs the jobs this layout gives
        it, as Zuul freezes an item's jobs again on reconfiguration. Builds of jobs it no longer has are cancelled
        and their results forgotten; jobs it gained are requested by this pass; an item left with no job leaves the
        pipeline, saying why. Items with a result reported already keep theirs. A queue that had no window and now
        has one starts at its initial size (and one that has none now keeps none)."""
        for queue in self.state.queues.values() if self.pipeline.dependent else ():
            initial = self._window_config(queue).initial
            size = queue.window if initial and queue.window else initial
            if size != queue.window:
                log.info("[%s] queue %s: the layout's window is %s now", self.name, queue.name, size or "no limit")
                queue.window, self.state.changed = size, True
        for item in list(self.state.items.values()):
            if not item.live or any(kind not in UNRESULTED for kind in item.reported):
                continue
            project = self.layout.projects.get(item.change.project)
            jobs = (list(project.jobs_on_branch(self.name, item.change.branch, self.layout.jobs, item.change.files,
                                                item.change.containing_branches)) if project else [])
            if jobs == item.jobs:
                continue
            for job in set(item.jobs) - set(jobs):
                build = item.builds.pop(job, None)
                if build is not None and not build.finished:
                    self.backend.cancel_build(build.id)
            for job in [job for job, build in item.builds.items() if build.result == SKIPPED]:
                del item.builds[job]  # what it depends on changed: decided again with this layout
            log.info("%s: the layout changed its jobs from %s to %s", item.label(self.name),
                     ", ".join(item.jobs) or "none", ", ".join(jobs) or "none")
            item.jobs = jobs
            self.state.touch(item)
            self.state.changed = True
            if not jobs:
                self._dequeue(item, f"the layout no longer runs any job for {item.change.project} in {self.name}",
                              "other")

    def _process_dependent(self, queue: ChangeQueue) -> None:
        nnfi: Item | None = None  # the nearest non-failing item ahead
        ahead: dict[str, Item] = {}
        position = 0
        merging = ""  # the success report asked for the item ahead, while every item from the head succeeds
        held: set[str] = set()  # keys of items that wait, untested, for a failing change they need to be reported
        for item in self.state.queue_items(queue):
            reason, kind, blameless = self._why_leave(item, ahead)
            if reason:
                self._dequeue(item, reason, kind, blameless)
                continue
            base = [nnfi.id, nnfi.gen] if nnfi else None
            if any(key in held or ahead[key].failing for key in item.change.needs if key in ahead):
                # As Zuul: it fails with what it needs, untested, and leaves once that one is reported (a failure
                # ahead of the needed change may yet clear it); those behind are not built on it.
                if item.ahead != base or item.merge_state or item.builds:
                    self._reset(item, base)
                held.add(item.key)
                ahead[item.key] = item
                position += 1
                continue
            if item.ahead != base:
                self._reset(item, base)
            if not queue.window or position < queue.window:
                self._advance(item, nnfi, position)
            if position == 0 and item.complete and self._report_head(item, queue):
                continue  # it left; the next item is the head now
            succeeding = item.complete and item.live and not item.failing
            if position == 0:
                merging = f"{item.id}:success" if succeeding and "success" in item.reported else ""
            elif merging and succeeding:
                # Its merge follows the one ahead's without a pass between them (order stays the queue's).
                merging = self._report_early(item, merging)
            else:
                merging = ""
            if not item.failing:
                nnfi = item
            ahead[item.key] = item
            position += 1

    def _project_ranks(self) -> dict[str, int]:
        """An independent pipeline's queues -> how many queues before each hold a live change of the same project:
        where its builds' node requests stand (Zuul's relative priority: a change's place among its project's
        changes in the pipeline, so that one project's many changes do not hold up another's, and a promoted
        change's queue, moved to the front, comes first). Empty for the other managers (their queue position)."""
        ranks: dict[str, int] = {}
        if self.pipeline.dependent or self.in_turn:
            return ranks
        seen: dict[str, int] = {}
        for queue in self.state.queues.values():
            live = self.state.items.get(queue.items[-1]) if queue.items else None
            if live is not None and live.live:
                ranks[queue.name] = seen.get(live.change.project, 0)
                seen[live.change.project] = ranks[queue.name] + 1
        return ranks

    def _process_independent(self, queue: ChangeQueue, rank: int = 0) -> None:
        for item in self.state.queue_items(queue)[:-1]:
            if item.live:  # queued by another manager of this pipeline (a layout changed it): tested on its own
                self._process_independent(self._alone(item))
        items = self.state.queue_items(queue)
        live = items[-1] if items else None
        if live is None or not live.live:
            for item in items:
                self._remove(item, merged=False)
            return
        reason = unmet_requirements(self.pipeline, live.change, staying=True)
        if reason:
            self._dequeue(live, reason, requirement_kind(live.change))
            for item in items[:-1]:
                self._remove(item, merged=False)
            return
        prev: Item | None = None
        for position, item in enumerate(items):
            base = [prev.id, prev.gen] if prev else None
            if item.ahead != base:
                self._reset(item, base)
            if item.merge_state == MergeState.CONFLICT and item is not live:
                live.merge_state = MergeState.CONFLICT
                live.merge_message = f"Change {item.key}, which this change needs: {item.merge_message}"
                live.merge_attempts = item.merge_attempts  # the merger's failure on it is no more the change's fault
                self.state.touch(live)
                break
            self._advance(item, prev, rank + position)
            prev = item
        if live.complete and self._report_complete(live) is not None:
            for item in items:
                if item.id in self.state.items:
                    self._remove(item, merged=False)

    def _alone(self, item: Item) -> ChangeQueue:
        """Move a live item into a queue of its own, as an independent pipeline tests each change (the queue loop
        then resets what it did on the state of the items that were ahead of it)."""
        self.state.queues[item.queue].items.remove(item.id)
        queue = ChangeQueue(name=f"{item.change.project} {item.key}", dynamic=True)
        queue.items.append(item.id)
        self.state.queues[queue.name] = queue
        item.queue = queue.name
        self.state.touch(item)
        self.state.changed = True
        return queue

    def _why_leave(self, item: Item, ahead: dict[str, Item]) -> tuple[str, str, bool]:
        """Why the item must leave the queue, the kind of reason (for its report), and whether the cause is nobody's
        fault (a needed change lost to the infrastructure); ("", "", False) if it stays."""
        reason = self._unmet(item.change)
        if reason:
            return reason, requirement_kind(item.change), False
        for key in item.change.needs:
            if key not in ahead:
                why = self._left.get(key, "is no longer ahead of it in the queue")
                return f"it depends on change {key}, which {why}", DEPENDENCY, key in self._blameless
        return "", "", False

    @staticmethod
    def _failure(item: Item) -> str:
        """How a failing item failed, as the end of a sentence: its merge conflict or its failed voting jobs (a
        failing item without a conflict has at least one)."""
        if item.merge_state == MergeState.CONFLICT:
            if item.merger_failed:  # not a conflict: the merger itself kept failing
                return f"could not be tested because the merger failed ({item.merge_message})"
            return "could not be merged onto the changes ahead of it"
        jobs = ", ".join(f"{b.job}: {b.result}" for b in item.builds.values() if b.failed or item.all_skipped)
        if item.infrastructure_failure:
            return f"could not be tested because of an infrastructure failure ({jobs})"
        return f"failed ({jobs})"

    def _unmet(self, change: Change) -> str:
        """unmet_requirements to stay, remembered on the snapshot (a refresh replaces the snapshot, and the answer)."""
        memo = change.__dict__.setdefault("_unmet", {})
        known = memo.get(self.name)
        if known is None or known[0] is not self.pipeline:  # a layout reload brings new requirements
            known = memo[self.name] = (self.pipeline, unmet_requirements(self.pipeline, change, staying=True))
        return known[1]

    def _reset(self, item: Item, base: list | None) -> None:
        if item.merge_state or item.builds:
            log.info("%s reset: the state ahead of it changed", item.label(self.name))
        self._cancel_builds(item)
        if "success" in item.reported and hasattr(self.backend, "withdraw_report"):
            self.backend.withdraw_report(f"{item.id}:success")  # asked early: not to be sent for what it was
        item.builds = {}
        item.merge_id, item.merge_state, item.merge_message, item.merge_attempts = "", MergeState.NONE, "", 0
        item.repo_state, item.changes = None, ""
        item.gen += 1
        item.ahead = base
        self.state.touch(item)

    def _advance(self, item: Item, ahead: Item | None, position: int) -> None:
        """Request what the item needs next: its merge once the state ahead is merged, then its builds."""
        if item.merge_state == MergeState.NONE:
            # Asked as soon as the item ahead asked for its own: the merger bases it on that one's result.
            if ahead is None or ahead.merged or (ahead.merge_state == MergeState.PENDING and ahead.merge_id):
                self._request_merge(item, ahead)
        elif item.merged and item.live:
            # Started once its speculative merge succeeded (a conflict is reported once, without a start).
            # Asked on each pass until its outcome is known here; after a restart the ledger settles it.
            if item.id not in self.state.started and self._report(item, "start") is not None:
                self.state.started.add(item.id)
            ready, skipped = next_jobs(item, lambda name: self._job(item, name))  # jobs wait for those they depend on
            for job, why in skipped.items():
                self._skip_build(item, job, why)
            for job in ready:
                self._request_build(item, job, 1, position)

    def _request_merge(self, item: Item, ahead: Item | None) -> None:
        project = self.layout.projects.get(item.change.project)
        mode = project.merge_mode if project else "merge-resolve"
        extra = sorted({p for name in item.jobs if (job := self._job(item, name))
                        for p in job.required_projects} - {item.change.project})
        request = MergeRequest(
            changes=[item.change.spec(self.source.git_url(item.change.project), mode).to_dict()],
            base=ahead.repo_state if ahead and ahead.merged else None,
            after=ahead.merge_id if ahead and not ahead.merged else "",
            projects=[{"project": p, "branch": item.change.branch, "url": self.source.git_url(p)} for p in extra],
            pipeline=self.name,
            item=item.id,
            created=self.clock(),
        )
        item.merge_id, item.merge_state = request.id, MergeState.PENDING
        item.changes = f"{ahead.changes} {item.key}" if ahead else item.key
        self.state.touch(item)
        self.backend.request_merge(request)

    def _request_build(self, item: Item, job_name: str, attempt: int, position: int,
                       avoid: list[str] | None = None) -> None:
        job = self._job(item, job_name) or Job(job_name)
        build = Build(job=job_name, attempt=attempt, voting=job.voting)
        project = self.layout.projects.get(item.change.project)
        spec = item.change.spec(self.source.git_url(item.change.project),
                                project.merge_mode if project else "merge-resolve")
        request = BuildRequest(
            id=build.id, pipeline=self.name, item=item.id, job=job_name, params=job_params(job),
            change=spec.to_dict(), changes=item.changes, repo_state=item.repo_state, label=job.label or "",
            nodeset=job.nodeset.to_dict() if job.nodeset else {},
            priority=[self.pipeline.priority, position], attempt=attempt, attempts=job.attempts,
            avoid_providers=list(avoid or []), created=self.clock(),
        )
        item.builds[job_name] = build
        self.state.touch(item)
        self.backend.request_build(request)

    def _skip_build(self, item: Item, job_name: str, why: str) -> None:
        """Record a job that will not run (for its dependencies) as SKIPPED: reported and kept in the history."""
        defined = self._job(item, job_name)
        build = item.builds[job_name] = skipped_build(job_name, why, defined.voting if defined else True)
        log.info("%s %s: %s (%s)", item.label(self.name), job_name, SKIPPED, why)
        self._record_build(item, build, BuildResult(id=build.id, pipeline=self.name, item=item.id, job=job_name,
                                                    result=SKIPPED, message=why), SKIPPED, why, final=True)
        self.state.touch(item)

    def _job(self, item: Item, name: str) -> Job | None:
        """The job `name` as it runs for the item (its branch variants and its project pipeline's override)."""
        return self.layout.job_for(item.change.project, self.name, name, item.change.branch,
                                   item.change.containing_branches)

    def _position(self, item: Item) -> int:
        queue = self.state.queues.get(item.queue)
        position = queue.items.index(item.id) if queue and item.id in queue.items else 0
        return position + self._project_ranks().get(item.queue, 0)

    # -- operator requests ----------------------------------------------------------------------------------------
    def manage(self, request: ManagementRequest) -> str:
        """Apply an enqueue, dequeue or promote request; returns "" or an error for the operator, and raises
        NotFound when the request names a change that is not there."""
        action = request.action
        if action is Action.ENQUEUE:
            return enqueue_ref_request(self, request) if request.ref else self._manage_enqueue(request.change)
        if action is Action.DEQUEUE:
            for item in ref_items(self.state, self.name, request) if request.ref else [self.state.find(request.change)]:
                if item is None:
                    raise NotFound(f"no change {request.change} in {self.name}")
                queue = self.state.queues.get(item.queue)
                if queue and queue.dynamic and not self.in_turn:  # an independent item, with the changes it needs
                    self._remove_queue_of(item)
                else:
                    self._dequeue(item, "an operator dequeued it", OPERATOR)
            return ""
        if action is Action.PROMOTE:
            return promote(self, list(request.changes))
        return f"{action.value} is not an action for pipeline {self.name}"

    def _manage_enqueue(self, key: str) -> str:
        try:
            number, patchset = (int(x) for x in key.split(","))
        except ValueError:
            return f'"{key}" is not a change (expected NUMBER,PATCHSET such as 5,1)'
        change = self.lookup(number)
        if change is None:
            raise NotFound(f"no change {number} in Gerrit")
        if change.patchset != patchset:
            return f"change {key} is not current (the current patch set is {change.key})"
        if self.state.find(key):
            return f"change {key} is already in {self.name}"
        reason = unmet_requirements(self.pipeline, change)
        if reason:
            return f"change {key} cannot enter {self.name}: {reason}"
        return self.enqueue(change, refusal_key=f"manage:{self.clock()}")
