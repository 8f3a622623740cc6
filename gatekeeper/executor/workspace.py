"""The build's workspace: every project the job needs, at exactly the item's frozen repo state, on this host.

Gerrit is asked only for what a local cache (one bare repo per project, kept across builds) does not hold yet;
the workspace itself is then rebuilt from the cache with gatekeeper.gitrepo.reproduce, which replays the merger's
recipe and checks every SHA.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gatekeeper import gitrepo
from gatekeeper.gitrepo import GitError, GitRepo
from gatekeeper.zk.merges import RepoState

log = logging.getLogger("gatekeeper.executor.workspace")


@dataclass
class RepoSummary:
    """What the console's first lines say about one repo."""

    project: str
    branch: str
    sha: str
    subject: str

    def line(self) -> str:
        return f"{self.project} {self.branch} {self.sha[:10]} {self.subject}"


class GitCache:
    """Bare mirrors of the projects, filled from Gerrit on demand; safe to use from several builds at once."""

    def __init__(self, root: str, url_for: Callable[[str], str], ssh: str | None = None) -> None:
        self.root = root
        self.url_for = url_for
        self.ssh = ssh
        self._locks: dict[str, threading.Lock] = {}
        self._mutex = threading.Lock()

    def path(self, project: str) -> str:
        return os.path.join(self.root, project + ".git")

    def _lock(self, project: str) -> threading.Lock:
        with self._mutex:
            return self._locks.setdefault(project, threading.Lock())

    def ensure(self, project: str, branches: dict[str, str], steps: list[gitrepo.MergeStep]) -> None:
        """Make sure the cache holds every commit of `branches` and of the recipe `steps`."""
        with self._lock(project):
            repo = GitRepo.init(self.path(project), bare=True, ssh=self.ssh)
            # builds fetch from the cache by SHA as well as by ref
            repo.git("config", "uploadpack.allowAnySHA1InWant", "true")
            needed = set(branches.values()) | {s.change_commit for s in steps} | {s.base for s in steps}
            needed |= {s.result for s in steps}
            if not repo.missing(needed):
                # every commit is here, but a branch created on an existing commit (a new stable branch) has no
                # ref yet: builds fetch branches from the cache by name
                for branch, sha in branches.items():
                    if repo.rev_parse(gitrepo.work_ref(branch)) != sha:
                        repo.git("update-ref", gitrepo.work_ref(branch), sha)
                return
            url = self.url_for(project)
            refspecs = [f"+{gitrepo.work_ref(b)}:{gitrepo.work_ref(b)}" for b in branches]
            refspecs += [gitrepo.ref_refspec(s.change_ref) for s in steps if s.change_ref]
            repo.fetch(url, refspecs)
            gitrepo.replay(repo, steps, url, wanted=dict(branches))
            # keep the speculative commits reachable from refs, so nothing ever prunes them
            for sha in set(branches.values()) | {s.result for s in steps}:
                repo.git("update-ref", f"refs/gatekeeper/{sha}", sha)


def prepare_workspace(repo_state: RepoState | dict, dest: str, cache: GitCache,
                      checkout: dict[str, str] | None = None, workers: int = 4) -> dict[str, str]:
    """A work tree per project under `dest` at exactly `repo_state`; returns project -> path."""
    state = repo_state if isinstance(repo_state, RepoState) else RepoState.from_dict(repo_state)
    by_project = gitrepo.steps_by_project(state)

    def one(project: str) -> dict[str, str]:
        branches = state.branches[project]
        steps = by_project.get(project, [])
        cache.ensure(project, branches, steps)
        sub = RepoState(branches={project: branches}, steps=[s.to_dict() for s in steps])
        return gitrepo.reproduce(sub, dest, cache.path, checkout=checkout)

    os.makedirs(dest, exist_ok=True)
    out: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="workspace") as pool:
        for paths in pool.map(one, sorted(state.branches)):
            out.update(paths)
    return out


def summarize(paths: dict[str, str]) -> list[RepoSummary]:
    """Branch, short sha and subject of what each project's work tree has checked out."""
    out = []
    for project, path in sorted(paths.items()):
        repo = GitRepo(os.path.join(path, ".git"))
        sha = repo.rev_parse("HEAD") or ""
        branch = repo.run("symbolic-ref", "-q", "--short", "HEAD").stdout.decode().strip() or "(detached)"
        subject = repo.git("log", "-1", "--format=%s", "HEAD").strip() if sha else ""
        out.append(RepoSummary(project, branch, sha, subject))
    return out


__all__ = ["GitCache", "GitError", "RepoSummary", "prepare_workspace", "summarize"]
