"""The merger service over a real ZooKeeper: requests in, speculative repo states out, with real git."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.child_process import start_tied
from gatekeeper.gitrepo import GitRepo, reproduce, ssh_command
from gatekeeper.merger.service import MergerService
from gatekeeper.merger.upstream import Upstream, UpstreamChange
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.components import list_components
from gatekeeper.zk.merges import (
    ChangeSpec,
    MergeRequest,
    MergeResult,
    MergeState,
    RepoState,
    pending_merges,
    read_merge_result,
    submit_merge,
)
from tests.helpers import wait_for


def wait_result(zk: ZKClient, ident: str) -> MergeResult:
    return wait_for(lambda: read_merge_result(zk, ident), what=f"the result of merge {ident}")


def item_request(changes: list[UpstreamChange | ChangeSpec], ahead: MergeResult | None = None,
                 mode: str = "merge-resolve") -> MergeRequest:
    specs = [c if isinstance(c, ChangeSpec) else c.spec(mode) for c in changes]
    return MergeRequest(changes=[s.to_dict() for s in specs], base=ahead.repo_state if ahead else None,
                        pipeline="gate", item=" ".join(s.key for s in specs), created=time.time())


def merge_chain(zk: ZKClient, items: list[list[UpstreamChange]], mode: str = "merge-resolve") -> list[MergeResult]:
    """Gate `items` the way the scheduler does: each request's base is the result of the item ahead."""
    results: list[MergeResult] = []
    ahead = None
    for changes in items:
        result = wait_result(zk, submit_merge(zk, item_request(changes, ahead, mode)))
        results.append(result)
        if result.ok:
            ahead = result
    return results


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    up = Upstream(str(tmp_path / "upstream"))
    up.create_project("org/nova", {"a.txt": "".join(f"{i}\n" for i in range(20))})
    up.create_project("org/glance", {"g.txt": "g\n"})
    return up


@pytest.fixture
def start_merger(tmp_path, zk_factory) -> Iterator[Callable[..., MergerService]]:
    services: list[MergerService] = []

    def start(**kwargs: object) -> MergerService:
        service = MergerService(zk_factory(), str(tmp_path / f"merger-{len(services)}"), **kwargs)
        services.append(service)
        return service.start()

    yield start
    for service in services:
        service.stop()


def test_request_round_trip_gives_a_repo_state_and_removes_the_request(zk, upstream, start_merger):
    service = start_merger()
    change = upstream.change("org/nova", {"n.txt": "n\n"})
    ident = submit_merge(zk, item_request([change]))
    result = wait_result(zk, ident)
    assert result.ok, result.message
    assert (result.item, result.merger, result.merges) == (change.key, service.ident, 1)
    assert RepoState.from_dict(result.repo_state).commit("org/nova", "master") == change.commit
    assert pending_merges(zk) == []
    assert [c.ident for c in list_components(zk, "merger")] == [service.ident]


def test_incremental_chain_of_five_items_costs_five_merges(zk, upstream, start_merger):
    service = start_merger()
    items = [[upstream.change("org/nova", {f"f{i}.txt": f"{i}\n"})] for i in range(5)]
    results = merge_chain(zk, items)
    assert all(r.ok for r in results), [r.message for r in results]
    assert [r.merges for r in results] == [1, 1, 1, 1, 1]
    assert service.counters.merges == 5
    assert len(RepoState.from_dict(results[-1].repo_state).steps) == 5


def test_conflict_in_the_middle_is_reported_with_change_and_project(zk, upstream, start_merger):
    start_merger()
    first = upstream.change("org/nova", {"a.txt": "mine\n"})
    clash = upstream.change("org/nova", {"a.txt": "yours\n"})
    third = upstream.change("org/glance", {"g2.txt": "g2\n"})
    one, two, three = merge_chain(zk, [[first], [clash], [third]])
    assert one.ok and three.ok
    assert (two.ok, two.conflict, two.conflict_change, two.conflict_project) == (False, True, clash.key, "org/nova")
    assert clash.key in two.message and "org/nova" in two.message
    assert (one.state, two.state) == (MergeState.OK, MergeState.CONFLICT) and two.state == "conflict"
    state = RepoState.from_dict(three.repo_state)  # the item behind is merged on a state without the conflict
    assert [s["change_commit"] for s in state.steps] == [first.commit, third.commit]


