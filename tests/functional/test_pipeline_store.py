"""The pipeline store on a real ZooKeeper: a pass is seen whole or not at all, however large it is."""

from __future__ import annotations

import pytest

from gatekeeper.models.pipeline import Change, ChangeQueue, Item, PipelineState
from gatekeeper.models.store import TX_BYTES, PipelineStore, delete_pipeline
from gatekeeper.zk import paths

ITEM_BYTES = 40_000  # 20 items make a pass well above one transaction (512 KiB)


def big_state(count: int, text: str) -> PipelineState:
    state = PipelineState("gate")
    queue = ChangeQueue(name="integrated", window=20)
    state.queues[queue.name] = queue
    for n in range(1, count + 1):
        change = Change(project="org/a", number=n, patchset=1, subject=f"{text} {n} " + "x" * ITEM_BYTES)
        item = Item(change=change, queue=queue.name, jobs=["unit"])
        state.items[item.id] = item
        queue.items.append(item.id)
        state.dirty.add(item.id)
    state.changed = True
    return state


def snapshot(zk) -> dict[int, str]:
    """Change number -> its subject's first words, as a reader that knows nothing cached sees the pipeline."""
    state = PipelineStore(zk.client, "gate").load(None)
    queued = [state.items[i] for q in state.queues.values() for i in q.items]
    assert len(queued) == len(state.items), "the summary names items that cannot be read"
    return {item.change.number: " ".join(item.change.subject.split(" ")[:2]) for item in queued}


def rewrite(state: PipelineState, text: str) -> None:
    """A pass touching every item (and taking the first one out): far more than one transaction holds."""
    first = state.queues["integrated"].items.pop(0)
    state.items.pop(first)
    state.removed.add(first)
    for item in state.items.values():
        item.change.subject = f"{text} {item.change.number} " + "y" * ITEM_BYTES
        state.touch(item)
    state.changed = True


class Crash(Exception):
    pass


def test_a_large_pass_is_saved_and_read_back_whole(zk):
    state = big_state(20, "first")
    assert len(b"".join(i.to_bytes() for i in state.items.values())) > TX_BYTES
    writer = PipelineStore(zk.client, "gate")
    assert writer.save(state)
    assert snapshot(zk) == {n: f"first {n}" for n in range(1, 21)}
    rewrite(state, "second")
    writer.save(state)
    assert snapshot(zk) == {n: f"second {n}" for n in range(2, 21)}
    # The znodes the second pass replaced are gone: only those the summary names are left.
    stored = zk.client.get_children(paths.pipeline_items("gate"))
    assert len(stored) == 19
    # A small pass after a large one writes in place, in one transaction.
    item = state.items[state.queues["integrated"].items[0]]
    item.change.subject = "third 2"
    state.touch(item)
    transactions = []
    real = zk.client.transaction
    zk.client.transaction = lambda: transactions.append(1) or real()
    try:
        writer.save(state)
    finally:
        zk.client.transaction = real
    assert transactions == [1]
    assert snapshot(zk)[2] == "third 2"


@pytest.mark.parametrize("step, seen", [(("stage", 2), "first"), (("switch", 1), "first"), (("clean", 1), "second")])
def test_a_large_pass_interrupted_at_any_step_leaves_readers_a_whole_state(zk, step, seen):
    writer = PipelineStore(zk.client, "gate")
    state = big_state(20, "first")
    writer.save(state)
    before = snapshot(zk)
    calls: dict[str, int] = {}
    observed = []

    def fault(name: str) -> None:
        observed.append((name, snapshot(zk)))  # what a reader sees between the steps
        calls[name] = calls.get(name, 0) + 1
        if (name, calls[name]) == step:
            raise Crash(name)

    writer.fault = fault
    rewrite(state, "second")
    with pytest.raises(Crash):
        writer.save(state)
    after = {n: f"second {n}" for n in range(2, 21)}
    # Before the switch readers see the previous pass whole, after it the new one whole: never a mix.
    assert observed and all(seen_then == (after if name == "clean" else before) for name, seen_then in observed)
    assert snapshot(zk) == (before if seen == "first" else after)
    # The next scheduler takes the pipeline up from what is stored, and its own large pass cleans up.
    fresh = PipelineStore(zk.client, "gate")
    state = fresh.load(None)
    rewrite(state, "third")
    fresh.save(state)
    numbers = range(3, 21) if seen == "second" else range(2, 21)
    assert snapshot(zk) == {n: f"third {n}" for n in numbers}
    assert len(zk.client.get_children(paths.pipeline_items("gate"))) == len(numbers)


def test_a_per_branch_queue_keeps_the_layout_queue_it_stands_for(zk):
    """A per-branch queue ("integrated (stable/2024.1)") is read back naming its layout queue, whose window
    settings it follows after a reload or on another scheduler."""
    state = PipelineState("gate")
    queue = ChangeQueue(name="integrated (stable/2024.1)", window=5, layout_queue="integrated")
    state.queues[queue.name] = queue
    item = Item(change=Change(project="org/a", branch="stable/2024.1", number=1, patchset=1), queue=queue.name)
    state.items[item.id] = item
    queue.items.append(item.id)
    state.dirty.add(item.id)
    state.changed = True
    assert PipelineStore(zk.client, "gate").save(state)
    loaded = PipelineStore(zk.client, "gate").load(None)
    assert loaded.queues["integrated (stable/2024.1)"].layout_queue == "integrated"
    assert loaded.queues["integrated (stable/2024.1)"].window == 5


def test_a_removed_pipeline_is_not_brought_back_by_a_reader(zk):
    """A pipeline's state is removed whole (a layout no longer has it); a store that only reads, as a scheduler
    still on the older layout does, writes nothing back: its first save would, and starts it anew."""
    assert PipelineStore(zk.client, "gate").save(big_state(2, "first"))
    reported = f"{paths.pipeline_reported('gate')}/some-item:start"
    zk.client.create(reported, b"{}", makepath=True)
    assert delete_pipeline(zk.client, "gate")
    assert zk.client.exists(paths.pipeline("gate")) is None
    reader = PipelineStore(zk.client, "gate")
    state = reader.load(None)
    assert (state.version, state.items) == (-1, {})
    assert zk.client.exists(paths.pipeline("gate")) is None
    assert not delete_pipeline(zk.client, "gate")
    assert reader.save(big_state(1, "again"))
    assert snapshot(zk) == {1: "again 1"}


def test_a_reader_caching_a_removed_pipeline_sees_the_one_added_again_even_at_the_same_version(zk):
    """A pipeline removed and added again starts its summary's version afresh: a reader (the status page, another
    scheduler) that cached the old one at version N must not take the new one for it when it reaches N too."""
    old = big_state(3, "old")
    store = PipelineStore(zk.client, "gate")
    store.save(old)
    old.changed = True
    store.save(old)
    reader = PipelineStore(zk.client, "gate")
    cached = reader.load(None)
    assert cached.version == 1
    assert delete_pipeline(zk.client, "gate")
    new = big_state(2, "new")
    store.save(new)
    new.changed = True
    store.save(new)
    seen = reader.load(cached)
    assert seen.version == 1
    assert {item.change.subject.split(" ")[0] for item in seen.items.values()} == {"new"}
    assert len(seen.items) == 2
