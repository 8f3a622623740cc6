"""A developer's loop with the real git-review against the Gerrit simulator, over OpenSSH and scp:
`-s`, upload, `-t`, `-w`, `--reviewers`, a push with nothing new, `-l`, `-d` and `-x`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.sim.gerrit.hooks import COMMIT_MSG_HOOK

GIT_REVIEW = os.path.join(os.path.dirname(sys.executable), "git-review")  # a test extra in setup.cfg


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GerritSimulator]:
    root = tmp_path_factory.mktemp("gerrit-sim-git-review")
    simulator = GerritSimulator(str(root / "site")).start()
    try:
        simulator.add_account("jane", name="Jane Dev", email="jane@example.com", key_dir=str(root / "keys"))
        simulator.add_account("rita", name="Rita Core", email="rita@example.com")
        project = simulator.create_project("org/project")
        gitreview = f"[gerrit]\nhost=127.0.0.1\nport={simulator.port}\nproject=org/project.git\n"
        tip = project.repo.commit([simulator.branch_tip("org/project")], "Add .gitreview\n",
                                  {".gitreview": gitreview, "README": "project\n"})
        project.repo.update_ref("refs/heads/master", tip)
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def env(sim: GerritSimulator, tmp_path: Path) -> dict[str, str]:
    """PATH with `ssh` and `scp` wrappers that log in as jane (OpenSSH ignores $HOME for its config)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    config = tmp_path / "ssh_config"
    config.write_text(f"Host 127.0.0.1\n  User jane\n  IdentityFile {sim.accounts['jane'].key_file}\n"
                      "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                      "  LogLevel ERROR\n")
    for tool in ("ssh", "scp"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/{tool} -F {config} "$@"\n')
        wrapper.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n  name = Jane Dev\n  email = jane@example.com\n"
                                     "[gitreview]\n  username = jane\n[init]\n  defaultBranch = master\n")
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(home), GIT_CONFIG_NOSYSTEM="1",
                LANG="C.UTF-8")


def sh(env: dict[str, str], cwd: Path, *argv: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    if ok:
        assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc


def review(env: dict[str, str], cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    return sh(env, cwd, GIT_REVIEW, *args, ok=ok)


def test_git_review_workflow(sim: GerritSimulator, env: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    sh(env, tmp_path, "git", "clone", "-q", sim.ssh_url("org/project"), str(work))

    # -s: the gerrit remote, and the commit-msg hook fetched from the server by scp.
    review(env, work, "-s", "--remote-hook")
    assert sh(env, work, "git", "remote", "get-url", "gerrit").stdout.strip() == \
        f"ssh://jane@127.0.0.1:{sim.port}/org/project.git"
    assert (work / ".git" / "hooks" / "commit-msg").read_text() == COMMIT_MSG_HOOK

    # Upload with a topic and a reviewer: one new change, its URL printed.
    (work / "feature.txt").write_text("one\n")
    sh(env, work, "git", "add", "feature.txt")
    sh(env, work, "git", "commit", "-q", "-m", "Add a feature")
    out = review(env, work, "-t", "speed", "--reviewers", "rita").stdout
    change = max(sim.changes.values(), key=lambda c: c.number)
    assert f"{change.url} Add a feature [NEW]" in out
    assert (change.subject, change.topic, change.reviewers, change.owner.username) == \
        ("Add a feature", "speed", ["rita"], "jane")

    # Amend and upload as work in progress: a second patch set of the same change.
    (work / "feature.txt").write_text("one, better\n")
    sh(env, work, "git", "commit", "-q", "-a", "--amend", "--no-edit")
    review(env, work, "-w")
    assert (len(change.patch_sets), change.wip) == (2, True)
    assert change.current.revision == sh(env, work, "git", "rev-parse", "HEAD").stdout.strip()

    # Nothing new: Gerrit's refusal, and git-review fails.
    proc = review(env, work, "-R", ok=False)
    assert proc.returncode != 0 and "(no new changes)" in proc.stdout

    # -l lists the open change with its subject (-ll adds the topic).
    listed = review(env, work, "-ll").stdout
    assert any(line.split()[:1] == [str(change.number)] and "speed" in line and "Add a feature" in line
               for line in listed.splitlines()), listed

    # -d downloads the current patch set into a review/ branch; N,1 gets patch set 1.
    other = tmp_path / "other"
    sh(env, tmp_path, "git", "clone", "-q", sim.ssh_url("org/project"), str(other))
    review(env, other, "-s")
    review(env, other, "-d", str(change.number))
    assert sh(env, other, "git", "rev-parse", "HEAD").stdout.strip() == change.current.revision
    assert sh(env, other, "git", "rev-parse", "--abbrev-ref", "HEAD").stdout.strip().startswith("review/")
    review(env, other, "-d", f"{change.number},1")
    assert sh(env, other, "git", "rev-parse", "HEAD").stdout.strip() == change.patch_sets[0].revision

    # -x cherry-picks the change onto the current branch (-X would also record where it came from).
    sh(env, other, "git", "checkout", "-q", "-b", "pick", "gerrit/master")
    review(env, other, "-x", str(change.number))
    head, parent = sh(env, other, "git", "rev-parse", "HEAD", "HEAD^").stdout.split()
    assert head != change.current.revision and parent == sim.branch_tip("org/project")
    assert sh(env, other, "git", "log", "-1", "--format=%B").stdout.strip() == change.current.commit_message.strip()
    assert (other / "feature.txt").read_text() == "one, better\n"
