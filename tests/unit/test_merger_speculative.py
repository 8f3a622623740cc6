"""SpeculativeMerger: queue items merged incrementally onto the item ahead, with real git repos in temp dirs."""

from __future__ import annotations

import pytest

from gatekeeper.gitrepo import GitRepo, reproduce
from gatekeeper.merger.cache import CacheInUse, RepoCache
from gatekeeper.merger.speculative import SpeculativeMerger
from gatekeeper.merger.upstream import Upstream
from gatekeeper.zk.merges import MergeRequest, MergeResult, RepoState


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    up = Upstream(str(tmp_path / "upstream"))
    up.create_project("nova", {"a.txt": "".join(f"{i}\n" for i in range(20))})
    up.create_project("glance", {"g.txt": "g\n"})
    return up


@pytest.fixture
def merger(tmp_path) -> SpeculativeMerger:
    cache = RepoCache(str(tmp_path / "cache")).open()
    yield SpeculativeMerger(cache)
    cache.close()


def request(*changes, base: MergeResult | None = None, mode: str = "merge-resolve") -> MergeRequest:
    return MergeRequest(
        changes=[c.spec(mode).to_dict() for c in changes],
        base=base.repo_state if base else None,
        pipeline="gate",
        item=",".join(c.key for c in changes),
    )


def test_queue_of_five_items_costs_five_merges_and_one_fetch_each(upstream, merger):
    changes = [upstream.change("nova", {f"file{i}.txt": f"{i}\n"}) for i in range(5)]
    results, ahead = [], None
    for change in changes:
        fetches = merger.cache.fetches
        ahead = merger.merge(request(change, base=ahead))
        assert ahead.ok, ahead.message
        assert (ahead.merges, merger.cache.fetches - fetches) == (1, 1)
        results.append(ahead)
    assert merger.counters.merges == 5
    state = RepoState.from_dict(results[-1].repo_state)
    assert [s["change_commit"] for s in state.steps] == [c.commit for c in changes]
    tip = state.commit("nova", "master")
    tree = merger.cache.repo("nova").git("ls-tree", "--name-only", tip).split()
    assert {f"file{i}.txt" for i in range(5)} <= set(tree)


def test_a_change_already_in_the_cache_is_merged_without_fetching(upstream, merger):
    change = upstream.change("nova", {"x.txt": "x\n"})
    assert merger.merge(request(change)).ok
    fetches = merger.cache.fetches
    again = merger.merge(request(change, base=MergeResult(repo_state=RepoState(
        branches={"nova": {"master": upstream.tip("nova")}}).to_dict())))
    assert again.ok and merger.cache.fetches == fetches


def test_conflict_in_the_middle_names_the_change_and_the_project(upstream, merger):
    first = upstream.change("nova", {"a.txt": "first\n"})
    second = upstream.change("nova", {"a.txt": "second\n"})
    ahead = merger.merge(request(first))
    result = merger.merge(request(second, base=ahead))
    assert (result.ok, result.conflict) == (False, True)
    assert (result.conflict_change, result.conflict_project) == (second.key, "nova")
    assert second.key in result.message and "nova" in result.message and "a.txt" in result.message
    assert result.repo_state is None


def test_fetch_failure_is_an_error_not_a_conflict(tmp_path, upstream, merger):
    change = upstream.change("nova", {"x.txt": "x\n"})
    change.url = "file://" + str(tmp_path / "nowhere.git")
    result = merger.merge(request(change))
    assert (result.ok, result.conflict) == (False, False)
    assert "nowhere.git" in result.message and merger.counters.errors == 1


def test_dependent_changes_in_one_item_merge_in_order(upstream, merger):
    upstream.advance("nova", {"moved.txt": "branch moved\n"})
    parent = upstream.change("nova", {"p.txt": "p\n"}, parent=upstream.repos["nova"].rev_parse("master~1"))
    child = upstream.change("nova", {"c.txt": "c\n"}, parent=parent)
    result = merger.merge(request(parent, child))
    assert result.ok, result.message
    assert result.merges == 2
    steps = RepoState.from_dict(result.repo_state).steps
    assert [s["change_commit"] for s in steps] == [parent.commit, child.commit]
    assert steps[1]["base"] == steps[0]["result"]


def test_items_in_other_projects_carry_the_state_ahead(upstream, merger):
    nova = upstream.change("nova", {"n.txt": "n\n"})
    glance = upstream.change("glance", {"g2.txt": "g\n"})
    ahead = merger.merge(request(nova))
    result = merger.merge(request(glance, base=ahead))
    state = RepoState.from_dict(result.repo_state)
    assert state.commit("nova", "master") == RepoState.from_dict(ahead.repo_state).commit("nova", "master")
    assert state.commit("glance", "master") == glance.commit  # fast-forward onto the tip
    assert len(state.steps) == 2