def test_a_change_the_merger_cannot_fetch_is_a_merger_error_not_a_conflict(zk, upstream, start_merger):
    start_merger()
    missing = ChangeSpec(project="org/nova", number=99, patchset=1, ref="refs/changes/99/99/1",
                         commit="0" * 40, url=upstream.url("org/nova"))
    result = wait_result(zk, submit_merge(zk, item_request([missing])))
    assert (result.ok, result.conflict) == (False, False) and result.message.startswith("merger error")
    assert result.state is MergeState.NONE  # the scheduler asks for the merge again


def test_cherry_pick_state_is_reproduced_on_a_fresh_host_with_identical_shas(tmp_path, zk, upstream, start_merger):
    start_merger()
    items = [
        [upstream.change("org/nova", {"one.txt": "1\n"})],
        [upstream.change("org/nova", {"two.txt": "2\n"})],
        [upstream.change("org/glance", {"three.txt": "3\n"})],
    ]
    results = merge_chain(zk, items, mode="cherry-pick")
    assert all(r.ok for r in results), [r.message for r in results]
    state = RepoState.from_dict(results[-1].repo_state)
    paths_ = reproduce(state, str(tmp_path / "executor-host"), upstream.url)
    for project, branches in state.branches.items():
        assert GitRepo(paths_[project] + "/.git").rev_parse("HEAD") == branches["master"]
    nova = GitRepo(paths_["org/nova"] + "/.git")
    assert len(nova.commit_info(state.commit("org/nova", "master")).parents) == 1  # picked, not merged


def test_two_mergers_share_the_requests_without_double_work(zk, upstream, start_merger):
    first, second = start_merger(workers=2), start_merger(workers=2)
    # Each merger's merges wait until the other has begun one: a merger holds at most its two workers' requests,
    # so whichever sees the requests first, the other must take its share meanwhile (and nobody merges a request
    # twice).
    began = {first.ident: threading.Event(), second.ident: threading.Event()}

    def waiting_for_the_other(service: MergerService):
        merge, other = service.merger.merge, second if service is first else first

        def wrapped(request):
            began[service.ident].set()
            assert began[other.ident].wait(30), "the other merger took no request while this one was busy"
            return merge(request)
        return wrapped

    first.merger.merge, second.merger.merge = waiting_for_the_other(first), waiting_for_the_other(second)
    changes = [upstream.change(p, {f"x{i}.txt": f"{i}\n"}) for i in range(4) for p in ("org/nova", "org/glance")]
    idents = [submit_merge(zk, item_request([c])) for c in changes]
    results = [wait_result(zk, ident) for ident in idents]
    assert all(r.ok for r in results), [r.message for r in results]
    assert first.counters.merges + second.counters.merges == len(changes)
    # each result names the merger that did it, and each merger did as many as it counted: both took a share
    by_merger = Counter(r.merger for r in results)
    assert by_merger == {first.ident: first.counters.merges, second.ident: second.counters.merges}
    assert first.counters.merges > 0 and second.counters.merges > 0


def test_request_locked_by_a_killed_merger_is_taken_over(zk, zk_factory, upstream, start_merger):
    dead = zk_factory()
    dead.client.Lock(paths.lock("merge", "abandoned"), "killed-merger").acquire()
    change = upstream.change("org/nova", {"n.txt": "n\n"})
    request = item_request([change])
    request.id = "abandoned"
    submit_merge(zk, request)
    service = start_merger()
    wait_for(lambda: service.lock_waits, what="the merger to find the request locked")
    assert read_merge_result(zk, "abandoned", delete=False) is None
    dead.stop()  # the killed merger's session closes and its lock with it
    result = wait_result(zk, "abandoned")
    assert result.ok and result.merger == service.ident


