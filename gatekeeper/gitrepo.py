"""Git helpers shared by the merger and the executor: deterministic merges and rebuilding a RepoState anywhere.

Merges are done with plumbing into a temporary index (no work tree), so several merges can run in one repository
at once.  Every commit gatekeeper makes has fixed identity and dates taken from its inputs, so replaying a
RepoState's `steps` on a fresh clone on any host gives the same SHAs; `reproduce()` does that and checks them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.zk.merges import MergeStep, RepoState

log = logging.getLogger("gatekeeper.gitrepo")

MODES = ("merge-resolve", "merge", "cherry-pick")
IDENTITY = ("gatekeeper", "gatekeeper@gatekeeper.invalid")
ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Modes git cannot merge by content (symlinks, submodules): any difference is a conflict, as in merge-one-file.
_UNMERGEABLE_MODES = ("120000", "160000")


class GitError(RuntimeError):
    """A git command failed, or a repository is not in the state we need (an infrastructure error)."""


class MergeConflict(Exception):
    """A change does not merge onto its base (the change's fault, not the infrastructure's)."""

    def __init__(self, detail: str, files: Iterable[str] = ()) -> None:
        self.files = sorted(files)
        self.detail = detail
        super().__init__(detail + (": " + ", ".join(self.files) if self.files else ""))


@dataclass
class CommitInfo:
    tree: str
    parents: list[str]
    author: tuple[str, str, str]  # name, email, "seconds tz"
    committer: tuple[str, str, str]
    message: bytes


@dataclass
class MergeOutcome:
    """What one merge produced: the commit and how (merge, fast-forward, cherry-pick, already-merged)."""

    commit: str
    kind: str
    files: list[str] = field(default_factory=list)


def change_ref(number: int, patchset: int) -> str:
    """Gerrit's ref of a patch set: refs/changes/34/1234/2."""
    return f"refs/changes/{number % 100:02d}/{number}/{patchset}"


def ssh_command(key_file: str | None = None, known_hosts: str | None = None) -> str:
    """A GIT_SSH_COMMAND for fetching from Gerrit non-interactively with `key_file`."""
    # a fetch whose connection silently dies (traffic dropped, not refused) ends within ~30 s instead of hanging
    parts = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=10",
             "-o", "ServerAliveCountMax=3"]
    if key_file:
        parts += ["-i", key_file, "-o", "IdentitiesOnly=yes"]
    if known_hosts:
        parts += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=accept-new"]
    return " ".join(parts)


def _parse_person(line: bytes) -> tuple[str, str, str]:
    text = line.decode("utf-8", errors="surrogateescape")
    name, _, rest = text.partition(" <")
    email, _, when = rest.partition("> ")
    return name, email, when


