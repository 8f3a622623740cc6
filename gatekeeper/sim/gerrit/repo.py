"""Real bare git repositories behind the simulated Gerrit, driven with git plumbing (no work trees)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zlib
from dataclasses import dataclass

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
CRUD = " .,:;<>\"\\'\t\n"  # what git strips from the ends of an identity's name and email


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
        if when is not None and all(x and x.strip(CRUD) == x and "<" not in x and ">" not in x for x in author):
            return self._write_commit(tree, parents, message, author, when)
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

    def _write_commit(self, tree: str, parents: list[str], message: str, author: tuple[str, str], when: int) -> str:
        """The commit `git commit-tree` writes for these (same bytes, same SHA), written as a loose object here,
        as Gerrit writes objects itself rather than through a git process."""
        who = f"{author[0]} <{author[1]}> {when} +0000"
        body = "".join([f"tree {tree}\n", *(f"parent {p}\n" for p in parents), f"author {who}\n",
                        f"committer {who}\n", "\n", message]).encode()
        raw = b"commit %d\0" % len(body) + body
        sha = hashlib.sha1(raw).hexdigest()
        folder = os.path.join(self.path, "objects", sha[:2])
        target = os.path.join(folder, sha[2:])
        if not os.path.exists(target):
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(zlib.compress(raw))
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        return sha

    def merge_tree(self, ours: str, theirs: str) -> str | None:
        """The merged tree of two commits, or None when they conflict."""
        proc = subprocess.run(
            ["git", "--git-dir", self.path, "merge-tree", "--write-tree", ours, theirs], capture_output=True
        )
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().split("\n", 1)[0].strip()

    def update_ref(self, ref: str, new: str, old: str | None = None) -> None:
        """Point `ref` at `new` (only if it is at `old`, when given), as git does: under the ref's lock file, by
        renaming the new ref file into place; through git when the lock is taken (git waits for it)."""
        path = os.path.join(self.path, ref)
        lock = path + ".lock"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except (FileExistsError, NotADirectoryError, FileNotFoundError):
            self.git("update-ref", ref, new, *([old] if old else []))
            return
        try:
            current = self.read_ref(ref)
            if old and current != old:
                raise GitError(f"git update-ref {ref} in {self.path}: cannot lock ref '{ref}': is at "
                               f"{current or 'nothing'} but expected {old}")
            with os.fdopen(fd, "w") as f:
                fd = -1
                f.write(new + "\n")
            os.replace(lock, path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if os.path.exists(lock):
                os.unlink(lock)
            raise

    def delete_ref(self, ref: str) -> None:
        self.git("update-ref", "-d", ref)