def test_merges_changes_fetched_over_ssh_from_the_gerrit_simulator(tmp_path, zk, start_merger):
    from gatekeeper.sim.gerrit import GerritSimulator

    sim = GerritSimulator(str(tmp_path / "gerrit")).start()
    try:
        account = sim.add_account("merger", key_dir=str(tmp_path / "keys"))
        sim.create_project("org/app")
        one = sim.create_change("org/app", "One", files={"one.txt": "1\n"})
        two = sim.create_change("org/app", "Two", files={"two.txt": "2\n"})
        ssh = ssh_command(account.key_file, str(tmp_path / "known_hosts"))
        start_merger(ssh=ssh)

        def spec(change) -> ChangeSpec:
            ps = change.current
            return ChangeSpec(project="org/app", number=change.number, patchset=ps.number, ref=ps.ref,
                              commit=ps.revision, url=sim.ssh_url("org/app", "merger"))

        first = wait_result(zk, submit_merge(zk, item_request([spec(one)])))
        second = wait_result(zk, submit_merge(zk, item_request([spec(two)], first)))
        assert first.ok and second.ok, (first.message, second.message)
        state = RepoState.from_dict(second.repo_state)
        workspace = reproduce(state, str(tmp_path / "ws"), lambda p: sim.ssh_url(p, "merger"), ssh=ssh)
        assert GitRepo(workspace["org/app"] + "/.git").rev_parse("HEAD") == state.commit("org/app", "master")
    finally:
        sim.stop()


def test_gatekeeper_merger_command_serves_requests_until_terminated(tmp_path, zk, zk_server, zk_chroot, upstream):
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(
        f"zookeeper:\n  hosts: '{zk_server.hosts}'\n  chroot: '{zk_chroot}'\n"
        f"merger:\n  git-dir: '{tmp_path / 'cli-cache'}'\n  workers: 1\n"
    )
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "merger", "-c", str(config)],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        change = upstream.change("org/nova", {"cli.txt": "c\n"})
        result = wait_result(zk, submit_merge(zk, item_request([change])))
        assert result.ok, result.message
        assert [c.ident for c in list_components(zk, "merger")] == [result.merger]
        proc.terminate()
        assert proc.wait(30) == 0, proc.stdout.read().decode()
        assert list_components(zk, "merger") == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class DroppedConnection:
    """A merger's ZooKeeper client whose calls fail with ConnectionLoss from its next transaction on (the one
    that completes a merge), or its next call of `at`, until `restore()`, as when its server goes away while its
    session lives on: the session, its ephemeral lock nodes and its watches stay, only the calls fail. With
    `applied`, ZooKeeper applies that transaction and only its answer is lost."""

    CALLS = ("exists", "get", "get_children", "create", "delete", "set", "transaction")

    def __init__(self, client, applied: bool = False, at: str = "transaction") -> None:
        self.applied, self.at = applied, at
        self.down = False
        self.failures = 0
        self.transactions = 0  # sent to ZooKeeper while it answered, or the one that brought the outage
        self.committed = 0  # applied by ZooKeeper (every operation of it succeeded)
        self._lock = threading.Lock()
        for name in self.CALLS:
            setattr(client, name, self._wrap(name, getattr(client, name)))

    def restore(self) -> None:
        with self._lock:
            self.down = False

    def _fail(self) -> None:
        from kazoo.exceptions import ConnectionLoss

        with self._lock:
            self.failures += 1
        raise ConnectionLoss()

    def _wrap(self, name: str, real: Callable):
        def call(*args, **kwargs):
            if name == self.at != "transaction":
                with self._lock:
                    self.down, self.at = True, ""  # from this call on
            if self.down:
                self._fail()
            if name != "transaction":
                return real(*args, **kwargs)
            tx = real(*args, **kwargs)
            commit = tx.commit

            def committed():
                with self._lock:
                    self.transactions += 1
                    first = self.transactions == 1 and self.at == "transaction"
                    self.down = self.down or first
                if self.down and not (first and self.applied):
                    self._fail()
                results = commit()
                with self._lock:
                    self.committed += not any(isinstance(r, Exception) for r in results)
                if self.down:
                    self._fail()
                return results
            tx.commit = committed
            return tx
        return call


def held_merge_locks(zk: ZKClient) -> list[str]:
    lock_dir = paths.lock("merge")
    return [f"{ident}/{node}" for ident in (zk.client.get_children(lock_dir) if zk.client.exists(lock_dir) else [])
            for node in zk.client.get_children(f"{lock_dir}/{ident}")]