def test_a_base_made_by_another_merger_is_replayed_to_the_same_commits(tmp_path, upstream, merger):
    one = upstream.change("nova", {"one.txt": "1\n"})
    two = upstream.change("nova", {"two.txt": "2\n"})
    three = upstream.change("nova", {"three.txt": "3\n"})
    ahead = merger.merge(request(one))
    ahead = merger.merge(request(two, base=ahead))
    other = SpeculativeMerger(RepoCache(str(tmp_path / "other-cache")))
    result = other.merge(request(three, base=ahead))
    assert result.ok, result.message
    assert other.counters.replayed == 1  # two's merge commit (one was a fast-forward, fetched with its ref)
    assert other.counters.merges == 1
    mine = merger.merge(request(three, base=ahead))
    assert mine.repo_state == result.repo_state


def test_cherry_pick_mode_records_its_steps_and_reproduces(tmp_path, upstream, merger):
    one = upstream.change("nova", {"a.txt": "".join(f"{i}\n" for i in range(19)) + "changed\n"})
    two = upstream.change("nova", {"a.txt": "changed\n" + "".join(f"{i}\n" for i in range(1, 20))})
    ahead = merger.merge(request(one, mode="cherry-pick"))
    result = merger.merge(request(two, base=ahead, mode="cherry-pick"))
    assert result.ok, result.message
    state = RepoState.from_dict(result.repo_state)
    tip = state.commit("nova", "master")
    assert merger.cache.repo("nova").commit_info(tip).parents == [one.commit]
    paths = reproduce(state, str(tmp_path / "ws"), upstream.url)
    with open(paths["nova"] + "/a.txt") as f:
        assert f.read().splitlines()[0] == "changed" and f.read() == ""


def test_two_mergers_cannot_share_one_cache_directory(tmp_path, merger):
    with pytest.raises(CacheInUse, match="in use"):
        RepoCache(merger.cache.root).open()


def test_extra_projects_are_included_at_their_branch_tips(upstream, merger):
    change = upstream.change("nova", {"n.txt": "n\n"})
    req = request(change)
    req.projects = [{"project": "glance", "branch": "master", "url": upstream.url("glance")}]
    result = merger.merge(req)
    assert result.ok, result.message
    assert RepoState.from_dict(result.repo_state).branches == {
        "nova": {"master": change.commit}, "glance": {"master": upstream.tip("glance")}}


def test_a_base_tip_this_cache_never_saw_is_fetched(tmp_path, upstream, merger):
    stale = SpeculativeMerger(RepoCache(str(tmp_path / "stale-cache")))
    assert stale.merge(request(upstream.change("nova", {"warm.txt": "w\n"}))).ok  # warms the cache
    change = upstream.change("nova", {"late.txt": "l\n"})
    moved = upstream.advance("nova", {"moved.txt": "m\n"})  # another merger saw the branch here
    base = MergeResult(repo_state=RepoState(branches={"nova": {"master": moved}}).to_dict())
    result = stale.merge(request(change, base=base))
    assert result.ok, result.message
    tip = RepoState.from_dict(result.repo_state).commit("nova", "master")
    assert stale.cache.repo("nova").commit_info(tip).parents == [moved, change.commit]


def test_reproduce_next_to_a_merger_borrows_its_objects_instead_of_fetching(tmp_path, upstream, merger):
    ahead = merger.merge(request(upstream.change("nova", {"one.txt": "1\n"})))
    result = merger.merge(request(upstream.change("nova", {"two.txt": "2\n"}), base=ahead))
    state = RepoState.from_dict(result.repo_state)
    unreachable = "file://" + str(tmp_path / "no-gerrit-here.git")
    paths = reproduce(state, str(tmp_path / "ws"), lambda project: unreachable, reference_dir=merger.cache.root)
    assert GitRepo(paths["nova"] + "/.git").rev_parse("HEAD") == state.commit("nova", "master")


def test_an_extra_project_without_the_changes_branch_is_used_at_master(upstream, merger):
    upstream.repos["nova"].git("update-ref", "refs/heads/stable", upstream.tip("nova"))
    change = upstream.change("nova", {"s.txt": "s\n"}, branch="stable")
    req = request(change)
    req.projects = [{"project": "glance", "branch": "stable", "url": upstream.url("glance")}]
    result = merger.merge(req)
    assert result.ok, result.message
    assert RepoState.from_dict(result.repo_state).branches["glance"] == {"master": upstream.tip("glance")}
