"""An operator's promote (Zuul's `zuul-client promote`): the changes named go first.

In a queue whose items wait on each other in order (dependent and serial pipelines) the promoted changes move to its
head, in the order given, and the queue loop restarts whatever now has another state ahead of it. In every pipeline
the queues holding them move to the front of the pipeline: they are processed first, and their builds' node
requests come before those of the other items of their project (an independent pipeline's changes have a queue
each, so there promote reorders queues only and restarts nothing, as Zuul documents; a supercedent queue's waiting
item is the newest of its branch and stays behind the running one, which is never cancelled for it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gatekeeper.models.pipeline import Item
from gatekeeper.scheduler.inturn import SERIAL
from gatekeeper.zk.management import NotFound

if TYPE_CHECKING:
    from gatekeeper.scheduler.manager import PipelineManager

log = logging.getLogger("gatekeeper.scheduler.promote")


def promote(manager: PipelineManager, keys: list[str]) -> str:
    """Apply a promote of the changes `keys` ("N,P"); returns "" or why not (for the operator), and raises
    NotFound for a change that is not in the pipeline."""
    keys = list(dict.fromkeys(keys))  # a change named twice is promoted once (a queue holds each item once)
    if not keys:
        return "promote needs at least one change"
    state = manager.state
    by_queue: dict[str, list[Item]] = {}  # in the order the changes were given
    for key in keys:
        item = state.find(key)
        if item is None:
            raise NotFound(f"no change {key} in {manager.name}")
        by_queue.setdefault(item.queue, []).append(item)
    orders: dict[str, list[str]] = {}
    if manager.pipeline.dependent or manager.pipeline.manager == SERIAL:
        for name, items in by_queue.items():
            promoted = [i.id for i in items]
            order = promoted + [i for i in state.queues[name].items if i not in promoted]
            reason = _needs_behind(manager, order)
            if reason:
                return reason
            orders[name] = order
    for name, order in orders.items():
        state.queues[name].items = order
    first = {name: state.queues[name] for name in by_queue}
    state.queues = {**first, **{name: q for name, q in state.queues.items() if name not in first}}
    state.changed = True
    log.info("[%s] promoted %s (queue%s %s)", manager.name, " ".join(keys), "s" if len(first) > 1 else "",
             ", ".join(first))
    return ""


def _needs_behind(manager: PipelineManager, order: list[str]) -> str:
    """Why the queue cannot take this order: a change ahead of one it needs ("" when it can)."""
    items = [manager.state.items[i] for i in order if i in manager.state.items]
    position = {item.key: n for n, item in enumerate(items)}
    for item in items:
        for need in item.change.needs:
            if need in position and position[need] > position[item.key]:
                return f"change {item.key} needs {need}, which would be behind it"
    return ""
