"""The cloud simulator's pool of spare hosts, with stand-in hosts: kept at its target, refilled only while nothing
boots, trimmed and closed without leaving a host behind."""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import traceback

import pytest

from gatekeeper.sim.openstack.spares import SparePool
from tests.helpers import wait_for


class Hosts:
    """Stand-in hosts: numbers, started and ended, with a record of which are alive."""

    def __init__(self) -> None:
        self.numbers = itertools.count(1)
        self.alive: set[int] = set()
        self.starts = 0
        self.lock = threading.Lock()

    def start(self) -> int:
        with self.lock:
            n = next(self.numbers)
            self.alive.add(n)
            self.starts += 1
            return n

    def end(self, n: int) -> None:
        with self.lock:
            self.alive.remove(n)


@pytest.fixture
def hosts() -> Hosts:
    return Hosts()


@pytest.fixture
def pool(hosts: Hosts):
    p: SparePool[int] = SparePool(hosts.start, hosts.end, settle=0)
    yield p
    p.close()
    assert hosts.alive == set()  # the spares it held (a test ends the ones it took, as a server's delete does)


def refill_stacks() -> str:
    """Where the pool's refill threads are (for a failure's message): seen once in CI, a refill that never looked."""
    frames = sys._current_frames()
    return "; ".join(f"{t.name} (alive {t.is_alive()}): "
                     + " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(traceback.extract_stack(frames[t.ident])))
                     for t in threading.enumerate() if t.name.startswith("spare-hosts") and t.ident in frames) \
        or "no refill thread"


def test_the_pool_fills_to_its_target_and_a_taken_spare_is_replaced(pool, hosts):
    pool.set_target(3)
    assert pool.wait_ready(30)
    first = pool.hosts()
    assert len(first) == 3 and pool.status().to_dict() == {"target": 3, "ready": 3, "starting": 0}
    taken = pool.take()
    assert taken == first[0]
    wait_for(lambda: pool.status().ready == 3, 30, "the taken spare replaced")
    assert taken not in pool.hosts() and hosts.starts == 4
    hosts.end(taken)


def test_an_empty_pool_gives_no_host(pool):
    assert pool.take() is None


def test_no_spare_starts_while_a_boot_is_in_progress(pool, hosts):
    """The refill looks at the busy checks before every start: while one says a boot is in progress, it has looked
    several times and started nothing; once the boot is over it refills."""
    booting = threading.Event()
    booting.set()
    looks = threading.Semaphore(0)

    def boot_in_progress() -> bool:
        looks.release()
        return booting.is_set()

    pool.set_target(2)
    assert pool.wait_ready(30)  # filled before the check is added: nothing was booting then
    pool.add_busy_check(boot_in_progress)
    started = hosts.starts
    taken = pool.take()
    assert taken is not None
    for n in range(3):
        assert looks.acquire(timeout=30), f"the refill looked {n} times for a boot in progress: {refill_stacks()}"
    assert hosts.starts == started and pool.status().ready == 1
    booting.clear()
    wait_for(lambda: pool.status().ready == 2, 30, "the refill once the boot is over")
    hosts.end(taken)


