"""A Gerrit-shaped upstream made of plain bare repos (branches and refs/changes), fetched by file URL.

For merger tests and benchmarks that need real git history but not Gerrit's SSH side (the Gerrit simulator
covers that).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from gatekeeper.gitrepo import GitRepo, change_ref
from gatekeeper.zk.merges import ChangeSpec

START_TIME = 1_700_000_000


@dataclass
class UpstreamChange:
    project: str
    branch: str
    number: int
    patchset: int
    ref: str
    commit: str
    url: str

    def spec(self, mode: str = "merge-resolve") -> ChangeSpec:
        return ChangeSpec(
            project=self.project, branch=self.branch, number=self.number, patchset=self.patchset,
            ref=self.ref, commit=self.commit, url=self.url, merge_mode=mode,
        )

    @property
    def key(self) -> str:
        return f"{self.number},{self.patchset}"


class Upstream:
    """Bare repos under `root`, one per project, with commits written by plumbing at increasing fixed times."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.repos: dict[str, GitRepo] = {}
        self.clock = START_TIME
        self.next_change = 1

    def url(self, project: str) -> str:
        return "file://" + os.path.join(self.root, project + ".git")

    def create_project(self, project: str, files: dict[str, str] | None = None, branch: str = "master") -> str:
        repo = GitRepo.init(os.path.join(self.root, project + ".git"))
        repo.git("config", "uploadpack.allowAnySHA1InWant", "true")
        self.repos[project] = repo
        sha = self.commit(project, None, files or {"README": f"{project}\n"}, "Initial commit")
        repo.git("update-ref", f"refs/heads/{branch}", sha)
        return sha

    def tip(self, project: str, branch: str = "master") -> str:
        sha = self.repos[project].rev_parse(f"refs/heads/{branch}")
        assert sha, f"{project} has no branch {branch}"
        return sha

    def commit(self, project: str, parent: str | None, files: dict[str, str | None], message: str) -> str:
        """A commit on `parent` with `files` changed (None deletes one)."""
        repo = self.repos[project]
        self.clock += 60
        with tempfile.TemporaryDirectory(prefix="gk-upstream-") as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            if parent:
                repo.git("read-tree", parent, env=env)
            lines = []
            for path, content in files.items():
                if content is None:
                    lines.append(f"0 {'0' * 40}\t{path}")
                else:
                    blob = repo.git("hash-object", "-w", "--stdin", input=content.encode()).strip()
                    lines.append(f"100644 {blob}\t{path}")
            repo.git("update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=env)
            tree = repo.git("write-tree", env=env).strip()
        stamp = f"{self.clock} +0000"
        env = {
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com", "GIT_COMMITTER_DATE": stamp,
        }
        args = ["commit-tree", tree] + (["-p", parent] if parent else [])
        return repo.git(*args, input=(message + "\n").encode(), env=env).strip()

    def change(self, project: str, files: dict[str, str | None], parent: str | UpstreamChange | None = None,
               branch: str = "master", subject: str | None = None) -> UpstreamChange:
        """Upload a new change (patch set 1) on `parent` (default: the branch tip) as refs/changes/NN/N/1."""
        number = self.next_change
        self.next_change += 1
        base = parent.commit if isinstance(parent, UpstreamChange) else parent or self.tip(project, branch)
        sha = self.commit(project, base, files, subject or f"Change {number}")
        ref = change_ref(number, 1)
        self.repos[project].git("update-ref", ref, sha)
        return UpstreamChange(project, branch, number, 1, ref, sha, self.url(project))

    def advance(self, project: str, files: dict[str, str | None], branch: str = "master") -> str:
        """A commit landing directly on the branch (someone else's merge)."""
        sha = self.commit(project, self.tip(project, branch), files, "Landed elsewhere")
        self.repos[project].git("update-ref", f"refs/heads/{branch}", sha)
        return sha
