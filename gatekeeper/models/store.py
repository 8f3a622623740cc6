"""One pipeline's state in ZooKeeper: a summary znode, and a znode per item written only when the item changed.

A pass costs one read (the summary's version, to reuse the state this process already holds) and one
transaction (the changed items, the summary, and the merge and build requests the pass made), whatever the
queue's length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError, RolledBackError

from gatekeeper.models.pipeline import ChangeQueue, Item, PipelineState
from gatekeeper.zk import paths
from gatekeeper.zk.record import MAX_ZNODE_BYTES, decode, encode

log = logging.getLogger("gatekeeper.models.store")

TX_BYTES = MAX_ZNODE_BYTES // 2  # keep each transaction well under ZooKeeper's request limit

TxOp = Callable[[object], None]  # adds one operation to a kazoo TransactionRequest


class StateConflict(RuntimeError):
    """The state changed under us: another scheduler wrote it without holding the pipeline lock."""


class PipelineStore:
    def __init__(self, client: KazooClient, name: str) -> None:
        self.client = client
        self.name = name
        self.summary_path = paths.pipeline_state(name)
        client.ensure_path(paths.pipeline_items(name))

    def load(self, cached: PipelineState | None) -> PipelineState:
        """The current state; `cached` is reused as is when nobody wrote since, and item by item otherwise."""
        try:
            raw, stat = self.client.get(self.summary_path)
        except NoNodeError:
            return PipelineState(self.name)
        if cached is not None and cached.version == stat.version:
            return cached
        data = decode(raw) if raw else {}
        state = PipelineState(self.name, version=stat.version, cursors=dict(data.get("cursors", {})),
                              waiting={k: list(v) for k, v in data.get("waiting", {}).items()})
        for q in data.get("queues", []):
            queue = ChangeQueue.from_dict(q)
            state.queues[queue.name] = queue
        revs: dict[str, int] = data.get("revs", {})
        old = cached.items if cached else {}
        fetch = [i for i, rev in revs.items() if i not in old or old[i].rev != rev]
        pending = [(i, self.client.get_async(paths.pipeline_item(self.name, i))) for i in fetch]
        for ident in revs:
            if ident in old and ident not in fetch:
                state.items[ident] = old[ident]
        for ident, result in pending:
            try:
                raw_item, _ = result.get()
            except NoNodeError:
                log.error("[%s] item %s is in the summary but has no znode; dropping it", self.name, ident)
                continue
            state.items[ident] = Item.from_bytes(raw_item)
        state.stored = set(state.items)
        for queue in state.queues.values():
            queue.items = [i for i in queue.items if i in state.items]
        return state

    def save(self, state: PipelineState, extra: list[tuple[int, TxOp]] | None = None) -> bool:
        """Write what changed since the last save, with `extra` operations ((size, op)); False if nothing to do."""
        extra = extra or []
        if not (state.dirty or state.removed or state.changed or extra):
            return False
        ops: list[tuple[int, TxOp]] = []
        for ident in sorted(state.dirty):
            item = state.items.get(ident)
            if item is None:
                continue
            item.rev += 1
            raw = item.to_bytes()
            path = paths.pipeline_item(self.name, ident)
            if ident in state.stored:
                ops.append((len(raw), lambda tx, p=path, r=raw: tx.set_data(p, r)))
            else:
                ops.append((len(raw), lambda tx, p=path, r=raw: tx.create(p, r)))
        for ident in sorted(state.removed):
            if ident in state.stored:
                ops.append((64, lambda tx, p=paths.pipeline_item(self.name, ident): tx.delete(p)))
        ops.extend(extra)
        summary = encode(state.summary())
        version = state.version
        if version < 0:
            ops.append((len(summary), lambda tx: tx.create(self.summary_path, summary)))
        else:
            ops.append((len(summary), lambda tx: tx.set_data(self.summary_path, summary, version=version)))
        self._commit(ops)
        state.version = 0 if version < 0 else version + 1
        state.stored |= {i for i in state.dirty if i in state.items}
        state.stored -= state.removed
        state.dirty.clear()
        state.removed.clear()
        state.changed = False
        return True

    def _commit(self, ops: list[tuple[int, TxOp]]) -> None:
        """Commit in as few transactions as fit; the last one holds the summary, so readers see it last."""
        chunks: list[list[TxOp]] = [[]]
        size = 0
        for op_size, op in ops:
            if chunks[-1] and size + op_size > TX_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(op)
            size += op_size
        for chunk in chunks:
            tx = self.client.transaction()
            for op in chunk:
                op(tx)
            results = tx.commit()
            errors = [r for r in results if isinstance(r, Exception)]
            if errors:
                cause = next((e for e in errors if not isinstance(e, RolledBackError)), errors[0])
                raise StateConflict(f"pipeline {self.name}: saving its state failed: {cause!r}")


def create_op(path: str) -> tuple[int, TxOp]:
    return 64, lambda tx: tx.create(path, b"")


def delete_op(path: str) -> tuple[int, TxOp]:
    return 64, lambda tx: tx.delete(path)


def encode_op(path: str, data: dict) -> tuple[int, TxOp]:
    raw = encode(data)
    return len(raw), lambda tx: tx.create(path, raw)


def delete_all(client, paths_: list[str]) -> None:
    """Delete znodes in one transaction; one by one when some are already gone (another scheduler's work)."""
    if not paths_:
        return
    tx = client.transaction()
    for path in paths_:
        tx.delete(path)
    if not any(isinstance(r, Exception) for r in tx.commit()):
        return
    pending = [client.delete_async(p) for p in paths_]
    for p in pending:
        try:
            p.get()
        except NoNodeError:
            pass
