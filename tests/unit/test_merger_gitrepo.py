"""gatekeeper.gitrepo: worktree-free merges that agree with git's own, deterministically, with real git."""

from __future__ import annotations

import os
import subprocess

import pytest

from gatekeeper.gitrepo import GitRepo, MergeConflict, reproduce
from gatekeeper.merger.upstream import Upstream
from gatekeeper.zk.merges import MergeStep, RepoState

LINES = "".join(f"line {i}\n" for i in range(1, 21))


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    up = Upstream(str(tmp_path / "upstream"))
    up.create_project("proj", {"a.txt": LINES, "b.txt": "b\n", "c.txt": "c\n"})
    return up


@pytest.fixture
def cache(tmp_path, upstream: Upstream) -> GitRepo:
    repo = GitRepo.init(str(tmp_path / "cache" / "proj.git"))
    repo.fetch(upstream.url("proj"), ["+refs/*:refs/*"])
    return repo


def git_merge_tree(tmp_path, upstream: Upstream, ours: str, theirs: str, *args: str) -> str | None:
    """What `git merge <args>` in a real work tree makes of ours+theirs (its tree), or None on conflict."""
    work = str(tmp_path / f"work-{ours[:6]}-{theirs[:6]}-{len(args)}")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", "clone", "-q", upstream.url("proj"), work], check=True, env=env)
    subprocess.run(["git", "-C", work, "fetch", "-q", "origin", "+refs/changes/*:refs/changes/*"], check=True, env=env)
    subprocess.run(["git", "-C", work, "checkout", "-q", "--detach", ours], check=True, env=env)
    proc = subprocess.run(["git", "-C", work, *args, theirs], capture_output=True, env=env)
    if proc.returncode != 0:
        return None
    return subprocess.run(["git", "-C", work, "rev-parse", "HEAD^{tree}"], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


def tree_of(repo: GitRepo, commit: str) -> str:
    return repo.commit_info(commit).tree


@pytest.mark.parametrize(
    "ours_files, theirs_files",
    [
        ({"b.txt": "b2\n"}, {"c.txt": "c2\n"}),  # different files
        ({"a.txt": LINES.replace("line 2\n", "two\n")}, {"a.txt": LINES.replace("line 18\n", "eighteen\n")}),
        ({"new.txt": "same\n"}, {"new.txt": "same\n", "d.txt": "d\n"}),  # added identically on both sides
        ({"b.txt": None}, {"c.txt": "c2\n"}),  # deleted on one side, other file changed on the other
    ],
    ids=["disjoint-files", "same-file-different-hunks", "identical-additions", "deletion"],
)
def test_merge_resolve_gives_the_same_tree_as_git_merge_s_resolve(tmp_path, upstream, cache, ours_files,
                                                                   theirs_files):
    ours = upstream.change("proj", ours_files)
    theirs = upstream.change("proj", theirs_files)
    cache.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    outcome = cache.merge(ours.commit, theirs.commit, "merge-resolve", "master", theirs.ref)
    assert outcome.kind == "merge"
    assert cache.commit_info(outcome.commit).parents == [ours.commit, theirs.commit]
    assert tree_of(cache, outcome.commit) == git_merge_tree(tmp_path, upstream, ours.commit, theirs.commit,
                                                             "merge", "-q", "--no-edit", "-s", "resolve")


@pytest.mark.parametrize(
    "ours_files, theirs_files, conflicted",
    [
        ({"a.txt": LINES.replace("line 5\n", "five\n")}, {"a.txt": LINES.replace("line 5\n", "FIVE\n")}, "a.txt"),
        ({"b.txt": None}, {"b.txt": "b changed\n"}, "b.txt"),  # deleted on one side, modified on the other
        ({"n.txt": "one\n"}, {"n.txt": "other\n"}, "n.txt"),  # added differently on both sides
    ],
    ids=["same-line", "delete-modify", "add-add"],
)
def test_merge_resolve_conflicts_where_git_merge_s_resolve_does(tmp_path, upstream, cache, ours_files,
                                                                theirs_files, conflicted):
    ours = upstream.change("proj", ours_files)
    theirs = upstream.change("proj", theirs_files)
    cache.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    with pytest.raises(MergeConflict) as exc:
        cache.merge(ours.commit, theirs.commit, "merge-resolve")
    assert exc.value.files == [conflicted]
    assert git_merge_tree(tmp_path, upstream, ours.commit, theirs.commit, "merge", "-q", "--no-edit",
                          "-s", "resolve") is None


def test_merge_fast_forwards_onto_its_parent_and_skips_what_is_already_merged(upstream, cache):
    first = upstream.change("proj", {"b.txt": "b2\n"})
    second = upstream.change("proj", {"c.txt": "c2\n"}, parent=first)
    cache.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    tip = upstream.tip("proj")
    assert cache.merge(tip, first.commit).kind == "fast-forward"
    assert cache.merge(tip, first.commit).commit == first.commit
    already = cache.merge(second.commit, first.commit)
    assert (already.kind, already.commit) == ("already-merged", second.commit)


def test_merge_commits_are_the_same_in_any_clone(tmp_path, upstream, cache):
    ours = upstream.change("proj", {"b.txt": "b2\n"})
    theirs = upstream.change("proj", {"c.txt": "c2\n"})
    other = GitRepo.init(str(tmp_path / "elsewhere.git"))
    for repo in (cache, other):
        repo.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    first = cache.merge(ours.commit, theirs.commit, "merge-resolve", "master", theirs.ref)
    second = other.merge(ours.commit, theirs.commit, "merge-resolve", "master", theirs.ref)
    assert first.commit == second.commit
    info = cache.commit_info(first.commit)
    assert info.committer[:2] == ("gatekeeper", "gatekeeper@gatekeeper.invalid")
    assert info.committer[2] == cache.commit_info(theirs.commit).committer[2]


def test_cherry_pick_keeps_author_and_message_on_a_single_parent(tmp_path, upstream, cache):
    ours = upstream.change("proj", {"a.txt": LINES.replace("line 2\n", "two\n")})
    theirs = upstream.change("proj", {"a.txt": LINES.replace("line 18\n", "eighteen\n")}, subject="Fix 18")
    cache.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    outcome = cache.merge(ours.commit, theirs.commit, "cherry-pick")
    assert outcome.kind == "cherry-pick"
    picked, original = cache.commit_info(outcome.commit), cache.commit_info(theirs.commit)
    assert picked.parents == [ours.commit]
    assert (picked.author, picked.message) == (original.author, original.message)
    assert picked.tree == git_merge_tree(tmp_path, upstream, ours.commit, theirs.commit, "cherry-pick")


def test_plain_merge_mode_uses_gits_default_strategy_and_reports_conflicts(tmp_path, upstream, cache):
    ours = upstream.change("proj", {"b.txt": "b2\n"})
    theirs = upstream.change("proj", {"c.txt": "c2\n"})
    clash = upstream.change("proj", {"b.txt": "b3\n"})
    cache.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    outcome = cache.merge(ours.commit, theirs.commit, "merge")
    assert tree_of(cache, outcome.commit) == git_merge_tree(tmp_path, upstream, ours.commit, theirs.commit,
                                                             "merge", "-q", "--no-edit")
    with pytest.raises(MergeConflict) as exc:
        cache.merge(ours.commit, clash.commit, "merge")
    assert exc.value.files == ["b.txt"]


def test_reproduce_rebuilds_a_workspace_at_exactly_the_recorded_commits(tmp_path, upstream, cache):
    tip = upstream.tip("proj")
    one = upstream.change("proj", {"b.txt": "b2\n"})
    two = upstream.change("proj", {"c.txt": "c2\n"})
    three = upstream.change("proj", {"a.txt": LINES.replace("line 9\n", "nine\n")})
    cache.fetch(upstream.url("proj"), ["+refs/changes/*:refs/changes/*"])
    steps, head = [], tip
    for change, mode in ((one, "merge-resolve"), (two, "merge-resolve"), (three, "cherry-pick")):
        result = cache.merge(head, change.commit, mode, "master", change.ref).commit
        steps.append(MergeStep("proj", "master", head, change.ref, change.commit, mode, result).to_dict())
        head = result
    upstream.advance("proj", {"later.txt": "the branch moved on\n"})  # must not matter
    state = RepoState(branches={"proj": {"master": head}}, steps=steps)

    paths = reproduce(state.to_dict(), str(tmp_path / "workspace"), upstream.url)

    work = paths["proj"]
    assert GitRepo(os.path.join(work, ".git")).rev_parse("HEAD") == head
    with open(os.path.join(work, "c.txt")) as f:
        assert f.read() == "c2\n"
    assert not os.path.exists(os.path.join(work, "later.txt"))
