"""A queue's merges asked for at once, each after the one ahead (MergeRequest.after), as the scheduler asks for
them: the merger bases each on the result of the one ahead, fetches a batch's changes together, and answers an
error, never a conflict, for a merge whose base failed or is gone."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import pytest

from gatekeeper.merger.service import MergerService
from gatekeeper.merger.upstream import Upstream, UpstreamChange
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.merges import MergeRequest, MergeResult, RepoState, read_merge_result
from tests.helpers import wait_for


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    up = Upstream(str(tmp_path / "upstream"))
    up.create_project("org/nova", {"a.txt": "".join(f"{i}\n" for i in range(20))})
    return up


@pytest.fixture
def start_merger(tmp_path, zk_factory) -> Iterator[Callable[..., MergerService]]:
    services: list[MergerService] = []

    def start() -> MergerService:
        service = MergerService(zk_factory(), str(tmp_path / f"merger-{len(services)}"))
        services.append(service)
        return service.start()

    yield start
    for service in services:
        service.stop()


def chained(changes: list[UpstreamChange], first_after: str = "") -> list[MergeRequest]:
    requests: list[MergeRequest] = []
    for change in changes:
        after = requests[-1].id if requests else first_after
        requests.append(MergeRequest(changes=[change.spec().to_dict()], after=after, pipeline="gate",
                                     item=change.key, created=time.time()))
    return requests


def submit_together(zk: ZKClient, requests: list[MergeRequest]) -> None:
    """In one transaction, in no particular order (as one pass of the scheduler writes them)."""
    tx = zk.client.transaction()
    for request in random.sample(requests, len(requests)):
        tx.create(paths.merger_request(request.id), request.to_bytes())
        tx.create(paths.lock("merge", request.id), b"")
    assert not any(isinstance(r, Exception) for r in tx.commit())


def results(zk: ZKClient, requests: list[MergeRequest]) -> list[MergeResult]:
    return [wait_for(lambda r=r: read_merge_result(zk, r.id, delete=False), what=f"the result of {r.item}")
            for r in requests]


def test_a_queue_asked_for_at_once_merges_in_order_with_one_fetch_for_its_changes(zk, upstream, start_merger):
    service = start_merger()
    zk.client.ensure_path(paths.lock("merge"))
    changes = [upstream.change("org/nova", {f"f{i}.txt": f"{i}\n"}) for i in range(6)]
    requests = chained(changes)
    submit_together(zk, requests)
    answers = results(zk, requests)
    assert all(r.ok for r in answers), [r.message for r in answers]
    for n, answer in enumerate(answers):  # each on the state of the one ahead: 1,1; 1,1 2,1; ...
        steps = RepoState.from_dict(answer.repo_state).steps
        assert [s["change_commit"] for s in steps] == [c.commit for c in changes[:n + 1]]
    assert service.counters.merges == 6
    assert service.counters.prefetched == 6
    assert service.cache.fetches == 2  # the changes together, and the branch for the head


def test_a_merge_behind_a_conflict_is_an_error_and_the_one_behind_it_too(zk, upstream, start_merger):
    start_merger()
    zk.client.ensure_path(paths.lock("merge"))
    first = upstream.change("org/nova", {"a.txt": "mine\n"})
    clash = upstream.change("org/nova", {"a.txt": "yours\n"})
    third = upstream.change("org/nova", {"c.txt": "c\n"})
    requests = chained([first, clash, third])
    submit_together(zk, requests)
    one, two, three = results(zk, requests)
    assert one.ok and (two.ok, two.conflict) == (False, True)
    assert (three.ok, three.conflict) == (False, False)
    assert f"the merge of the item ahead ({requests[1].id}) could not be merged" in three.message


def test_a_base_made_by_another_merger_is_read_from_zookeeper_and_a_lost_one_is_an_error(zk, upstream,
                                                                                         start_merger):
    first_merger = start_merger()
    zk.client.ensure_path(paths.lock("merge"))
    head, next_change = upstream.change("org/nova", {"h.txt": "h\n"}), upstream.change("org/nova", {"n.txt": "n\n"})
    [ahead] = chained([head])
    submit_together(zk, [ahead])
    results(zk, [ahead])
    first_merger.stop()
    start_merger()  # knows nothing of the first one's results but what ZooKeeper holds
    behind = chained([next_change], first_after=ahead.id)
    submit_together(zk, behind)
    [answer] = results(zk, behind)
    assert answer.ok, answer.message
    steps = RepoState.from_dict(answer.repo_state).steps
    assert [s["change_commit"] for s in steps] == [head.commit, next_change.commit]
    lost = chained([upstream.change("org/nova", {"l.txt": "l\n"})], first_after="0" * 32)
    submit_together(zk, lost)
    [answer] = results(zk, lost)
    assert (answer.ok, answer.conflict) == (False, False)
    assert "is no longer known" in answer.message
