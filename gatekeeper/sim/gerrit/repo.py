"""Real bare git repositories behind the simulated Gerrit, driven with git plumbing (no work trees)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class GitError(RuntimeError):
    """A git command the simulator ran failed."""


@dataclass
class FileChange:
    """One file of a patch set, as Gerrit's query --files reports it."""

    file: str
    type: str  # ADDED, MODIFIED, DELETED, RENAMED, COPIED
    insertions: int
    deletions: int
    file_old: str | None = None


class BareRepo:
    """A bare repository on disk; every method runs one or a few git commands."""

    def __init__(self, path: str) -> None:
        self.path = path

    def git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            check: bool = True) -> str:
        full_env = dict(os.environ)
        full_env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"})
        if env:
            full_env.update(env)
        proc = subprocess.run(
            ["git", "--git-dir", self.path, *args], input=input, capture_output=True, env=full_env
        )
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args)} in {self.path}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout.decode(errors="replace")

    @classmethod
    def init(cls, path: str, head: str = "master") -> BareRepo:
        os.makedirs(path, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", head, path], check=True, capture_output=True)
        repo = cls(path)
        repo.git("config", "uploadpack.allowAnySHA1InWant", "true")
        repo.git("config", "receive.denyNonFastForwards", "false")
        return repo

    # -- reading ----------------------------------------------------------------------------------------------
    def rev_parse(self, ref: str) -> str | None:
        out = self.git("rev-parse", "--verify", "-q", ref + "^{commit}", check=False).strip()
        return out or None

    def read_ref(self, ref: str) -> str | None:
        """The commit a full ref name points at, read from the ref files as git stores them (no git process);
        through git when the ref is symbolic or stored otherwise."""
        try:
            with open(os.path.join(self.path, ref), "rb") as f:
                value = f.read().strip().decode()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            value = ""
            try:
                with open(os.path.join(self.path, "packed-refs"), "rb") as f:
                    for line in f:
                        sha, _, name = line.strip().decode().partition(" ")
                        if name == ref:
                            value = sha
                            break
            except FileNotFoundError:
                pass
            if not value:
                return self.rev_parse(ref) if os.path.exists(os.path.join(self.path, "reftable")) else None
        if len(value) != 40 or value.startswith("ref:"):
            return self.rev_parse(ref)
        return value

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", prefix)
        return {name: sha for sha, name in (line.split(" ", 1) for line in out.splitlines() if line)}

    def commit_info(self, sha: str) -> dict:
        """Parents, author, committer and full message of a commit."""
        out = self.git("show", "-s", "--format=%P%x00%an%x00%ae%x00%at%x00%B", sha)
        parents, name, email, when, message = out.split("\x00", 4)
        return {
            "parents": parents.split(),
            "author_name": name,
            "author_email": email,
            "author_time": int(when),
            "message": message.rstrip("\n") + "\n",
        }

    def show_bytes(self, sha: str, path: str) -> bytes:
        """The content of `path` at commit `sha`."""
        proc = subprocess.run(["git", "--git-dir", self.path, "show", f"{sha}:{path}"], capture_output=True)
        if proc.returncode != 0:
            raise GitError(f"git show {sha}:{path} in {self.path}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = subprocess.run(
            ["git", "--git-dir", self.path, "merge-base", "--is-ancestor", ancestor, descendant],
            capture_output=True,
        )
        return proc.returncode == 0

    def rev_list(self, include: str, exclude: str | None) -> list[str]:
        args = ["rev-list", "--topo-order", "--reverse", include] + ([f"^{exclude}"] if exclude else [])
        return self.git(*args).split()

    def rev_list_parents(self, include: str, exclude: str | None) -> list[tuple[str, list[str]]]:
        """`rev_list`, each commit with its parents (one git process for both)."""
        args = ["rev-list", "--parents", "--topo-order", "--reverse", include] + ([f"^{exclude}"] if exclude else [])
        return [(shas[0], shas[1:]) for shas in (line.split() for line in self.git(*args).splitlines()) if shas]

    def diff_files(self, parent: str | None, sha: str) -> list[FileChange]:
        """Files changed by `sha` against `parent` (the empty tree for a root commit)."""
        base = parent or EMPTY_TREE
        out = self.git("diff-tree", "-r", "-M", "--no-commit-id", "--raw", "--numstat", "-z", base, sha)
        fields = out.split("\x00")
        raw: list[tuple[str, str, str | None]] = []
        stats: dict[str, tuple[int, int]] = {}
        i = 0
        while i < len(fields):
            f = fields[i]
            if f.startswith(":"):
                status = f.split()[-1]
                if status[0] in "RC":
                    raw.append((status[0], fields[i + 2], fields[i + 1]))
                    i += 3
                else:
                    raw.append((status[0], fields[i + 1], None))
                    i += 2
            elif f and "\t" in f:
                ins, dels, path = f.split("\t", 2)
                if path == "":  # rename: old and new path follow
                    path = fields[i + 2]
                    i += 3
                else:
                    i += 1
                stats[path] = (int(ins) if ins != "-" else 0, int(dels) if dels != "-" else 0)
            else:
                i += 1
        kinds = {"A": "ADDED", "M": "MODIFIED", "D": "DELETED", "R": "RENAMED", "C": "COPIED", "T": "MODIFIED"}
        return [
            FileChange(path, kinds.get(st, "MODIFIED"), *stats.get(path, (0, 0)), file_old=old)
            for st, path, old in raw
        ]

    # -- writing ----------------------------------------------------------------------------------------------
    def commit(
        self,
        parents: list[str],
        message: str,
        files: dict[str, str | bytes | None] | None = None,
        author: tuple[str, str] = ("Gerrit Simulator", "sim@example.com"),
        when: int | None = None,
        tree: str | None = None,
    ) -> str:
        """Write a commit on top of the first parent's tree with `files` changed (None deletes a file)."""
        if tree is None:
            with tempfile.TemporaryDirectory(prefix="gksim-idx-") as tmp:
                env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
                if parents:
                    self.git("read-tree", parents[0], env=env)
                lines = []
                for path, content in (files or {}).items():
                    if content is None:
                        lines.append(f"0 {ZERO_SHA}\t{path}")
                        continue
                    data = content.encode() if isinstance(content, str) else content
                    blob = self.git("hash-object", "-w", "--stdin", input=data).strip()
                    lines.append(f"100644 {blob}\t{path}")
                if lines:
                    self.git("update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=env)
                tree = self.git("write-tree", env=env).strip()
        stamp = f"{when} +0000" if when is not None else None
        env = {
            "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": author[0], "GIT_COMMITTER_EMAIL": author[1],
        }
        if stamp:
            env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        return self.git(*args, input=message.encode(), env=env).strip()

    def merge_tree(self, ours: str, theirs: str) -> str | None:
        """The merged tree of two commits, or None when they conflict."""
        proc = subprocess.run(
            ["git", "--git-dir", self.path, "merge-tree", "--write-tree", ours, theirs], capture_output=True
        )
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().split("\n", 1)[0].strip()

    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        args = ["update-ref", ref, new] + ([old] if old else [])
        self.git(*args)

    def delete_ref(self, ref: str) -> None:
        self.git("update-ref", "-d", ref)
