"""Speculative merges: one queue item's changes merged onto the state of the item ahead."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gatekeeper.gitrepo import GitError, MergeConflict, branch_refspec, change_ref, ref_refspec, tip_ref
from gatekeeper.merger.cache import RepoCache
from gatekeeper.zk.merges import ChangeSpec, MergeRequest, MergeResult, MergeStep, RepoState

log = logging.getLogger("gatekeeper.merger.speculative")

DEFAULT_BRANCH = "master"


def is_ref(change: ChangeSpec) -> bool:
    """A ref's new revision (number 0, `ref` a branch or a tag, `commit` the revision), not a change to merge."""
    return (change.number == 0 and change.ref.startswith(("refs/heads/", "refs/tags/")) and bool(change.commit)
            and not is_deleted_ref(change))


def is_deleted_ref(change: ChangeSpec) -> bool:
    """A ref's deletion (its new revision all zeros): there is no revision of it to check out."""
    return (change.number == 0 and change.ref.startswith("refs/") and bool(change.commit)
            and not change.commit.strip("0"))


CONFLICT_FILES_SHOWN = 20  # a conflict's message names this many files at most (it is reported on the change)


def conflict_message(change: ChangeSpec, detail: str, files: list[str]) -> str:
    """Why `change` does not merge, for people: the first CONFLICT_FILES_SHOWN conflicting files, and how many
    more (a conflict over a vendored tree can name thousands)."""
    shown = ", ".join(files[:CONFLICT_FILES_SHOWN])
    if len(files) > CONFLICT_FILES_SHOWN:
        shown += f" and {len(files) - CONFLICT_FILES_SHOWN} more"
    return (f"change {change.key} does not merge onto {change.project} {change.branch} (with the changes ahead of "
            f"it): {detail[:2000]}{f' ({shown})' if files else ''}")


def _refspec(ref: str) -> str:
    """What fetches `ref`: a change's ref as itself; a branch (a ref item's revision comes with it) as its tip."""
    return branch_refspec(ref[len("refs/heads/"):]) if ref.startswith("refs/heads/") else ref_refspec(ref)


@dataclass
class MergerCounters:
    """What this merger did, for stats and benchmarks (`merges` is one per change merged)."""

    requests: int = 0
    merges: int = 0
    fast_forwards: int = 0
    conflicts: int = 0
    errors: int = 0
    replayed: int = 0
    prefetched: int = 0  # changes fetched ahead, together with the other requests of their batch


