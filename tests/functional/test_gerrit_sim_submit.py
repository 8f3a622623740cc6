"""Submitting in the Gerrit simulator reads the branch as git stores it, loose or packed, and moves it as Gerrit
does: a fast-forward when the change is on the tip, a merge commit when the branch moved."""

from __future__ import annotations

import os
import subprocess

import pytest

from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.sim.gerrit.query import change_row
from gatekeeper.sim.gerrit.repo import BareRepo, GitError


def test_submit_finds_the_branch_tip_in_packed_refs(tmp_path) -> None:
    sim = GerritSimulator(str(tmp_path / "site")).start()
    try:
        sim.add_account("jane", name="Jane Dev", email="jane@example.com")
        sim.add_account("rita", name="Rita Core", email="rita@example.com")
        sim.create_project("org/lib", submit_rule={"Code-Review": 2})
        repo = sim.project("org/lib").repo
        a = sim.create_change("org/lib", "A", owner="jane", files={"a": "a\n"})
        b = sim.create_change("org/lib", "B", owner="jane", files={"b": "b\n"})
        for c in (a, b):
            sim.review(c, "rita", labels={"Code-Review": 2})
        subprocess.run(["git", "--git-dir", repo.path, "pack-refs", "--all", "--prune"], check=True)
        assert repo.read_ref("refs/heads/master") == a.current.parents[0]
        assert sim.submit(a, "rita") == a.current.revision  # on the tip: a fast-forward
        subprocess.run(["git", "--git-dir", repo.path, "pack-refs", "--all", "--prune"], check=True)
        tip = sim.submit(b, "rita")  # the branch moved: a merge commit on top of A
        assert repo.commit_info(tip)["parents"] == [a.current.revision, b.current.revision]
        assert repo.read_ref("refs/heads/master") == tip
        assert repo.read_ref("refs/heads/nowhere") is None
    finally:
        sim.stop()


def test_commits_and_ref_updates_written_in_process_are_what_git_writes(tmp_path) -> None:
    repo = BareRepo.init(str(tmp_path / "r.git"))
    first = repo.commit([], "First\n", {"a": "a\n"}, ("Jane Dev", "jane@example.com"), when=1_700_000_000)
    second = repo.commit([first], "Second\n", {"b": "b\n"}, ("Jane Dev", "jane@example.com"), when=1_700_000_060)
    tree = repo.git("rev-parse", second + "^{tree}").strip()
    merged = repo.commit([first, second], 'Merge "Second"\n', None, ("CI", "ci@example.com"), when=1_700_000_120,
                         tree=tree)
    env = {"GIT_AUTHOR_NAME": "CI", "GIT_AUTHOR_EMAIL": "ci@example.com", "GIT_AUTHOR_DATE": "1700000120 +0000",
           "GIT_COMMITTER_NAME": "CI", "GIT_COMMITTER_EMAIL": "ci@example.com",
           "GIT_COMMITTER_DATE": "1700000120 +0000"}
    by_git = repo.git("commit-tree", tree, "-p", first, "-p", second, input=b'Merge "Second"\n', env=env).strip()
    assert merged == by_git
    assert repo.git("cat-file", "-t", merged).strip() == "commit"
    assert repo.git("fsck", "--no-dangling").strip() == ""
    repo.update_ref("refs/heads/master", first)
    repo.update_ref("refs/heads/master", merged, first)
    assert repo.rev_parse("refs/heads/master") == merged
    with pytest.raises(GitError, match="expected"):
        repo.update_ref("refs/heads/master", second, first)  # not where the caller thinks: refused, as git does
    assert repo.read_ref("refs/heads/master") == merged
    assert not os.path.exists(os.path.join(repo.path, "refs/heads/master.lock"))


def test_submit_records_say_who_vetoed_a_label_and_who_gave_what_it_needs(tmp_path) -> None:
    """As Gerrit's max_with_block writes `gerrit query --submit-records`: REJECT by the account that gave the
    label's minimum, OK by the one that gave what is needed (not any voter), NEED without `by`; NOT_READY until
    every label is OK."""
    sim = GerritSimulator(str(tmp_path / "site")).start()
    try:
        for name in ("jane", "rita", "bob"):
            sim.add_account(name, name=name.title(), email=f"{name}@example.com")
        sim.create_project("org/lib")
        a = sim.create_change("org/lib", "A", owner="jane", files={"a": "a\n"})
        sim.review(a, "bob", labels={"Code-Review": 1})
        sim.review(a, "rita", labels={"Code-Review": 2, "Verified": -2})

        def records() -> list[dict]:
            return change_row(sim, sim.change(a), submit_records=True)["submitRecords"]

        assert records() == [{"status": "NOT_READY", "labels": [
            {"label": "Code-Review", "status": "OK", "by": sim.account("rita").attr()},
            {"label": "Verified", "status": "REJECT", "by": sim.account("rita").attr()},
            {"label": "Approved", "status": "NEED"}]}]
        sim.review(a, "rita", labels={"Verified": 2, "Approved": 1})
        assert [r["status"] for r in records()] == ["OK"]
        assert "submitRecords" not in change_row(sim, sim.change(a))  # not asked for
    finally:
        sim.stop()
