"""One pipeline's state in ZooKeeper: a summary znode, and a znode per item written only when the item changed.

A pass costs one read (the summary's version, to reuse the state this process already holds) and one
transaction (the changed items, the summary, and the merge and build requests the pass made), whatever the
queue's length.

A pass is applied whole or not at all, as readers see it.  The summary names each item's revision and znode;
readers follow it.  A pass too large for one transaction writes its changed items to fresh znodes first (which
no summary names yet), then switches the summary to them in one transaction with the pass's requests, and only
then removes the znodes they replace: a pass interrupted at any step leaves the previous state whole, and its
unnamed znodes are removed by the next large pass.
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
DELETE_BYTES = 64  # what one delete adds to a transaction, roughly

TxOp = Callable[[object], None]  # adds one operation to a kazoo TransactionRequest


class StateConflict(RuntimeError):
    """The state changed under us: another scheduler wrote it without holding the pipeline lock."""


class PipelineStore:
    """Loads and saves one pipeline's state.  `fault`, when set, is called with the name of each step of a large
    save before it is taken ("stage", "switch", "clean"); raising there stops the save as a crash would."""

    def __init__(self, client: KazooClient, name: str, fault: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.name = name
        self.fault = fault
        self.summary_path = paths.pipeline_state(name)

    def _item_path(self, state: PipelineState, ident: str) -> str:
        return paths.pipeline_item(self.name, state.nodes.get(ident, ident))

    def load(self, cached: PipelineState | None) -> PipelineState:
        """The current state; `cached` is reused as is when nobody wrote since, and item by item otherwise."""
        try:
            raw, stat = self.client.get(self.summary_path)
        except NoNodeError:
            return PipelineState(self.name)
        if cached is not None and cached.version == stat.version and cached.created in (stat.czxid, 0):
            cached.created = stat.czxid  # (0: a state this process created by its first save)
            return cached
        data = decode(raw) if raw else {}
        state = PipelineState(self.name, version=stat.version, created=stat.czxid,
                              cursors=dict(data.get("cursors", {})),
                              waiting={k: list(v) for k, v in data.get("waiting", {}).items()},
                              failures=int(data.get("failures", 0)), disabled=str(data.get("disabled", "")))
        for q in data.get("queues", []):
            queue = ChangeQueue.from_dict(q)
            state.queues[queue.name] = queue
        revs: dict[str, int] = data.get("revs", {})
        state.nodes = {i: n for i, n in data.get("nodes", {}).items() if i in revs}
        old = cached.items if cached and cached.created in (stat.czxid, 0) else {}
        fetch = [i for i, rev in revs.items() if i not in old or old[i].rev != rev]
        pending = [(i, self.client.get_async(self._item_path(state, i))) for i in fetch]
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
        """Write what changed since the last save, with `extra` operations ((size, op)); False if nothing to do.
        Readers see all of it or none of it."""
        extra = extra or []
        if not (state.dirty or state.removed or state.changed or extra):
            return False
        if state.version < 0:  # its first save: nothing is created before (not even by a reader, or to be removed)
            self.client.ensure_path(paths.pipeline_items(self.name))
        written: list[tuple[str, bytes]] = []
        for ident in sorted(state.dirty):
            item = state.items.get(ident)
            if item is None:
                continue
            item.rev += 1
            written.append((ident, item.to_bytes()))
        removed = [self._item_path(state, i) for i in sorted(state.removed) if i in state.stored]
        size = sum(len(raw) for _, raw in written) + DELETE_BYTES * len(removed) + sum(s for s, _ in extra)
        version = state.version
        summary = encode(state.summary())
        if size + len(summary) <= TX_BYTES:
            ops: list[TxOp] = []
            for ident, raw in written:
                path = self._item_path(state, ident)
                if ident in state.stored:
                    ops.append(lambda tx, p=path, r=raw: tx.set_data(p, r))
                else:
                    ops.append(lambda tx, p=path, r=raw: tx.create(p, r))
            ops += [lambda tx, p=path: tx.delete(p) for path in removed]
            ops += [op for _, op in extra]
            ops.append(self._summary_op(state, summary, version))
            self._commit(ops)
        else:
            self._save_staged(state, written, removed, extra, version)
        for ident in state.removed:
            state.nodes.pop(ident, None)
        state.version = 0 if version < 0 else version + 1
        state.stored |= {i for i in state.dirty if i in state.items}
        state.stored -= state.removed
        state.dirty.clear()
        state.removed.clear()
        state.changed = False
        return True

    def _save_staged(self, state: PipelineState, written: list[tuple[str, bytes]], removed: list[str],
                     extra: list[tuple[int, TxOp]], version: int) -> None:
        """A pass larger than one transaction: stage, switch, clean (see the module's docstring)."""
        items_path = paths.pipeline_items(self.name)
        named = {self._item_path(state, i) for i in state.stored}
        unnamed = [f"{items_path}/{child}" for child in self.client.get_children(items_path)
                   if f"{items_path}/{child}" not in named]
        if unnamed:  # left by an interrupted large pass: nobody reads them
            log.info("[%s] removing %d item znodes an interrupted save left", self.name, len(unnamed))
            self._commit_chunked([(DELETE_BYTES, lambda tx, p=p: tx.delete(p)) for p in unnamed])
        nodes = dict(state.nodes)
        replaced = []
        staged: list[tuple[int, TxOp]] = []
        for ident, raw in written:
            item = state.items[ident]
            node = f"{ident}.{item.rev}"
            if ident in state.stored:
                replaced.append(self._item_path(state, ident))
            nodes[ident] = node
            path = paths.pipeline_item(self.name, node)
            staged.append((len(raw), lambda tx, p=path, r=raw: tx.create(p, r)))
        self._step("stage")
        self._commit_chunked(staged, between=lambda: self._step("stage"))
        previous = state.nodes
        state.nodes = nodes
        summary = encode(state.summary())
        final: list[tuple[int, TxOp]] = [(DELETE_BYTES, lambda tx, p=p: tx.delete(p)) for p in removed]
        final.append((len(summary), self._summary_op(state, summary, version)))
        room = TX_BYTES - sum(s for s, _ in final)
        # The pass's requests go with the switch; any that do not fit go just before it (a request the state does
        # not name yet is harmless: its result is dropped if the switch never happens).
        ahead: list[tuple[int, TxOp]] = []
        for op_size, op in reversed(extra):
            if op_size <= room:
                final.insert(0, (op_size, op))
                room -= op_size
            else:
                ahead.insert(0, (op_size, op))
        try:
            self._commit_chunked(ahead)
            self._step("switch")
            self._commit([op for _, op in final])
        except BaseException:
            state.nodes = previous
            raise
        self._step("clean")
        try:
            self._commit_chunked([(DELETE_BYTES, lambda tx, p=p: tx.delete(p)) for p in replaced])
        except StateConflict:
            log.warning("[%s] removing replaced item znodes failed; the next large save removes them", self.name)

    def _step(self, name: str) -> None:
        if self.fault is not None:
            self.fault(name)

    def _summary_op(self, state: PipelineState, summary: bytes, version: int) -> TxOp:
        if version < 0:
            return lambda tx: tx.create(self.summary_path, summary)
        return lambda tx: tx.set_data(self.summary_path, summary, version=version)

    def _commit_chunked(self, ops: list[tuple[int, TxOp]], between: Callable[[], None] | None = None) -> None:
        """Commit `ops` in as few transactions as fit, calling `between` between two of them."""
        chunks: list[list[TxOp]] = [[]]
        size = 0
        for op_size, op in ops:
            if chunks[-1] and size + op_size > TX_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(op)
            size += op_size
        for n, chunk in enumerate(c for c in chunks if c):
            if n and between is not None:
                between()
            self._commit(chunk)

    def _commit(self, ops: list[TxOp]) -> None:
        tx = self.client.transaction()
        for op in ops:
            op(tx)
        results = tx.commit()
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            cause = next((e for e in errors if not isinstance(e, RolledBackError)), errors[0])
            raise StateConflict(f"pipeline {self.name}: saving its state failed: {cause!r}")


def delete_pipeline(client: KazooClient, name: str) -> bool:
    """Remove a pipeline's whole state (summary, items, report ledger), for a pipeline the layout no longer has;
    its lock is the caller's to hold. The summary goes first, so a reader meanwhile finds no state rather than
    a summary naming items already gone. False when there was none."""
    if client.exists(paths.pipeline(name)) is None:
        return False
    try:
        client.delete(paths.pipeline_state(name))
    except NoNodeError:
        pass
    client.delete(paths.pipeline(name), recursive=True)  # (kazoo's recursive delete takes a node gone meanwhile)
    return True


def create_op(path: str) -> tuple[int, TxOp]:
    return 64, lambda tx: tx.create(path, b"")


def delete_op(path: str) -> tuple[int, TxOp]:
    return 64, lambda tx: tx.delete(path)


def raw_create_op(path: str, raw: bytes) -> tuple[int, TxOp]:
    return len(raw) + 64, lambda tx: tx.create(path, raw)


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
