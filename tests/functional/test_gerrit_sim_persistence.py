"""The Gerrit simulator keeps its state in its data directory: a restart loses no change, patch set, vote,
message, event or commit, and never resets a branch; `--reference-projects` seeds the demo content."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from gatekeeper.child_process import start_tied
from gatekeeper.sim.gerrit import GerritSimulator
from gatekeeper.sim.gerrit.query import change_row

ALL_FLAGS = dict(current_patch_set=True, patch_sets=True, all_approvals=True, files=True, commit_message=True,
                 dependencies=True, comments=True, submit_records=True, all_reviewers=True)


def rows(sim: GerritSimulator) -> list[dict]:
    return [change_row(sim, c, **ALL_FLAGS) for c in sorted(sim.changes.values(), key=lambda c: c.number)]


def test_restart_with_the_same_root_keeps_everything(tmp_path: Path) -> None:
    root = str(tmp_path / "site")
    sim = GerritSimulator(root, persist=True)
    sim.add_account("jane", name="Jane Dev", email="jane@example.com", key_dir=str(tmp_path / "keys"))
    sim.add_account("rita", name="Rita Core", email="rita@example.com")
    sim.create_project("org/lib", submit_rule={"Code-Review": 2})
    sim.create_project("org/app")
    lib = sim.create_change("org/lib", "Add API", files={"api.py": "x = 1\n"}, owner="jane", topic="api")
    sim.create_patchset(lib, files={"api.py": "x = 2\n"})
    sim.review(lib, "rita", "Nice", {"Code-Review": 2}, comments={"api.py": [{"line": 1, "message": "why 2?"}]})
    sim.submit(lib, "rita")
    app = sim.create_change("org/app", "Use API", owner="jane", depends_on=[lib])
    sim.add_reviewer(app, "rita", "jane")
    sim.set_wip(app, True, "jane")
    follow = sim.create_change("org/app", "Follow-up", owner="jane", parent=app)
    sim.abandon(follow, "jane", "not now")
    before_rows, before_events = rows(sim), list(sim.events)
    tips = {name: sim.branch_tip(name) for name in sim.projects}

    again = GerritSimulator(root, persist=True)
    assert rows(again) == before_rows
    assert again.events == before_events
    assert {name: again.branch_tip(name) for name in again.projects} == tips
    assert again.accounts["jane"].key_file == sim.accounts["jane"].key_file
    assert again.accounts["jane"].public_keys[0].asbytes() == sim.accounts["jane"].public_keys[0].asbytes()
    # It carries on where it stopped: numbering, patch sets on existing changes, the event sequence.
    nxt = again.create_change("org/app", "After the restart", owner="jane")
    assert nxt.number == follow.number + 1
    again.create_patchset(app.number, files={"app.py": "v2\n"})
    assert [ps.number for ps in again.change(app.number).patch_sets] == [1, 2]
    assert again.events[:len(before_events)] == before_events
    assert len(GerritSimulator(root, persist=True).events) == len(again.events)


def test_create_project_on_an_existing_repository_keeps_its_branches(tmp_path: Path) -> None:
    root = str(tmp_path / "site")
    first = GerritSimulator(root)
    first.create_project("org/app")
    c = first.create_change("org/app", "Merged once", owner="admin")
    first.approve(c)
    first.review(c, "admin", labels={"Verified": 2})
    tip = first.submit(c)
    second = GerritSimulator(root)  # no state kept, but the repository is there
    second.create_project("org/app")
    assert second.branch_tip("org/app") == tip


def gerrit_sim(data_dir: Path, *extra: str) -> tuple[subprocess.Popen, str, str]:
    """Start `gatekeeper gerrit-sim` as its own process; returns it, jane's key and the SSH port."""
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "gerrit-sim", "--data-dir", str(data_dir),
                             "--port", "0", "--account", "jane", *extra],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    key = proc.stdout.readline().split("private key ", 1)[1].strip()
    line = proc.stdout.readline()
    assert line.startswith("Gerrit simulator on 127.0.0.1:"), line
    return proc, key, line.split("127.0.0.1:", 1)[1].split(" ", 1)[0]


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def ssh(key: str, port: str, *command: str) -> str:
    out = subprocess.run(["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                          "-o", "LogLevel=ERROR", "-p", port, "jane@127.0.0.1", *command],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def git(key: str, port: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -i {key} -o StrictHostKeyChecking=no -o "
                                           f"UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p {port}")
    out = subprocess.run(["git", "-c", "user.name=Jane", "-c", "user.email=jane@example.com", *args], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_standalone_simulator_restarts_with_its_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "gerrit"
    proc, key, port = gerrit_sim(data, "--project", "org/demo")
    try:
        work = tmp_path / "work"
        git(key, port, "clone", "-q", f"ssh://jane@127.0.0.1:{port}/org/demo", str(work), cwd=tmp_path)
        git(key, port, "commit", "-q", "--allow-empty", "-m", f"Kept\n\nChange-Id: I{'7' * 40}", cwd=work)
        git(key, port, "push", "origin", "HEAD:refs/for/master%topic=kept", cwd=work)
        ssh(key, port, "gerrit", "review", "--code-review", "+1", "--message", "'looks good'", "1,1")
        master = git(key, port, "ls-remote", "origin", "refs/heads/master", cwd=work)
        before = ssh(key, port, "gerrit", "query", "--format", "JSON", "--all-approvals", "--comments", "change:1")
    finally:
        stop(proc)
    proc, key2, port = gerrit_sim(data, "--project", "org/demo")
    try:
        assert key2 == key
        git(key, port, "remote", "set-url", "origin", f"ssh://jane@127.0.0.1:{port}/org/demo", cwd=work)
        assert git(key, port, "ls-remote", "origin", "refs/heads/master", cwd=work) == master
        after = ssh(key, port, "gerrit", "query", "--format", "JSON", "--all-approvals", "--comments", "change:1")
        assert json.loads(after.splitlines()[0]) == json.loads(before.splitlines()[0])
        assert json.loads(after.splitlines()[0])["topic"] == "kept"
        git(key, port, "commit", "-q", "--amend", "--allow-empty", "-m", f"Kept, v2\n\nChange-Id: I{'7' * 40}",
            cwd=work)
        out = git(key, port, "push", "origin", "HEAD:refs/for/master", cwd=work)
        assert "updated: 1" in out
        row = json.loads(ssh(key, port, "gerrit", "query", "--format", "JSON", "--patch-sets",
                             "change:1").splitlines()[0])
        assert [ps["number"] for ps in row["patchSets"]] == [1, 2]
    finally:
        stop(proc)


def test_reference_projects_flag_seeds_the_demo_content(tmp_path: Path) -> None:
    proc, key, port = gerrit_sim(tmp_path / "gerrit", "--reference-projects")
    try:
        names = ssh(key, port, "gerrit", "ls-projects").split()
        assert [n for n in names if n.startswith("openstack")] == [
            "openstack-dev/devstack", "openstack-infra/devstack-gate", "openstack/glance", "openstack/horizon",
            "openstack/keystone", "openstack/nova", "openstack/python-keystoneclient",
            "openstack/python-novaclient"]
        nova = tmp_path / "nova"
        git(key, port, "clone", "-q", f"ssh://jane@127.0.0.1:{port}/openstack/nova", str(nova), cwd=tmp_path)
        assert (nova / "run_tests.sh").exists() and (nova / "tests" / "test_compute.py").exists()
        devstack = tmp_path / "devstack"
        git(key, port, "clone", "-q", f"ssh://jane@127.0.0.1:{port}/openstack-dev/devstack", str(devstack),
            cwd=tmp_path)
        assert (devstack / "stack.sh").exists()
    finally:
        stop(proc)
