"""The merger's repo cache: one bare repository per project, fetched from Gerrit on demand."""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable

from gatekeeper.gitrepo import GitError, GitRepo, replay
from gatekeeper.zk.merges import MergeStep
from gatekeeper.zk.server import pid_alive

log = logging.getLogger("gatekeeper.merger.cache")


class CacheInUse(RuntimeError):
    """Another merger process already uses this cache directory."""


def _remove_control_dirs_of_dead_mergers() -> None:
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "gk-ssh-*-*")):
        pid = os.path.basename(path).split("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


class RepoCache:
    """Bare repos under `root` (`<root>/<project>.git`).

    Fetches into one repository are serialized (concurrent fetches race on ref locks); merges need no lock,
    because they write only objects, through a temporary index.  One process per cache directory.
    """

    def __init__(self, root: str, ssh: str | None = None, ssh_multiplex: bool = True) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.ssh = ssh
        self._plain_ssh = ssh
        self.ssh_multiplex = ssh_multiplex
        self._control_dir: str | None = None
        self._repos: dict[str, GitRepo] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._lockfile: int | None = None

    def open(self) -> RepoCache:
        """Claim the directory for this process (a second merger on the same cache would corrupt it)."""
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, ".merger.lock"), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CacheInUse(f"merger cache {self.root} is in use by another merger process") from None
        self._lockfile = fd
        if self.ssh and self.ssh_multiplex:
            # One SSH connection per Gerrit reused by every fetch halves a fetch's cost.  The socket path must
            # stay short (sun_path is ~107 bytes), hence a directory of its own under the system temp dir.
            # (its name carries the pid: a merger that was killed cannot remove its own, the next one does)
            _remove_control_dirs_of_dead_mergers()
            self._control_dir = tempfile.mkdtemp(prefix=f"gk-ssh-{os.getpid()}-")
            self.ssh = f"{self._plain_ssh} -o ControlMaster=auto -o ControlPath={self._control_dir}/%C" \
                " -o ControlPersist=60"
            for repo in self._repos.values():
                repo.set_ssh(self.ssh)
        return self

    def close(self) -> None:
        """End the shared SSH connections and release the directory."""
        if self._control_dir:
            for sock in glob.glob(os.path.join(self._control_dir, "*")):
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "gatekeeper-merger"],
                               capture_output=True, timeout=10)
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self.ssh = self._plain_ssh
            self._control_dir = None
            for repo in self._repos.values():
                repo.set_ssh(self.ssh)
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None

    @property
    def fetches(self) -> int:
        """Fetches made so far, over all projects."""
        with self._guard:
            return sum(r.fetches for r in self._repos.values())

    def repo(self, project: str) -> GitRepo:
        with self._guard:
            repo = self._repos.get(project)
            if repo is None:
                if ".." in project.split("/") or project.startswith("/"):
                    raise GitError(f"project name {project!r} is not a safe path")
                repo = GitRepo.init(os.path.join(self.root, project + ".git"), ssh=self.ssh)
                self._repos[project] = repo
                self._locks[project] = threading.Lock()
            return repo

    def lock(self, project: str) -> threading.Lock:
        self.repo(project)
        return self._locks[project]

    def prepare(self, project: str, url: str | None, steps: Iterable[MergeStep] = (), refspecs: Iterable[str] = (),
                wanted: dict[str, str] | None = None) -> int:
        """Fetch `refspecs` and whatever `steps`/`wanted` need that is missing, replaying steps made elsewhere.

        Returns the number of steps replayed.
        """
        repo = self.repo(project)
        with self._locks[project]:
            return replay(repo, steps, url, refspecs, wanted)