def test_a_merge_whose_completion_zookeeper_dropped_is_completed_when_it_answers_not_left_locked(
        zk, upstream, start_merger):
    """The connection drops as the merger writes a result (as when a ZooKeeper member dies): its session, and so
    its claim, lives on. The request must not sit locked for ever; the result is written once it answers."""
    service = start_merger()
    outage = DroppedConnection(service.zk.client)
    ident = submit_merge(zk, item_request([upstream.change("org/nova", {"n.txt": "n\n"})]))
    wait_for(lambda: outage.failures >= 2, what="the merger to meet the dropped connection")
    assert pending_merges(zk) == [ident] and read_merge_result(zk, ident, delete=False) is None
    assert [h.split("/")[0] for h in held_merge_locks(zk)] == [ident]  # the claim is kept meanwhile
    outage.restore()
    result = wait_result(zk, ident)
    assert result.ok and result.merger == service.ident, result.message
    # the result is there for others before the merger has its answer: wait for that answer, then count
    wait_for(lambda: outage.committed, what="the merger to see its transaction answered")
    assert (outage.committed, service.counters.merges) == (1, 1)  # written once, merged once
    assert pending_merges(zk) == []
    wait_for(lambda: not held_merge_locks(zk), what="the merger to let go of the request's lock")


def test_a_merge_whose_completion_answer_zookeeper_dropped_is_not_written_twice(zk, upstream, start_merger):
    """ZooKeeper applied the transaction that publishes the result, and the answer was lost: when it answers
    again the merger finds its request done, and neither merges nor writes it again."""
    service = start_merger()
    outage = DroppedConnection(service.zk.client, applied=True)
    ident = submit_merge(zk, item_request([upstream.change("org/nova", {"n.txt": "n\n"})]))
    wait_for(lambda: outage.failures >= 2, what="the merger to meet the dropped connection")
    outage.restore()
    result = wait_result(zk, ident)
    assert result.ok and result.merger == service.ident, result.message
    wait_for(lambda: not held_merge_locks(zk) and not service.kept_claims, what="the merger to be done with it")
    assert (outage.transactions, outage.committed, service.counters.merges) == (1, 1, 1)
    assert pending_merges(zk) == [] and read_merge_result(zk, ident) is None


def test_a_merge_kept_through_a_dropped_connection_is_let_go_when_the_session_was_lost(
        zk, zk_server, upstream, start_merger):
    """While the connection is down the server expires the merger's session, and its claim goes with it: the
    merger must not write a result under a lock it no longer holds; it takes the request afresh."""
    from kazoo.client import KazooClient

    service = start_merger()
    outage = DroppedConnection(service.zk.client)
    ident = submit_merge(zk, item_request([upstream.change("org/nova", {"n.txt": "n\n"})]))
    wait_for(lambda: outage.failures >= 2, what="the merger to meet the dropped connection")
    session_id, password = service.zk.client.client_id
    intruder = KazooClient(hosts=zk_server.hosts, client_id=(session_id, password))
    intruder.start()
    intruder.stop()
    intruder.close()
    wait_for(lambda: not held_merge_locks(zk), what="the expired session's lock to go")
    outage.restore()
    result = wait_result(zk, ident)
    assert result.ok and result.merger == service.ident, result.message
    wait_for(lambda: outage.committed, what="the merger to see its transaction answered")
    assert outage.committed == 1 and pending_merges(zk) == []
    wait_for(lambda: not held_merge_locks(zk), what="the merger to let go of the request's lock")


def test_a_merge_whose_request_zookeeper_dropped_right_after_the_claim_is_kept_and_done_when_it_answers(
        zk, upstream, start_merger):
    """The first look at the request once claimed fails: the claim is kept (nobody else could take it), and the
    request is merged and completed once ZooKeeper answers."""
    service = start_merger()
    outage = DroppedConnection(service.zk.client, at="exists")
    ident = submit_merge(zk, item_request([upstream.change("org/nova", {"n.txt": "n\n"})]))
    wait_for(lambda: outage.failures >= 2, what="the merger to meet the dropped connection")
    assert service.kept_claims == [ident] and [h.split("/")[0] for h in held_merge_locks(zk)] == [ident]
    assert service.counters.merges == 0
    outage.restore()
    result = wait_result(zk, ident)
    assert result.ok and result.merger == service.ident, result.message
    wait_for(lambda: outage.committed, what="the merger to see its transaction answered")
    assert (outage.committed, service.counters.merges) == (1, 1)
    wait_for(lambda: not held_merge_locks(zk) and not service.kept_claims, what="the merger to be done with it")
    assert pending_merges(zk) == []
