"""A tag item's workspace, with real git end to end (the merger's cache, the executor's cache, the work tree): the
project is checked out, as Zuul checks out a tag, on a detached HEAD at the commit the tag names, with the tag
itself as a ref, and no branch is made up from the tag's name."""

from __future__ import annotations

from gatekeeper.executor.workspace import GitCache, prepare_workspace, summarize
from gatekeeper.gitrepo import GitRepo
from gatekeeper.merger.cache import RepoCache
from gatekeeper.merger.speculative import SpeculativeMerger
from gatekeeper.merger.upstream import Upstream
from gatekeeper.models.pipeline import ref_item
from gatekeeper.zk.merges import MergeRequest, RepoState

IDENTITY = {"GIT_COMMITTER_NAME": "Rita", "GIT_COMMITTER_EMAIL": "rita@example.org"}


def test_tag_item_workspace_is_a_detached_head_at_the_tagged_commit(tmp_path) -> None:
    up = Upstream(str(tmp_path / "upstream"))
    up.create_project("nova", {"a.txt": "a\n"})
    tagged = up.advance("nova", {"release.txt": "1.0\n"})
    up.advance("nova", {"release.txt": "1.1-dev\n"})  # master moves on past the tag
    repo = up.repos["nova"]
    repo.git("tag", "-a", "1.0", "-m", "Release 1.0", tagged, env=IDENTITY)
    tag_object = repo.git("rev-parse", "refs/tags/1.0").strip()
    assert tag_object != tagged  # annotated: the ref-updated event's newrev is the tag object

    cache = RepoCache(str(tmp_path / "merger")).open()
    try:
        item = ref_item("nova", "refs/tags/1.0", tag_object)
        result = SpeculativeMerger(cache).merge(MergeRequest(
            changes=[item.spec(up.url("nova")).to_dict()], pipeline="tag", item="x"))
    finally:
        cache.close()
    assert result.ok, result.message
    state = RepoState.from_dict(result.repo_state)
    assert state.branches == {"nova": {"refs/tags/1.0": tagged}}

    paths = prepare_workspace(state, str(tmp_path / "ws"), GitCache(str(tmp_path / "executor"), up.url))
    work = GitRepo(str(tmp_path / "ws" / "nova" / ".git"))
    assert work.run("symbolic-ref", "-q", "HEAD").returncode != 0  # detached, on no branch
    assert work.rev_parse("HEAD") == tagged
    assert work.rev_parse("refs/tags/1.0") == tagged
    assert work.git("for-each-ref", "--format=%(refname)", "refs/heads/").split() == []
    assert (tmp_path / "ws" / "nova" / "release.txt").read_text() == "1.0\n"
    [summary] = summarize(paths)
    assert (summary.project, summary.branch, summary.sha) == ("nova", "(detached)", tagged)
