"""Zuul's `serial` and `supercedent` pipeline managers: queues whose items run one at a time, in turn.

A serial pipeline's projects share queues as in a dependent pipeline (a project's `queue`, per branch where the
queue says so), but only the head of a queue runs; the others wait, and nothing is merged speculatively: each item is
tested on its branch as it is when its turn comes. A failure is reported on its own item only: those behind are
neither reset nor dequeued, and the next one takes its turn (deployment pipelines, where every change must run in
order).

A supercedent pipeline has one queue per project and branch (a branch's changes and its updates share one, as in
Zuul; a tag's items queue apart, by the tag). Its head runs and is never cancelled for a newer item; at most one
item waits behind it: a newer one replaces it, removed without a report, as Zuul's removeItem does (post and promote
pipelines, where only the newest merge's jobs are worth running).

Neither enqueues what a change needs ahead of it (as in Zuul: each item is the change alone, on its branch).

A mixin of `PipelineManager` (gatekeeper.scheduler.manager): it acts on the same pass's state and backend.
"""

from __future__ import annotations

import logging

from gatekeeper.config.layout import Project
from gatekeeper.models.pipeline import Change, ChangeQueue
from gatekeeper.scheduler.triggers import requirement_kind

log = logging.getLogger("gatekeeper.scheduler.manager")

SERIAL = "serial"
SUPERCEDENT = "supercedent"
IN_TURN = frozenset({SERIAL, SUPERCEDENT})


class InTurn:
    """Enqueueing and the queue loop of serial and supercedent pipelines, for PipelineManager."""

    @property
    def in_turn(self) -> bool:
        """Whether this pipeline's queues run one item at a time (serial and supercedent pipelines)."""
        return self.pipeline.manager in IN_TURN

    def _enqueue_in_turn(self, change: Change, project: Project) -> None:
        if self.pipeline.manager == SERIAL:
            queue = self._shared_queue(project.queue or project.name, change.branch)
            queue.window = 1
            self._add(queue, change, live=True)
            return
        name = f"{change.project} {change.branch}"
        queue = self.state.queues.get(name)
        if queue is None:
            queue = self.state.queues[name] = ChangeQueue(name=name, window=1, dynamic=True)
        newest = self._add(queue, change, live=True)
        for waiting in self.state.queue_items(queue)[1:-1]:  # never the head: it is running
            log.info("%s superseded by %s, which replaces it in queue %s: removed without a report",
                     waiting.label(self.name), newest.key, name)
            self._remove(waiting, merged=False)

    def _process_in_turn(self, queue: ChangeQueue) -> None:
        """The head runs on its branch as it is, and is reported and leaves when complete; then the next one's turn
        comes in the same pass. A change that may no longer stay leaves wherever it is, alone."""
        head = None
        for item in self.state.queue_items(queue):
            reason = self._unmet(item.change)
            if reason:
                self._dequeue(item, reason, requirement_kind(item.change))
                continue
            # What another manager of this pipeline left (a layout changed it): a change that only rode along for
            # the one that needs it leaves; one tested on a speculative state, or out of turn, starts again.
            if not item.live:
                self._remove(item, merged=False)
                continue
            if item.ahead is not None or (head is not None and (item.merge_state or item.builds)):
                self._reset(item, None)
            head = head or item
        if queue.window != 1:  # one at a time, whatever the queue's window was under another manager
            queue.window, self.state.changed = 1, True
        while items := self.state.queue_items(queue):
            head = items[0]
            self._advance(head, None, 0)
            if not head.complete:
                return
            outcome = self._report_complete(head)
            if outcome is None:
                return  # its report is on its way: it keeps the queue until it is settled
            succeeded = outcome.ok and not head.failing
            if not succeeded:
                self._left[head.key] = self._failure(head) if outcome.ok else "could not be submitted"
            self._remove(head, merged=succeeded)