@pytest.mark.parametrize("meanwhile", ["a boot begins", "a busy check is added", "a cloud's server goes into BUILD"])
def test_a_refill_held_up_after_finding_nothing_booting_looks_again_before_it_starts(hosts, monkeypatch, meanwhile):
    """A refill thread held up between busy() answering "nothing boots" and its start (as on a loaded machine) starts
    nothing on that stale answer when a boot began, a busy check came or a check's answer changed meanwhile: it asks
    again (seen in CI as a refill that, having started a spare on a stale answer, never looked at the check
    again)."""
    pool: SparePool[int] = SparePool(hosts.start, hosts.end, settle=0, workers=1)
    held, go, asked_again = threading.Event(), threading.Event(), threading.Semaphore(0)
    busy = pool.busy

    def held_up_the_first_time() -> bool:
        answer = busy()
        if not held.is_set():
            held.set()
            go.wait(30)
        else:
            asked_again.release()
        return answer

    monkeypatch.setattr(pool, "busy", held_up_the_first_time)
    booting = threading.Event()
    if meanwhile == "a cloud's server goes into BUILD":  # the cloud's check is there from the start: nothing boots
        pool.add_busy_check(booting.is_set)
    else:
        booting.set()
    try:
        pool.set_target(1)
        assert held.wait(30) and not busy()  # it was told nothing boots, and is held before it starts a host
        with contextlib.ExitStack() as stack:
            if meanwhile == "a boot begins":
                stack.enter_context(pool.booting())
            elif meanwhile == "a busy check is added":
                pool.add_busy_check(booting.is_set)
            else:
                booting.set()
                pool.changed()  # as the cloud does once the server is in BUILD
            go.set()
            assert asked_again.acquire(timeout=30), f"the refill did not ask again: {refill_stacks()}"
            assert hosts.starts == 0
            booting.clear()
        assert pool.wait_ready(30) and hosts.starts == 1
    finally:
        go.set()
        pool.close()
    assert hosts.alive == set()


def test_a_boot_of_the_backend_holds_the_refill_until_it_ends(pool, hosts):
    pool.set_target(1)
    assert pool.wait_ready(30)
    with pool.booting():
        assert pool.busy()
        taken = pool.take()
        assert taken is not None and pool.status().ready == 0
    assert not pool.busy()
    wait_for(lambda: pool.status().ready == 1, 30, "the refill after the boot")
    hosts.end(taken)


def test_a_lower_target_ends_the_spares_beyond_it(pool, hosts):
    pool.set_target(3)
    assert pool.wait_ready(30)
    keep = pool.hosts()[:1]
    assert pool.set_target(1).ready == 1
    assert pool.hosts() == keep and hosts.alive == set(keep)
    pool.set_target(0)
    assert hosts.alive == set()
    with pytest.raises(ValueError, match="not between 0 and"):
        pool.set_target(-1)


def test_close_ends_the_ready_spares_and_the_one_being_started(hosts):
    """A spare still starting when the pool closes is ended once it is up: no host outlives the pool."""
    release = threading.Event()
    starting = threading.Event()

    def slow_start() -> int:
        n = hosts.start()
        if n == 2:
            starting.set()
            release.wait(30)
        return n

    pool: SparePool[int] = SparePool(slow_start, hosts.end, settle=0, workers=1)
    pool.set_target(2)
    assert starting.wait(30)
    closer = threading.Thread(target=pool.close)
    closer.start()
    release.set()
    closer.join(30)
    assert not closer.is_alive()
    assert hosts.starts == 2 and hosts.alive == set()
    assert not any(t.name.startswith(pool.name) for t in threading.enumerate())


def test_a_start_that_fails_is_tried_again(hosts, monkeypatch):
    failures = iter([RuntimeError("bridge full")])

    def start() -> int:
        for error in failures:
            raise error
        return hosts.start()

    monkeypatch.setattr(SparePool, "RETRY_AFTER", 0.01)
    pool: SparePool[int] = SparePool(start, hosts.end, settle=0, workers=1)
    try:
        pool.set_target(1)
        assert pool.wait_ready(30)
    finally:
        pool.close()
    assert hosts.alive == set()


def test_a_pool_filled_once_replaces_no_spare_a_boot_takes(pool, hosts):
    """refill False (the launcher benchmark's burst): nothing starts while the timed boots run, however long they
    take, and the target goes down with each spare taken."""
    pool.set_target(3, refill=False)
    assert pool.wait_ready(10)
    taken = [pool.take(), pool.take()]
    assert pool.status().target == 1 and pool.status().ready == 1
    pool.set_target(1, refill=False)  # (a poke that wakes the refill threads: still nothing to start)
    assert hosts.starts == 3 and pool.status().starting == 0
    for n in taken:
        hosts.end(n)


def test_a_count_beyond_what_a_bridge_holds_is_refused(pool):
    with pytest.raises(ValueError, match="between 0 and 250"):
        pool.set_target(SparePool.MAX + 1)
    assert pool.status().target == 0
