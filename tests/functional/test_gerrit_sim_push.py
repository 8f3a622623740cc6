"""Pushes to the Gerrit simulator with stock git over OpenSSH: Gerrit's verdicts, messages and push options, and
the commit-msg hook served over HTTP and scp."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.sim.gerrit import GerritSimulator

CHANGE_ID = "I" + "a" * 40


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GerritSimulator]:
    root = tmp_path_factory.mktemp("gerrit-sim-push")
    simulator = GerritSimulator(str(root / "site"), http_port=0).start()
    try:
        keys = str(root / "keys")
        simulator.add_account("jane", name="Jane Dev", email="jane@example.com", key_dir=keys)
        simulator.add_account("rita", name="Rita Core", email="rita@example.com")
        simulator.add_account("carl", name="Carl Cc", email="carl@example.com")
        simulator.create_project("org/project")
        yield simulator
    finally:
        simulator.stop()


def ssh_command(sim: GerritSimulator, user: str) -> str:
    return (f"ssh -i {sim.accounts[user].key_file} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o LogLevel=ERROR -p {sim.port}")


@pytest.fixture
def work(sim: GerritSimulator, tmp_path: Path) -> Path:
    """A clone of org/project as jane, with her identity set."""
    path = tmp_path / "work"
    run(sim, "clone", "-q", sim.ssh_url("org/project", "jane"), str(path), cwd=tmp_path)
    run(sim, "config", "user.name", "Jane Dev", cwd=path)
    run(sim, "config", "user.email", "jane@example.com", cwd=path)
    return path


def run(sim: GerritSimulator, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, GIT_SSH_COMMAND=ssh_command(sim, "jane"), GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def commit(sim: GerritSimulator, work: Path, message: str, amend: bool = False, name: str = "f.txt") -> str:
    (work / name).write_text(message)
    run(sim, "add", name, cwd=work)
    run(sim, "commit", "-q", *(["--amend"] if amend else []), "-m", message, cwd=work)
    return run(sim, "rev-parse", "HEAD", cwd=work).stdout.strip()


def rejected(proc: subprocess.CompletedProcess, ref: str, reason: str) -> bool:
    return proc.returncode != 0 and f" ! [remote rejected] HEAD -> {ref} ({reason})" in proc.stderr


def test_push_without_change_id_is_rejected_with_the_hook_hint(sim: GerritSimulator, work: Path) -> None:
    sha = commit(sim, work, "No footer\n")
    before = len(sim.changes)
    proc = run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work, check=False)
    assert rejected(proc, "refs/for/master", f"commit {sha[:7]}: missing Change-Id in message footer")
    assert f"remote: ERROR: commit {sha[:7]}: missing Change-Id in message footer" in proc.stderr
    assert f"scp -p -P {sim.port} jane@127.0.0.1:hooks/commit-msg" in proc.stderr
    assert len(sim.changes) == before


def test_push_to_unknown_branch_or_with_nothing_new_is_rejected(sim: GerritSimulator, work: Path) -> None:
    commit(sim, work, f"Branchless\n\nChange-Id: I{'b' * 40}\n")
    proc = run(sim, "push", "origin", "HEAD:refs/for/stable/nope", cwd=work, check=False)
    assert rejected(proc, "refs/for/stable/nope", "branch stable/nope not found")
    proc = run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work)
    assert "[NEW]" in proc.stderr
    proc = run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work, check=False)
    assert rejected(proc, "refs/for/master", "no new changes")
    # An already merged commit is nothing new either.
    run(sim, "fetch", "-q", "origin", cwd=work)
    proc = run(sim, "push", "origin", "origin/master:refs/for/master", cwd=work, check=False)
    assert proc.returncode != 0 and "(no new changes)" in proc.stderr


def test_push_of_a_closed_change_is_rejected(sim: GerritSimulator, work: Path) -> None:
    change_id = "I" + "c" * 40
    commit(sim, work, f"Soon abandoned\n\nChange-Id: {change_id}\n")
    run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work)
    c = sim.change(change_id)
    sim.abandon(c, "jane")
    commit(sim, work, f"Soon abandoned, again\n\nChange-Id: {change_id}\n", amend=True)
    proc = run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work, check=False)
    assert rejected(proc, "refs/for/master", f"change {c.url} closed")
    assert len(c.patch_sets) == 1


def test_successful_push_prints_change_urls_and_sets_push_options(sim: GerritSimulator, work: Path) -> None:
    commit(sim, work, f"First of two\n\nChange-Id: I{'d' * 40}\n", name="one.txt")
    commit(sim, work, f"Second of two\n\nChange-Id: I{'e' * 40}\n", name="two.txt")
    proc = run(sim, "push", "origin", "HEAD:refs/for/master%topic=speed,wip,r=rita,cc=carl,hashtag=perf",
               cwd=work)
    first, second = sim.change("I" + "d" * 40), sim.change("I" + "e" * 40)
    assert "remote: Processing changes: refs: 1, new: 2, done" in proc.stderr
    assert f"remote:   {first.url} First of two [WIP] [NEW]" in proc.stderr
    assert f"remote:   {second.url} Second of two [WIP] [NEW]" in proc.stderr
    for c in (first, second):
        assert (c.topic, c.wip, c.reviewers, c.ccs, c.hashtags) == ("speed", True, ["rita"], ["carl"], ["perf"])
    assert second.current.parents == [first.current.revision]
    # git push -o works as well as %options; ready clears WIP on the new patch set.
    commit(sim, work, f"Second of two, reworked\n\nChange-Id: I{'e' * 40}\n", amend=True, name="two.txt")
    proc = run(sim, "push", "-o", "topic=faster", "-o", "ready", "origin", "HEAD:refs/for/master", cwd=work)
    assert "remote: Processing changes: refs: 1, updated: 1, done" in proc.stderr
    assert f"remote:   {second.url} Second of two, reworked\n" in proc.stderr.replace(" " * 8 + "\n", "\n")
    assert (len(second.patch_sets), second.topic, second.wip) == (2, "faster", False)
    assert first.topic == "speed" and first.wip  # not part of this push's new commits
    types = [e["type"] for e in sim.events if e.get("change", {}).get("number") == second.number]
    assert types[-3:] == ["patchset-created", "topic-changed", "wip-state-changed"]


def test_unknown_push_option_or_reviewer_is_rejected(sim: GerritSimulator, work: Path) -> None:
    commit(sim, work, f"Options\n\nChange-Id: I{'f' * 40}\n")
    proc = run(sim, "push", "origin", "HEAD:refs/for/master%frobnicate", cwd=work, check=False)
    assert rejected(proc, "refs/for/master%frobnicate", '"--frobnicate" is not a valid option')
    proc = run(sim, "push", "-o", "r=nobody", "origin", "HEAD:refs/for/master", cwd=work, check=False)
    assert rejected(proc, "refs/for/master", "nobody does not identify a registered user or group")
    assert all(c.change_id != "I" + "f" * 40 for c in sim.changes.values())


def test_direct_branch_push_still_emits_ref_updated(sim: GerritSimulator, work: Path) -> None:
    run(sim, "fetch", "-q", "origin", cwd=work)
    run(sim, "checkout", "-q", "-B", "direct", "origin/master", cwd=work)
    sha = commit(sim, work, "Straight to a branch\n")
    run(sim, "push", "-q", "origin", "HEAD:refs/heads/direct", cwd=work)
    assert sim.branch_tip("org/project", "direct") == sha
    assert sim.events[-1]["refUpdate"]["refName"] == "refs/heads/direct"


def test_commit_msg_hook_over_http_and_scp_adds_a_change_id(sim: GerritSimulator, work: Path,
                                                            tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{sim.http_port}/tools/hooks/commit-msg"
    with urllib.request.urlopen(url, timeout=10) as response:
        over_http = response.read()
    proc = subprocess.run(
        ["scp", "-O", "-p", "-P", str(sim.port), "-i", sim.accounts["jane"].key_file, "-o",
         "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         "jane@127.0.0.1:hooks/commit-msg", str(work / ".git" / "hooks" / "commit-msg")],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    hook = work / ".git" / "hooks" / "commit-msg"
    assert hook.read_bytes() == over_http and os.access(hook, os.X_OK)
    commit(sim, work, "Hooked\n")
    message = run(sim, "log", "-1", "--format=%B", cwd=work).stdout
    assert message.startswith("Hooked\n\nChange-Id: I") and len(message.split("Change-Id: ")[1].strip()) == 41
    proc = run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work)
    assert "Hooked [NEW]" in proc.stderr
    missing = subprocess.run(
        ["scp", "-O", "-P", str(sim.port), "-i", sim.accounts["jane"].key_file, "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "jane@127.0.0.1:hooks/pre-push",
         str(tmp_path / "x")], capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and "hooks/pre-push: No such file or directory" in missing.stderr


def test_a_push_the_simulator_fails_on_is_rejected_not_hung(sim: GerritSimulator, work: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(sim, "receive_for_review", fail)
    commit(sim, work, f"Unlucky\n\nChange-Id: I{'9' * 40}\n")
    proc = run(sim, "push", "origin", "HEAD:refs/for/master", cwd=work, check=False)
    assert rejected(proc, "refs/for/master", "internal server error")