class GitRepo:
    """A git repository (bare, or the .git of a work tree) driven by git commands with a fixed environment."""

    def __init__(self, git_dir: str, ssh: str | None = None) -> None:
        self.git_dir = git_dir
        self.fetches = 0  # fetches made through this object (stats, and the "no needless fetch" tests)
        # Global and system config must not change merge results or identities: the SHAs must be the same anywhere.
        self._env = dict(os.environ)
        self._env.update(
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
        )
        for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"):
            self._env.pop(var, None)
        self.set_ssh(ssh)

    def set_ssh(self, ssh: str | None) -> None:
        """Fetch over SSH with this command (GIT_SSH_COMMAND), or with plain `ssh`."""
        self.ssh = ssh
        if ssh:
            self._env["GIT_SSH_COMMAND"] = ssh
        else:
            self._env.pop("GIT_SSH_COMMAND", None)

    @classmethod
    def init(cls, path: str, bare: bool = True, ssh: str | None = None) -> GitRepo:
        """Create (or open) a repository at `path`; a non-bare one keeps its git dir in `path/.git`."""
        git_dir = path if bare else os.path.join(path, ".git")
        if not os.path.exists(os.path.join(git_dir, "HEAD")):
            os.makedirs(path, exist_ok=True)
            args = ["git", "init", "-q", "-b", "master"] + (["--bare"] if bare else []) + [path]
            proc = subprocess.run(args, capture_output=True, env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
            if proc.returncode != 0:
                raise GitError(f"git init {path}: {proc.stderr.decode(errors='replace').strip()}")
        repo = cls(git_dir, ssh)
        # Unreferenced merge results are the cache's value: automatic gc must not prune them.
        repo.git("config", "gc.auto", "0")
        return repo

    # -- running git ------------------------------------------------------------------------------------------
    def run(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        full_env = self._env if not env else {**self._env, **env}
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, *args], input=input, capture_output=True, env=full_env, cwd=cwd
        )

    def git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
        proc = self.run(*args, input=input, env=env)
        if proc.returncode != 0:
            raise GitError(f"git {' '.join(args[:4])} in {self.git_dir}: {_stderr(proc)}")
        return proc.stdout.decode(errors="replace")

    # -- reading ----------------------------------------------------------------------------------------------
    def missing(self, shas: Iterable[str]) -> set[str]:
        """The commits (or other objects) among `shas` this repository does not have."""
        wanted = sorted({s for s in shas if s})
        if not wanted:
            return set()
        proc = self.run("cat-file", "--batch-check", input=("\n".join(wanted) + "\n").encode())
        if proc.returncode != 0:
            raise GitError(f"git cat-file --batch-check in {self.git_dir}: {_stderr(proc)}")
        return {line.split()[0] for line in proc.stdout.decode().splitlines() if line.endswith(" missing")}

    def rev_parse(self, ref: str) -> str | None:
        proc = self.run("rev-parse", "--verify", "-q", ref + "^{commit}")
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().strip() or None

    def commit_info(self, sha: str) -> CommitInfo:
        raw = self.run("cat-file", "commit", sha)
        if raw.returncode != 0:
            raise GitError(f"commit {sha} not found in {self.git_dir}: {_stderr(raw)}")
        header, _, message = raw.stdout.partition(b"\n\n")
        tree, parents = "", []
        author = committer = ("", "", "")
        for line in header.split(b"\n"):
            key, _, value = line.partition(b" ")
            if key == b"tree":
                tree = value.decode()
            elif key == b"parent":
                parents.append(value.decode())
            elif key == b"author":
                author = _parse_person(value)
            elif key == b"committer":
                committer = _parse_person(value)
        return CommitInfo(tree, parents, author, committer, message)

    # -- fetching ---------------------------------------------------------------------------------------------
    def fetch(self, url: str, refspecs: Iterable[str]) -> None:
        """Fetch exactly `refspecs` from `url` (no tags, no FETCH_HEAD, which would race between fetches)."""
        specs = list(dict.fromkeys(refspecs))
        if not specs:
            return
        self.fetches += 1
        log.debug("fetching %s from %s into %s", " ".join(specs), url, self.git_dir)
        proc = self.run("fetch", "-q", "--no-tags", "--no-write-fetch-head", "--no-auto-gc", url, *specs)
        if proc.returncode != 0:
            raise GitError(f"fetching {', '.join(specs)} from {url} failed: {_stderr(proc)}")

    # -- merging ----------------------------------------------------------------------------------------------
    def merge(self, base: str, commit: str, mode: str = "merge-resolve", branch: str = "master",
              ref: str = "") -> MergeOutcome:
        """Merge `commit` onto `base` the way `mode` says; the result depends only on the arguments.

        merge-resolve and merge fast-forward when they can, as `git merge` does; cherry-pick replays the commit
        onto `base` keeping its author and message.  Raises MergeConflict when the change does not merge.
        """
        if mode not in MODES:
            raise GitError(f"unknown merge mode {mode!r} (expected one of {', '.join(MODES)})")
        info = self.commit_info(commit)
        if mode == "cherry-pick" and len(info.parents) <= 1:
            return self._cherry_pick(base, commit, info)
        bases = self.git("merge-base", "--all", base, commit).split() if base != commit else [commit]
        if commit in bases:
            return MergeOutcome(base, "already-merged")
        if bases == [base]:
            return MergeOutcome(commit, "fast-forward")
        if not bases:
            raise MergeConflict(f"{commit[:12]} has no common history with {base[:12]}")
        if mode == "merge":
            tree = self._merge_ort(base, commit)
        else:
            tree = self._merge_resolve(bases, base, commit)
        name = ref or commit
        message = f"Merge {name} into {branch}\n".encode()
        when = info.committer[2]
        merged = self._commit_tree(tree, [base, commit], message, (*IDENTITY, when), (*IDENTITY, when))
        return MergeOutcome(merged, "merge")

    def _cherry_pick(self, base: str, commit: str, info: CommitInfo) -> MergeOutcome:
        parent = info.parents[0] if info.parents else EMPTY_TREE
        if parent == base:
            return MergeOutcome(commit, "fast-forward")
        tree = self._merge_resolve([parent], base, commit)
        if tree == self.commit_info(base).tree:
            return MergeOutcome(base, "already-merged")  # everything the change does is already there
        committer = (*IDENTITY, info.committer[2])
        picked = self._commit_tree(tree, [base], info.message, info.author, committer)
        return MergeOutcome(picked, "cherry-pick")

    def _commit_tree(self, tree: str, parents: list[str], message: bytes, author: tuple[str, str, str],
                     committer: tuple[str, str, str]) -> str:
        env = {
            "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1], "GIT_AUTHOR_DATE": author[2],
            "GIT_COMMITTER_NAME": committer[0], "GIT_COMMITTER_EMAIL": committer[1],
            "GIT_COMMITTER_DATE": committer[2],
        }
        args = ["commit-tree", "--no-gpg-sign", tree]
        for p in parents:
            args += ["-p", p]
        return self.git(*args, input=message, env=env).strip()

    def _merge_ort(self, ours: str, theirs: str) -> str:
        """`git merge`'s default strategy, without a work tree."""
        proc = self.run("merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs)
        lines = proc.stdout.decode(errors="replace").splitlines()
        if proc.returncode == 1:
            raise MergeConflict("merge conflict", {x for x in lines[1:] if x})
        if proc.returncode != 0 or not lines:
            raise GitError(f"git merge-tree {ours[:12]} {theirs[:12]} in {self.git_dir}: {_stderr(proc)}")
        return lines[0].strip()

    def _merge_resolve(self, bases: list[str], ours: str, theirs: str) -> str:
        """`git merge -s resolve` without a work tree: read-tree's trivial merge, then merge-one-file's rules."""
        with tempfile.TemporaryDirectory(prefix="gk-merge-") as tmp:
            env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
            self.git("read-tree", "-i", "-m", "--aggressive", *bases, ours, theirs, env=env)
            unmerged = self.git("ls-files", "-u", "-z", env=env)
            if unmerged:
                self._resolve_files(_parse_unmerged(unmerged), tmp, env)
            return self.git("write-tree", env=env).strip()

    def _resolve_files(self, entries: dict[str, dict[int, tuple[str, str]]], tmp: str, env: dict[str, str]) -> None:
        conflicts: list[str] = []
        updates: list[str] = []
        to_merge: list[tuple[str, tuple[str, str] | None, tuple[str, str], tuple[str, str]]] = []
        for path, stages in entries.items():
            base, ours, theirs = stages.get(1), stages.get(2), stages.get(3)
            if ours is None and theirs is None:
                updates.append(f"0 {ZERO_SHA}\t{path}")
            elif ours is None or theirs is None:
                side = ours or theirs
                if base is None:
                    updates.append(f"{side[0]} {side[1]} 0\t{path}")
                elif side == base:
                    updates.append(f"0 {ZERO_SHA}\t{path}")
                else:
                    conflicts.append(path)  # deleted on one side, changed on the other
            elif ours == theirs:
                updates.append(f"{ours[0]} {ours[1]} 0\t{path}")
            elif base is None or ours[0] != theirs[0] or {ours[0], theirs[0]} & set(_UNMERGEABLE_MODES):
                conflicts.append(path)  # added differently on both sides, or a mode/symlink/submodule clash
            else:
                to_merge.append((path, base, ours, theirs))
        merged_files: list[tuple[str, str, str]] = []
        blobs = self._read_blobs({e[1] for _, b, o, t in to_merge for e in (b, o, t) if e})
        for i, (path, base, ours, theirs) in enumerate(to_merge):
            names = [os.path.join(tmp, f"{i}.{k}") for k in ("ours", "base", "theirs")]
            for name, entry in zip(names, (ours, base, theirs), strict=True):
                with open(name, "wb") as f:
                    f.write(blobs[entry[1]] if entry else b"")
            proc = subprocess.run(["git", "merge-file", "-q", *names], capture_output=True, env=self._env)
            if proc.returncode != 0:
                conflicts.append(path)
            else:
                merged_files.append((path, ours[0], names[0]))
        if conflicts:
            raise MergeConflict("merge conflict", conflicts)
        if merged_files:
            paths = "\n".join(name for _, _, name in merged_files) + "\n"
            shas = self.git("hash-object", "-w", "--stdin-paths", input=paths.encode()).split()
            for (path, mode, _), sha in zip(merged_files, shas, strict=True):
                updates.append(f"{mode} {sha} 0\t{path}")
        data = "".join(u + "\0" for u in updates).encode("utf-8", errors="surrogateescape")
        self.git("update-index", "-z", "--index-info", input=data, env=env)

    def _read_blobs(self, shas: set[str]) -> dict[str, bytes]:
        if not shas:
            return {}
        order = sorted(shas)
        proc = self.run("cat-file", "--batch", input=("\n".join(order) + "\n").encode())
        if proc.returncode != 0:
            raise GitError(f"git cat-file --batch in {self.git_dir}: {_stderr(proc)}")
        out, pos, blobs = proc.stdout, 0, {}
        for sha in order:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            size = int(header[2])
            blobs[sha] = out[end + 1 : end + 1 + size]
            pos = end + 1 + size + 1
        return blobs

    # -- recipes ----------------------------------------------------------------------------------------------
    def apply_step(self, step: MergeStep) -> str:
        """Redo one recipe step and check it gives the recorded commit."""
        outcome = self.merge(step.base, step.change_commit, step.mode, step.branch, step.change_ref)
        if step.result and outcome.commit != step.result:
            raise GitError(
                f"{step.project} {step.branch}: replaying {step.change_ref or step.change_commit} ({step.mode}) onto "
                f"{step.base[:12]} gave {outcome.commit[:12]}, not {step.result[:12]} as recorded"
            )
        return outcome.commit


def _stderr(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.decode(errors="replace").strip().replace("\n", "; ")


def _parse_unmerged(raw: str) -> dict[str, dict[int, tuple[str, str]]]:
    entries: dict[str, dict[int, tuple[str, str]]] = {}
    for record in raw.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, sha, stage = meta.split()
        entries.setdefault(path, {})[int(stage)] = (mode, sha)
    return entries


def tip_ref(branch: str) -> str:
    """Where a fetched branch tip is kept: outside refs/heads, so fetching never touches a checked-out branch."""
    return f"refs/remotes/origin/{branch}"


def branch_refspec(branch: str) -> str:
    """What fetches `branch` to its tip_ref; a full ref name (a tag item's `refs/tags/v1`) is fetched as itself."""
    return f"+{branch}:{tip_ref(branch)}" if branch.startswith("refs/") else f"+refs/heads/{branch}:{tip_ref(branch)}"


def ref_refspec(ref: str) -> str:
    return f"+{ref}:{ref}"


def replay(repo: GitRepo, steps: Iterable[MergeStep], url: str | None, refspecs: Iterable[str] = (),
           wanted: dict[str, str] | None = None) -> int:
    """Make sure every result of `steps` (one project's) and every `wanted` commit (branch -> sha) is in `repo`.

    Fetches at most once for what is known to be needed (`refspecs`, change refs, branch tips for commits that
    were branch tips in Gerrit), replays the missing steps in order, checking each gives the recorded commit,
    and fetches any still-missing commit by SHA as a last resort.  Returns how many steps were replayed.
    """
    steps = list(steps)
    refspecs = list(refspecs)
    wanted = dict(wanted or {})
    missing_results = repo.missing(s.result for s in steps)
    todo = [s for s in steps if s.result in missing_results]
    produced = {s.result for s in todo}
    inputs = [s.change_commit for s in todo] + [s.base for s in todo if s.base not in produced]
    need = repo.missing(inputs + [sha for sha in wanted.values() if sha not in produced])
    for s in todo:
        if s.change_commit in need and s.change_ref:
            refspecs.append(ref_refspec(s.change_ref))
        if s.base in need:
            refspecs.append(branch_refspec(s.branch))  # the base was a branch tip in Gerrit
    refspecs += [branch_refspec(b) for b, sha in wanted.items() if sha in need]
    if refspecs:
        _fetch(repo, url, refspecs)
        still = repo.missing(inputs)
        if still:  # e.g. a branch that moved on by force since: ask for the commits themselves
            _fetch(repo, url, sorted(still))
        gone = repo.missing(s.result for s in todo)  # a fast-forward's result is the change, fetched with its ref
        todo = [s for s in todo if s.result in gone]
    for s in todo:
        repo.apply_step(s)
    missing_wanted = repo.missing(wanted.values())
    if missing_wanted:
        _fetch(repo, url, sorted(missing_wanted))
        lost = repo.missing(wanted.values())
        if lost:
            raise GitError(f"commits {', '.join(sorted(x[:12] for x in lost))} are not in {url}")
    return len(todo)


def _fetch(repo: GitRepo, url: str | None, refspecs: list[str]) -> None:
    if not url:
        raise GitError(f"{repo.git_dir} needs {', '.join(refspecs)} but no fetch URL is known for it")
    repo.fetch(url, refspecs)


def steps_by_project(state: RepoState) -> dict[str, list[MergeStep]]:
    out: dict[str, list[MergeStep]] = {}
    for raw in state.steps:
        step = MergeStep.from_dict(raw)
        out.setdefault(step.project, []).append(step)
    return out


def reproduce(
    repo_state: RepoState | dict[str, Any],
    git_dir: str,
    fetch_url_for_project: Callable[[str], str],
    *,
    ssh: str | None = None,
    checkout: dict[str, str] | None = None,
    reference_dir: str | None = None,
) -> dict[str, str]:
    """Build a work tree per project under `git_dir` at exactly `repo_state`, and return project -> path.

    Fetches the branch tips and change refs from Gerrit, replays the recipe, points each branch at its commit
    (checking it is exactly the recorded SHA) and checks out `checkout[project]` (default: the branch of the
    project's last step, else its first branch).  With `reference_dir` (a merger's cache on this host:
    `<dir>/<project>.git`), objects found there are borrowed instead of fetched.  Raises GitError when the state
    cannot be rebuilt.
    """
    state = repo_state if isinstance(repo_state, RepoState) else RepoState.from_dict(repo_state)
    by_project = steps_by_project(state)
    paths: dict[str, str] = {}
    for project, branches in sorted(state.branches.items()):
        path = os.path.join(git_dir, project)
        repo = GitRepo.init(path, bare=False, ssh=ssh)
        if reference_dir:
            _borrow_objects(repo, os.path.join(reference_dir, project + ".git"))
        steps = by_project.get(project, [])
        url = fetch_url_for_project(project)
        replay(repo, steps, url, wanted=branches)
        for branch, sha in branches.items():
            ref = work_ref(branch)
            repo.git("update-ref", ref, sha)
            if repo.rev_parse(ref) != sha:
                raise GitError(f"{project} {branch}: could not point {ref} at {sha}")
        target = (checkout or {}).get(project) or (steps[-1].branch if steps else next(iter(branches)))
        # a tag item's project is at the commit its tag names, on a detached HEAD (as Zuul checks a tag out)
        where = ["--detach", work_ref(target)] if target.startswith("refs/") else [target]
        proc = repo.run("checkout", "-q", "-f", *where, cwd=path, env={"GIT_WORK_TREE": path})
        if proc.returncode != 0:
            raise GitError(f"{project}: checking out {target} in {path} failed: {_stderr(proc)}")
        head = repo.rev_parse("HEAD")
        if head != branches[target]:
            raise GitError(f"{project}: {path} is at {head}, not {branches[target]} as the repo state says")
        paths[project] = path
    return paths


def work_ref(branch: str) -> str:
    """Where a work tree keeps a repo state's branch: a branch under refs/heads, a tag item's full ref (such as
    refs/tags/1.0) as itself."""
    return branch if branch.startswith("refs/") else f"refs/heads/{branch}"


def _borrow_objects(repo: GitRepo, reference: str) -> None:
    """Let `repo` read objects from the repository at `reference` (git alternates); the merger never prunes."""
    objects = os.path.join(os.path.abspath(reference), "objects")
    if not os.path.isdir(objects):
        return
    info = os.path.join(repo.git_dir, "objects", "info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "alternates"), "w") as f:
        f.write(objects + "\n")
