"""The devstack stand-in project (and a matching nova), and how to seed them as git repos.

    from gatekeeper.sim.devstack import seed_devstack, seed_nova
    seed_devstack(sim.project("openstack-dev/devstack").repo.path)   # a bare repo; commits on top of master
    seed_nova(sim.project("openstack/nova").repo.path)

See gatekeeper.sim.devstack.project for what stack.sh and exercise.sh do.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from gatekeeper.sim.devstack.project import (
    BROKEN_NOVA_COMPUTE,
    BROKEN_SERVER_MARKER,
    DEVSTACK_FILES,
    FAULT_FLAKY_BUG,
    FAULT_SERVICE_FAIL,
    FLAKY_BUG_LINE,
    NOVA_COMPUTE,
    NOVA_FILES,
    UNLOADABLE_NOVA_INIT,
)

IDENTITY = {"GIT_AUTHOR_NAME": "devstack seed", "GIT_AUTHOR_EMAIL": "seed@gatekeeper.invalid",
            "GIT_COMMITTER_NAME": "devstack seed", "GIT_COMMITTER_EMAIL": "seed@gatekeeper.invalid",
            "GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"}


def _git(git_dir: str, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    full = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, **(env or {})}
    proc = subprocess.run(["git", "--git-dir", git_dir, *args], input=input, capture_output=True, env=full)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args[:3])} in {git_dir}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def seed_files(git_dir: str, files: dict[str, tuple[str, bool]], message: str, branch: str = "master",
               parent: str | None = None) -> str:
    """Commit `files` (path -> (text, executable)) onto `branch` (or onto `parent`, then point `branch` at it) of
    the repo at git_dir (bare, or a .git); returns the new commit."""
    if not os.path.exists(os.path.join(git_dir, "HEAD")):
        subprocess.run(["git", "init", "-q", "--bare", "-b", branch, git_dir], check=True, capture_output=True)
    if not parent:
        tip = ["git", "--git-dir", git_dir, "rev-parse", "--verify", "-q", f"refs/heads/{branch}"]
        parent = subprocess.run(tip, capture_output=True).stdout.decode().strip()
    with tempfile.TemporaryDirectory(prefix="gk-seed-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        if parent:
            _git(git_dir, "read-tree", parent, env=env)
        lines = []
        for path, (text, executable) in sorted(files.items()):
            blob = _git(git_dir, "hash-object", "-w", "--stdin", input=text.encode()).strip()
            lines.append(f"{'100755' if executable else '100644'} {blob}\t{path}")
        _git(git_dir, "update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=env)
        tree = _git(git_dir, "write-tree", env=env).strip()
    args = ["commit-tree", tree] + (["-p", parent] if parent else [])
    sha = _git(git_dir, *args, input=message.encode() + b"\n", env=IDENTITY).strip()
    _git(git_dir, "update-ref", f"refs/heads/{branch}", sha)
    return sha


def seed_devstack(git_dir: str, branch: str = "master") -> str:
    return seed_files(git_dir, DEVSTACK_FILES, "Add the devstack stand-in", branch)


def seed_nova(git_dir: str, branch: str = "master") -> str:
    return seed_files(git_dir, NOVA_FILES, "Add the nova stand-in", branch)


__all__ = ["BROKEN_NOVA_COMPUTE", "BROKEN_SERVER_MARKER", "DEVSTACK_FILES", "FAULT_FLAKY_BUG", "FAULT_SERVICE_FAIL",
           "FLAKY_BUG_LINE", "NOVA_COMPUTE", "NOVA_FILES", "UNLOADABLE_NOVA_INIT", "seed_devstack", "seed_files",
           "seed_nova"]