class SpeculativeMerger:
    """Turns a MergeRequest into a MergeResult using a RepoCache; safe to call from several threads."""

    def __init__(self, cache: RepoCache, url_for_project: Callable[[str], str | None] | None = None) -> None:
        self.cache = cache
        self.url_for_project = url_for_project
        self.counters = MergerCounters()
        self._lock = threading.Lock()
        # (project, commit) known to be in the cache (objects are never pruned from it): no git process to ask
        self._present: set[tuple[str, str]] = set()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.counters, name, getattr(self.counters, name) + delta)

    def merge(self, request: MergeRequest) -> MergeResult:
        """Merge the request's changes, in order, onto its base (or the branch tips); never raises."""
        started = time.monotonic()
        result = MergeResult(id=request.id, item=request.item, pipeline=request.pipeline)
        tag = f"[{request.pipeline} {request.item or request.id}]"
        self._count(requests=1)
        try:
            self._merge(request, result)
        except GitError as exc:
            result.ok, result.conflict, result.message = False, False, f"merger error: {exc}"
            self._count(errors=1)
            log.warning("%s %s", tag, result.message)
        result.elapsed = time.monotonic() - started
        if result.ok:
            log.info("%s merged %d change(s) in %.3fs", tag, result.merges, result.elapsed)
        elif result.conflict:
            log.info("%s %s", tag, result.message)
        return result

    def _merge(self, request: MergeRequest, result: MergeResult) -> None:
        changes = [ChangeSpec.from_dict(c) for c in request.changes]
        base = RepoState.from_dict(request.base) if request.base else RepoState()
        branches = {project: dict(b) for project, b in base.branches.items()}
        urls = self._urls(request, changes)
        # A deleted ref's item (ignore-deletes: false) runs on its project's default branch, as Zuul's does.
        deleted = {c.project for c in changes if is_deleted_ref(c)}
        changes = [c for c in changes if not is_deleted_ref(c)]
        base_steps: dict[str, list[MergeStep]] = {}
        for raw in base.steps:
            step = MergeStep.from_dict(raw)
            base_steps.setdefault(step.project, []).append(step)

        wanted_branches: dict[str, list[str]] = {}
        for change in changes:
            wanted_branches.setdefault(change.project, [])
            if change.branch not in wanted_branches[change.project]:
                wanted_branches[change.project].append(change.branch)
        for project in deleted:
            wanted_branches.setdefault(project, [])
            if DEFAULT_BRANCH not in wanted_branches[project]:
                wanted_branches[project].append(DEFAULT_BRANCH)
        for extra in request.projects:
            wanted_branches.setdefault(extra["project"], [])
            if extra.get("branch", "master") not in wanted_branches[extra["project"]]:
                wanted_branches[extra["project"]].append(extra.get("branch", "master"))
        replayed = 0
        for project, project_branches in wanted_branches.items():
            project_changes = [c for c in changes if c.project == project]
            args = (project_changes, branches, base_steps.get(project, []), urls.get(project))
            try:
                replayed += self._prepare_project(project, project_branches, *args)
            except GitError as exc:
                # A project a job needs but no change touches is used at its default branch when it lacks the
                # change's branch (as Zuul does for required projects).
                if project_changes or DEFAULT_BRANCH in project_branches or "find remote ref" not in str(exc):
                    raise
                log.info("[%s %s] %s has no branch %s: using %s", request.pipeline, request.item, project,
                         ", ".join(project_branches), DEFAULT_BRANCH)
                replayed += self._prepare_project(project, [DEFAULT_BRANCH], *args)

        steps = list(base.steps)
        merges = fast_forwards = 0
        for change in changes:
            if is_ref(change):
                # A ref's new revision (a post pipeline's item): the project exactly as it is there, no merge
                # (an annotated tag's revision is the tag object: the project is at the commit it tags).
                commit = self.cache.repo(change.project).rev_parse(change.commit) or change.commit
                branches[change.project][change.branch] = commit
                if change.ref.startswith("refs/tags/"):
                    result.containing_branches = self._containing(change.project, commit, urls.get(change.project))
                continue
            repo = self.cache.repo(change.project)
            onto = branches[change.project][change.branch]
            try:
                outcome = repo.merge(onto, change.commit, change.merge_mode, change.branch, change.ref)
            except MergeConflict as exc:
                self._count(conflicts=1, merges=merges, fast_forwards=fast_forwards, replayed=replayed)
                result.ok, result.conflict = False, True
                result.conflict_change, result.conflict_project = change.key, change.project
                result.message = conflict_message(change, exc.detail, exc.files)
                result.merges = merges
                return
            merges += 1
            fast_forwards += outcome.kind == "fast-forward"
            steps.append(MergeStep(
                project=change.project, branch=change.branch, base=onto, change_ref=change.ref,
                change_commit=change.commit, mode=change.merge_mode, result=outcome.commit,
            ).to_dict())
            branches[change.project][change.branch] = outcome.commit
            self._known(change.project, [outcome.commit, change.commit, onto])
        self._count(merges=merges, fast_forwards=fast_forwards, replayed=replayed)
        result.ok = True
        result.merges = merges
        result.repo_state = RepoState(branches=branches, steps=steps).to_dict()

    def _prepare_project(self, project: str, project_branches: list[str], project_changes: list[ChangeSpec],
                         branches: dict[str, dict[str, str]], base_steps: list[MergeStep], url: str | None) -> int:
        """Get into the cache, in at most one fetch, what merging into `project` needs; return steps replayed.

        That is: fresh tips of the branches the base does not cover (recorded into `branches`), each change's
        commit, and the base's commits of the branches we merge onto (made by us earlier, else replayed from the
        recipe or fetched).
        """
        have = branches.get(project, {})
        repo = self.cache.repo(project)
        refspecs = [branch_refspec(b) for b in project_branches if b not in have]
        for change in project_changes:
            if not change.ref:
                change.ref = change_ref(change.number, change.patchset)
        onto = {b: have[b] for b in project_branches if b in have and any(c.branch == b for c in project_changes)}
        missing = repo.missing(sha for sha in [c.commit for c in project_changes] + list(onto.values())
                               if (project, sha) not in self._present)
        # A ref's revision comes with its branch (fetched whole, as the branch tip or behind it).
        refspecs += [_refspec(c.ref) for c in project_changes if not c.commit or c.commit in missing]
        refspecs = list(dict.fromkeys(refspecs))
        # Bases made by this merger are here; others are replayed from the recipe (or were Gerrit's tips).
        if not refspecs and not missing:
            return 0  # everything is here already (made here, or fetched ahead by `prefetch`)
        steps = [s for s in base_steps if s.branch in onto] if missing & set(onto.values()) else []
        replayed = self.cache.prepare(project, url, steps, refspecs, wanted=onto)
        for b in project_branches:
            if b not in have:
                tip = repo.rev_parse(tip_ref(b))
                if tip is None:
                    raise GitError(f"project {project} has no branch {b} at {url}")
                branches.setdefault(project, {})[b] = tip
        for change in project_changes:
            if not change.commit:
                change.commit = repo.rev_parse(change.ref) or ""
        lost = repo.missing(c.commit for c in project_changes)
        for change in project_changes:
            if is_ref(change) and change.commit in lost:
                raise GitError(f"{change.ref} revision {change.commit} not found in {project} at {url}")
            if not change.commit or change.commit in lost:
                raise GitError(f"change {change.key}: {change.ref} not found in {project} at {url}")
        return replayed

    def _containing(self, project: str, commit: str, url: str | None) -> list[str]:
        """The branches of `project` (their tips fetched now) whose history has `commit`: what a tag item's job
        branch matchers look at."""
        self.cache.prepare(project, url, (), [branch_refspec("*")])
        prefix = tip_ref("")
        out = self.cache.repo(project).git("for-each-ref", "--contains", commit, "--format=%(refname)", prefix)
        # (a tag item's own ref is kept there too, under its full name: not a branch)
        names = (ref[len(prefix):] for ref in out.split())
        return sorted(name for name in names if name != "HEAD" and not name.startswith("refs/"))

    def prefetch(self, project: str, url: str, changes: list[ChangeSpec]) -> int:
        """Fetch, in one fetch, the changes of `project` this cache lacks (those of requests about to be merged);
        returns how many were fetched."""
        repo = self.cache.repo(project)
        changes = [c for c in changes if not is_deleted_ref(c)]
        missing = repo.missing(c.commit for c in changes if c.commit)
        refs = [c.ref or change_ref(c.number, c.patchset) for c in changes if not c.commit or c.commit in missing]
        if refs:
            self.cache.prepare(project, url, (), [_refspec(r) for r in dict.fromkeys(refs)])
            self._count(prefetched=len(refs))
            missing = repo.missing(missing)
        self._known(project, [c.commit for c in changes if c.commit and c.commit not in missing])
        return len(refs)

    def _known(self, project: str, commits: list[str]) -> None:
        with self._lock:
            if len(self._present) > 100_000:
                self._present.clear()  # a bound on memory; forgetting costs a lookup
            self._present.update((project, sha) for sha in commits if sha)

    def _urls(self, request: MergeRequest, changes: list[ChangeSpec]) -> dict[str, str]:
        urls: dict[str, str] = {}
        projects = {c.project for c in changes} | {p["project"] for p in request.projects}
        for project in projects:
            url = self.url_for_project(project) if self.url_for_project else None
            if url:
                urls[project] = url
        for extra in request.projects:
            if extra.get("url"):
                urls[extra["project"]] = extra["url"]
        for change in changes:
            if change.url:
                urls[change.project] = change.url
        return urls
