"""The generic job-request queue (gatekeeper.zk.jobs) on a real ZooKeeper: submit, claim, complete, cancel, result,
claimers racing, and a dead claimer found by a watch on its lock, not by polling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.jobs import ClaimWatch, JobKind, JobQueue
from gatekeeper.zk.record import Record
from tests.helpers import CuttableLink, wait_for

# The executor looked for requests whose executor had died every 2 s; a watch must do better than that.
FORMER_POLL_INTERVAL = 2.0


@dataclass
class Chore(Record):
    id: str = ""
    what: str = ""
    priority: list[int] = field(default_factory=lambda: [0])

    @property
    def sort_key(self) -> tuple:
        return tuple(self.priority)


@dataclass
class ChoreDone(Record):
    id: str = ""
    outcome: str = ""
    worker: str = ""


CHORES = JobKind("chore", "/chores/requests", "/chores/results", Chore, ChoreDone)


def chores(zk: ZKClient) -> JobQueue[Chore, ChoreDone]:
    queue = JobQueue(zk, CHORES)
    queue.ensure_paths()
    return queue


class RequestLog:
    """Every request a kazoo client sends (its type's name), pings aside: what a watcher costs ZooKeeper."""

    def __init__(self, zk: ZKClient) -> None:
        self.sent: list[str] = []
        original = zk.client._call

        def call(request, async_object):
            self.sent.append(type(request).__name__)
            return original(request, async_object)

        zk.client._call = call


def test_a_request_is_claimed_completed_and_its_result_read_once(zk, zk_factory):
    submitter, worker = chores(zk), chores(zk_factory())
    published: list[list[str]] = []
    submitter.watch_results(published.append)
    chore = Chore(id="c1", what="sweep")
    assert submitter.submit(chore) == "c1" and worker.pending() == ["c1"]
    lock, request = worker.claim("c1", "worker-1")
    assert request == chore and worker.holders("c1")
    assert worker.complete(ChoreDone(id="c1", outcome="swept", worker="worker-1"))
    worker.release("c1", lock)
    assert worker.pending() == [] and not worker.holders("c1") and submitter.finished() == ["c1"]
    wait_for(lambda: ["c1"] in published, what="the results watch to see the result")
    assert submitter.result("c1") == ChoreDone(id="c1", outcome="swept", worker="worker-1")
    assert submitter.result("c1") is None and submitter.finished() == []
    # a completed request is gone: nobody can claim it, or complete it a second time
    assert worker.claim("c1", "worker-2") is None
    assert not worker.complete(ChoreDone(id="c1", outcome="again"))
    assert submitter.finished() == []


def test_completing_with_the_claim_releases_it_in_the_same_transaction(zk, zk_factory):
    submitter, worker_zk = chores(zk), zk_factory()
    worker = chores(worker_zk)
    chore = Chore(id="c2")
    submitter.submit(chore)  # the request with its lock's parent, in one transaction (as the scheduler writes it)
    assert zk.client.exists(CHORES.lock_path("c2"))
    sent = RequestLog(worker_zk).sent
    lock, request = worker.claim("c2", "worker-1")
    assert sent == ["Create", "GetChildren", "GetData"]  # lock, check it is ours, read the request
    assert worker.complete(ChoreDone(id="c2", outcome="done"), lock)
    worker.release("c2", lock)  # nothing left to do
    assert sent[3:] == ["Transaction"]
    assert not lock.is_acquired and not zk.client.exists(CHORES.lock_path("c2"))
    assert worker.pending() == [] and submitter.result("c2").outcome == "done"


def test_completing_with_a_claim_that_is_looked_at_or_lost_still_publishes_once(zk, zk_factory):
    queue = chores(zk)
    for ident in ("looked-at", "lost"):
        queue.submit(Chore(id=ident))
    lock, _ = queue.claim("looked-at", "worker-1")
    contender = zk.client.create(CHORES.lock_path("looked-at") + "/contender__lock__", ephemeral=True,
                                 sequence=True)
    assert queue.complete(ChoreDone(id="looked-at"), lock)
    assert zk.client.get_children(CHORES.lock_path("looked-at")) == [contender.rsplit("/", 1)[1]]
    lost, _ = queue.claim("lost", "worker-1")
    zk.client.delete(f"{lost.path}/{lost.node}")  # as a session's end would
    assert queue.complete(ChoreDone(id="lost"), lost)
    assert queue.finished() == ["looked-at", "lost"] and queue.pending() == []
    assert not queue.complete(ChoreDone(id="lost"), lost)


def test_a_cancelled_request_cannot_be_claimed_or_completed_and_its_worker_hears_of_it(zk, zk_factory):
    submitter, worker = chores(zk), chores(zk_factory())
    waiting, running = Chore(id="waiting"), Chore(id="running")
    submitter.submit(waiting)
    submitter.submit(running)
    lock, _ = worker.claim("running", "worker-1")
    cancelled = threading.Event()
    worker.watch_request("running", cancelled.set, lambda: True)
    assert submitter.cancel("waiting") and submitter.cancel("running")
    assert not submitter.cancel("running")  # already withdrawn
    assert worker.claim("waiting", "worker-1") is None
    assert cancelled.wait(10) and not worker.exists("running")
    assert not worker.complete(ChoreDone(id="running", outcome="too late"))
    worker.release("running", lock)
    assert submitter.finished() == [] and worker.pending() == []


def test_requests_carry_their_priority(zk):
    queue = chores(zk)
    for ident, priority in (("late", [2]), ("first", [0]), ("second", [1])):
        queue.submit(Chore(id=ident, priority=priority))
    requests = sorted((queue.read(i) for i in queue.pending()), key=lambda c: c.sort_key)
    assert [c.id for c in requests] == ["first", "second", "late"]


def test_two_claimers_racing_for_each_request_one_wins_and_one_result_is_published(zk, zk_factory):
    submitter = chores(zk)
    workers = [chores(zk_factory()), chores(zk_factory())]
    idents = [f"c{n}" for n in range(8)]
    for ident in idents:
        submitter.submit(Chore(id=ident))
    wins: dict[str, list[str]] = {i: [] for i in idents}
    delivered: dict[str, list[str]] = {i: [] for i in idents}
    start = threading.Barrier(len(workers))

    def work(queue: JobQueue, name: str) -> None:
        start.wait()
        for ident in idents:
            claimed = queue.claim(ident, name)
            if claimed is None:
                continue
            wins[ident].append(name)
            if queue.complete(ChoreDone(id=ident, worker=name)):
                delivered[ident].append(name)
            queue.release(ident, claimed[0])

    threads = [threading.Thread(target=work, args=(q, f"w{n}")) for n, q in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(len(delivered[i]) == 1 for i in idents), delivered
    assert all(delivered[i][0] in wins[i] for i in idents)
    assert submitter.finished() == sorted(idents) and submitter.pending() == []
    assert all(submitter.result(i).worker == delivered[i][0] for i in idents)


def test_a_second_completion_of_the_same_request_publishes_nothing(zk, zk_factory):
    # two claimers can both have run it: the first whose session died and the one that took over
    queue = chores(zk)
    queue.submit(Chore(id="twice"))
    assert queue.complete(ChoreDone(id="twice", worker="taken-over"))
    assert not queue.complete(ChoreDone(id="twice", worker="the-dead-one"))
    assert queue.result("twice").worker == "taken-over"


def _watch_claimed(zk_factory: Callable[..., ZKClient], ident: str) -> tuple[ClaimWatch, RequestLog, list]:
    watcher_zk = zk_factory()
    queue = chores(watcher_zk)
    freed: list[tuple[str, float]] = []
    claims = ClaimWatch(queue, lambda i: freed.append((i, time.monotonic())))
    assert claims.watch(ident), "the request should be held by the other claimer"
    assert claims.watching() == [ident]
    return claims, RequestLog(watcher_zk), freed


def test_a_claimer_whose_session_ends_is_detected_by_a_watch_at_once(zk, zk_factory):
    submitter = chores(zk)
    submitter.submit(Chore(id="orphan"))
    doomed_zk = zk_factory()
    assert chores(doomed_zk).claim("orphan", "doomed") is not None
    claims, log, freed = _watch_claimed(zk_factory, "orphan")
    assert log.sent == [] and freed == []
    ended = time.monotonic()
    doomed_zk.stop()  # its session closes: its ephemeral lock node goes with it
    wait_for(lambda: freed, what="the watch to report the request free")
    assert freed[0][0] == "orphan" and freed[0][1] - ended < FORMER_POLL_INTERVAL
    # what the watch cost: one look at the request and one at its lock, then it stopped watching
    assert log.sent == ["Exists", "GetChildren"] and claims.watching() == []
    assert chores(zk).claim("orphan", "survivor") is not None  # and it can be claimed again
    claims.close()


CLAIMER = """
import sys, time
from gatekeeper.zk.client import ConnectionEvent, ZKClient
from gatekeeper.zk.jobs import JobQueue
from tests.functional.test_job_queue import CHORES
zk = ZKClient(sys.argv[1], chroot=sys.argv[2], timeout=4.0).start()
assert JobQueue(zk, CHORES).claim(sys.argv[3], "claimer") is not None
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_sigkilled_claimer_is_detected_by_the_lock_watch_without_polling(zk, zk_factory, zk_server, zk_chroot):
    submitter = chores(zk)
    submitter.submit(Chore(id="killed"))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen([sys.executable, "-c", CLAIMER, zk_server.hosts, zk_chroot, "killed"],
                            stdout=subprocess.PIPE, cwd=root)
    try:
        assert proc.stdout.readline().decode().strip() == "claimed"
        claims, log, freed = _watch_claimed(zk_factory, "killed")
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # the session outlives the process until ZooKeeper expires it (its 4 s timeout, twice the former poll
        # interval): all that time the watcher sends nothing; then the lock node's deletion fires the watch
        wait_for(lambda: freed, what="the watch to report the killed claimer's request free")
        assert freed[0][1] - killed > FORMER_POLL_INTERVAL and log.sent == ["Exists", "GetChildren"]
        assert chores(zk).claim("killed", "survivor") is not None
        claims.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_request_completed_by_its_claimer_is_not_reported_free(zk, zk_factory):
    submitter = chores(zk)
    submitter.submit(Chore(id="done"))
    worker = chores(zk_factory())
    lock, _ = worker.claim("done", "worker")
    claims, log, freed = _watch_claimed(zk_factory, "done")
    assert worker.complete(ChoreDone(id="done"))
    worker.release("done", lock)
    wait_for(lambda: claims.watching() == [], what="the watcher to stop watching")
    assert freed == [] and log.sent == ["Exists"]
    claims.close()


def test_a_request_handed_back_is_reported_free(zk, zk_factory):
    submitter = chores(zk)
    submitter.submit(Chore(id="back"))
    worker = chores(zk_factory())
    lock, _ = worker.claim("back", "worker")
    claims, _, freed = _watch_claimed(zk_factory, "back")
    worker.release("back", lock)
    wait_for(lambda: freed, what="the watch to report the handed-back request free")
    assert [i for i, _ in freed] == ["back"]
    claims.close()


def test_the_lock_watch_is_set_again_after_the_watchers_connection_drops(zk, zk_factory, zk_server, zk_chroot):
    submitter = chores(zk)
    submitter.submit(Chore(id="held"))
    doomed_zk = zk_factory()
    assert chores(doomed_zk).claim("held", "doomed") is not None
    link = CuttableLink(zk_server.hosts)
    watcher_zk = ZKClient(link.hosts, chroot=zk_chroot, timeout=10.0).start()
    try:
        events: list[ConnectionEvent] = []
        watcher_zk.add_listener(events.append)
        freed: list[str] = []
        claims = ClaimWatch(chores(watcher_zk), freed.append)
        assert claims.watch("held")
        sent = RequestLog(watcher_zk).sent
        link.cut()  # ZooKeeper forgets the connection's watches; the session lives on
        wait_for(lambda: ConnectionEvent.SUSPENDED in events, what="the watcher to notice the cut")
        link.restore()
        wait_for(lambda: ConnectionEvent.CONNECTED in events, what="the watcher to reconnect")
        wait_for(lambda: sent[-2:] == ["Exists", "GetChildren"], what="the lock to be watched again")
        assert freed == [] and claims.watching() == ["held"]
        doomed_zk.stop()
        wait_for(lambda: freed, what="the watch set again to report the request free")
        assert freed == ["held"]
        claims.close()
    finally:
        watcher_zk.stop()
        link.close()
