"""Submitting in the Gerrit simulator reads the branch as git stores it, loose or packed, and moves it as Gerrit
does: a fast-forward when the change is on the tip, a merge commit when the branch moved."""

from __future__ import annotations

import subprocess

from gatekeeper.sim.gerrit import GerritSimulator


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
