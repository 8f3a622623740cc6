"""The Gerrit simulator against the real clients: gerritlib over paramiko, stock OpenSSH and git."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from gerritlib import gerrit as gerritlib

from gatekeeper.child_process import start_tied
from gatekeeper.gerrit.watcher import StreamWatcher
from gatekeeper.sim.gerrit import GerritSimError, GerritSimulator


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GerritSimulator]:
    root = tmp_path_factory.mktemp("gerrit-sim")
    simulator = GerritSimulator(str(root / "site")).start()
    try:
        keys = str(root / "keys")
        simulator.add_account("ci", name="CI", email="ci@example.com", key_dir=keys)
        simulator.add_account("jane", name="Jane Dev", email="jane@example.com", key_dir=keys)
        simulator.add_account("rita", name="Rita Core", email="rita@example.com")
        simulator.create_project("org/project")
        simulator.create_project("org/lib", submit_rule={"Code-Review": 2})
        simulator.create_change("org/project", "Change 1", owner="jane")  # the error tests use 1,1
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(autouse=True)
def clear_faults(sim: GerritSimulator) -> Iterator[None]:
    yield
    sim.faults.clear()


@pytest.fixture(scope="module")
def gerrit(sim: GerritSimulator) -> gerritlib.Gerrit:
    return gerritlib.Gerrit("127.0.0.1", "ci", port=sim.port, keyfile=sim.accounts["ci"].key_file,
                            connection_attempts=1, retry_delay=0)


class Stream:
    """A fixed gerritlib watcher collecting events; events are matched by predicate, skipping others."""

    def __init__(self, sim: GerritSimulator) -> None:
        self.lines: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.watcher = StreamWatcher("127.0.0.1", sim.port, "ci", sim.accounts["ci"].key_file,
                                     on_line=lambda line, at: self.lines.put(line),
                                     on_connected=self.connected.set, backoff_min=0.1, backoff_max=0.5)

    def __enter__(self) -> Stream:
        self.watcher.start()
        assert self.connected.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()
        assert not self.watcher.is_alive()

    def next(self, etype: str, timeout: float = 5.0) -> dict:
        while True:
            event = json.loads(self.lines.get(timeout=timeout))
            if event["type"] == etype and not event.get("refUpdate", {}).get("refName", "").startswith(
                    "refs/changes/"):
                return event


def ssh(sim: GerritSimulator, user: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", sim.accounts[user].key_file, "-o", "StrictHostKeyChecking=no", "-o",
         "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(sim.port), f"{user}@127.0.0.1",
         *command],
        capture_output=True, text=True, timeout=30,
    )


def git_env(sim: GerritSimulator, user: str) -> dict[str, str]:
    return dict(os.environ, GIT_SSH_COMMAND=(
        f"ssh -i {sim.accounts[user].key_file} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        f"-o LogLevel=ERROR -p {sim.port}"))


def git(*args: str, env: dict[str, str], cwd: str | None = None) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- commands ---------------------------------------------------------------------------------------------------
def test_gerritlib_version_and_projects(gerrit: gerritlib.Gerrit) -> None:
    assert gerrit.parseGerritVersion(gerrit.getVersion()) == (3, 10, 1)
    assert gerrit.listProjects() == ["All-Projects", "All-Users", "org/lib", "org/project"]


def test_unknown_command_and_bad_key_are_refused(sim: GerritSimulator, tmp_path: object) -> None:
    proc = ssh(sim, "ci", "gerrit", "frob")
    assert (proc.returncode, proc.stderr) == (1, "fatal: gerrit: frob: not found\n")
    other = sim.add_account("nokey", key_dir=str(tmp_path))
    other.public_keys.clear()
    proc = ssh(sim, "nokey", "gerrit", "version")
    assert proc.returncode == 255 and "Permission denied" in proc.stderr


def test_query_returns_rows_then_stats_with_gerrit_keys(sim: GerritSimulator, gerrit: gerritlib.Gerrit) -> None:
    base = sim.create_change("org/project", "Base", owner="jane")
    child = sim.create_change("org/project", "Child", owner="jane", parent=base, files={"a.txt": "a\n"})
    sim.review(child, "rita", labels={"Code-Review": 1})
    rows = gerrit.bulk_query(f"--current-patch-set --dependencies --commit-message --files change:{child.number}")
    assert rows[-1]["type"] == "stats" and rows[-1]["rowCount"] == 1 and rows[-1]["moreChanges"] is False
    row = rows[0]
    assert row["number"] == child.number and row["status"] == "NEW" and row["open"] is True
    assert row["commitMessage"].endswith(f"Change-Id: {child.change_id}\n")
    ps = row["currentPatchSet"]
    assert ps["ref"] == f"refs/changes/{child.number % 100:02d}/{child.number}/1"
    assert ps["approvals"][0]["value"] == "1" and ps["approvals"][0]["by"]["username"] == "rita"
    assert [f["file"] for f in ps["files"]] == ["/COMMIT_MSG", "a.txt"]
    assert row["dependsOn"][0]["number"] == base.number
    # gerritlib's query() adds a stray '"' that Gerrit's splitter (not shlex) absorbs.
    assert gerrit.query(f"change:{base.number}")["number"] == base.number
    proc = ssh(sim, "ci", "gerrit", "query", "--format", "JSON", "-S", "1", "project:org/project", "limit:1")
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(lines) == 2 and lines[0]["number"] == base.number and lines[1]["moreChanges"] is True
    proc = ssh(sim, "ci", "gerrit", "query", "--format", "JSON", "frob:1")
    assert proc.returncode == 0 and json.loads(proc.stdout)["type"] == "error"
    proc = ssh(sim, "ci", "gerrit", "query", "--files", "change:1")
    assert (proc.returncode, proc.stderr) == (1, "fatal: --files option needs --patch-sets or --current-patch-set\n")


def test_query_patch_sets_all_approvals_and_comments(sim: GerritSimulator) -> None:
    c = sim.create_change("org/project", "Two patch sets", owner="jane")
    sim.review(c, "rita", "looks odd", {"Code-Review": -1})
    sim.create_patchset(c, files={"x": "2\n"})
    proc = ssh(sim, "ci", "gerrit", "query", "--format", "json", "--all-approvals", "--comments",
               f"change:{c.number}")
    row = json.loads(proc.stdout.splitlines()[0])
    assert [ps["number"] for ps in row["patchSets"]] == [1, 2]
    assert row["patchSets"][0]["approvals"][0]["value"] == "-1" and "approvals" not in row["patchSets"][1]
    plain = json.loads(ssh(sim, "ci", "gerrit", "query", "--format=JSON", "--patch-sets",
                           f"change:{c.number}").stdout.splitlines()[0])
    assert [ps["number"] for ps in plain["patchSets"]] == [1, 2]
    assert all("approvals" not in ps for ps in plain["patchSets"]) and "comments" not in plain
    assert [m["message"] for m in row["comments"]] == [
        "Uploaded patch set 1.", "Patch Set 1: Code-Review-1\n\nlooks odd", "Uploaded patch set 2."]


# -- review -----------------------------------------------------------------------------------------------------
def test_review_with_gerritlib_posts_votes_and_emits_comment_added(sim: GerritSimulator,
                                                                   gerrit: gerritlib.Gerrit) -> None:
    c = sim.create_change("org/project", "Review me", owner="jane")
    with Stream(sim) as stream:
        gerrit.review("org/project", f"{c.number},1", "Build succeeded.", {"verified": "+1"})
        event = stream.next("comment-added")
    assert event["comment"] == "Patch Set 1: Verified+1\n\nBuild succeeded."
    assert event["author"] == {"name": "CI", "email": "ci@example.com", "username": "ci"}
    approvals = {a["type"]: a for a in event["approvals"]}
    assert approvals["Verified"] == {"type": "Verified", "description": "Verified", "value": "1", "oldValue": "0"}
    assert approvals["Code-Review"] == {"type": "Code-Review", "description": "Code-Review", "value": "0"}
    assert list(event)[-6:] == ["change", "project", "refName", "changeKey", "type", "eventCreatedOn"]
    assert sim.votes(c) == {"ci": {"Verified": 1}}


def test_review_message_of_any_content_arrives_verbatim_with_several_labels(sim: GerritSimulator) -> None:
    import shlex

    c = sim.create_change("org/project", "Quoting", owner="jane")
    message = 'Say "hi" & it\'s $(rm -rf /) `x` \\n back\\slash\nsecond line: ünïcödé ✓'
    command = " ".join(shlex.quote(a) for a in [
        "gerrit", "review", "--project", "org/project", "--message", message, "--label", "Verified=+2",
        "--label", "Code-Review=-1", "--tag", "autogenerated:gatekeeper", f"{c.number},1"])
    proc = ssh(sim, "ci", command)
    assert proc.returncode == 0, proc.stderr
    assert sim.messages(c)[-1] == f"Patch Set 1: Code-Review-1 Verified+2\n\n{message}"
    assert sim.change(c).messages[-1].tag == "autogenerated:gatekeeper"


@pytest.mark.parametrize("args, stderr", [
    (["abc"], 'fatal: "abc" is not a valid patch set\n'),
    (["99999,1"], 'fatal: "99999,1" no such patch set\n'),
    (["--frob", "1,1"], 'fatal: "--frob" is not a valid option\n'),
    (["--verified", "+3", "1,1"], 'fatal: "+3" must be in range -2..+2 for "--verified"\n'),
    (["--project", "org/lib", "1,1"], "fatal: change 1 not in project org/lib\n"),
    (["--abandon", "--restore", "1,1"], "fatal: abandon and restore actions are mutually exclusive\n"),
    (["--label", "Frob=+1", "1,1"],
     'error: label "Frob" is not a configured label\nfatal: one or more reviews failed; review output above\n'),
    (["deadbeef"], 'fatal: "deadbeef" no such patch set\n'),
])
def test_review_errors_use_gerrit_texts_and_exit_status(sim: GerritSimulator, args: list[str], stderr: str) -> None:
    proc = ssh(sim, "ci", "gerrit", "review", *args)
    assert (proc.returncode, proc.stderr, proc.stdout) == (1, stderr, "")


def test_review_by_commit_sha(sim: GerritSimulator) -> None:
    c = sim.create_change("org/project", "By sha", owner="jane")
    proc = ssh(sim, "ci", "gerrit", "review", "--project", "org/project", "--code-review", "+1",
               c.current.revision[:10])
    assert proc.returncode == 0, proc.stderr
    assert sim.votes(c) == {"ci": {"Code-Review": 1}}


def test_submit_blocked_until_rule_met_then_merges_with_events(sim: GerritSimulator) -> None:
    c = sim.create_change("org/project", "Gate me", owner="jane")
    with Stream(sim) as stream:
        proc = ssh(sim, "ci", "gerrit", "review", "--verified", "+2", "--submit", f"{c.number},1")
        assert proc.returncode == 1
        assert proc.stderr == (f"error: Change {c.number}: blocked by Code-Review, Approved\n"
                               "fatal: one or more reviews failed; review output above\n")
        assert sim.change(c).status == "NEW" and sim.votes(c) == {"ci": {"Verified": 2}}
        sim.approve(c, "rita")
        tip = sim.branch_tip("org/project")
        proc = ssh(sim, "ci", "gerrit", "review", "--message", "Merging", "--submit", f"{c.number},1")
        assert proc.returncode == 0, proc.stderr
        ref = stream.next("ref-updated")
        merged = stream.next("change-merged")
    new_tip = sim.branch_tip("org/project")
    assert ref["refUpdate"] == {"oldRev": tip, "newRev": new_tip, "refName": "refs/heads/master",
                                "project": "org/project"}
    assert merged["newRev"] == new_tip and merged["change"]["status"] == "MERGED"
    assert merged["submitter"]["username"] == "ci"
    proc = ssh(sim, "ci", "gerrit", "review", "--code-review", "+1", f"{c.number},1")
    assert "error: change is closed" in proc.stderr and proc.returncode == 1


def test_submit_creates_merge_commit_when_branch_moved(sim: GerritSimulator) -> None:
    a = sim.create_change("org/lib", "A", owner="jane", files={"a": "a\n"})
    b = sim.create_change("org/lib", "B", owner="jane", files={"b": "b\n"})
    for c in (a, b):
        sim.review(c, "rita", labels={"Code-Review": 2})
        sim.submit(c, "ci")
    repo = sim.project("org/lib").repo
    tip = sim.branch_tip("org/lib")
    assert repo.commit_info(tip)["parents"] == [a.current.revision, b.current.revision]
    c = sim.create_change("org/lib", "C conflicts", owner="jane", files={"a": "x\n"}, parent=a.current.parents[0])
    sim.review(c, "rita", labels={"Code-Review": 2})
    with pytest.raises(GerritSimError, match="path conflict"):
        sim.submit(c, "ci")


def test_abandon_restore_and_other_change_events(sim: GerritSimulator) -> None:
    c = sim.create_change("org/project", "Lifecycle", owner="jane")
    with Stream(sim) as stream:
        assert ssh(sim, "jane", "gerrit", "review", "--abandon", "--message", "'not now'",
                   f"{c.number},1").returncode == 0
        abandoned = stream.next("change-abandoned")
        assert ssh(sim, "jane", "gerrit", "review", "--restore", f"{c.number},1").returncode == 0
        restored = stream.next("change-restored")
        sim.add_reviewer(c, "rita", "jane")
        reviewer = stream.next("reviewer-added")
        sim.review(c, "rita", labels={"Code-Review": 2})
        stream.next("comment-added")
        sim.delete_vote(c, "rita", "Code-Review", "jane")
        deleted = stream.next("vote-deleted")
        sim.set_wip(c, True, "jane")
        wip = stream.next("wip-state-changed")
        sim.set_topic(c, "t1", "jane")
        topic = stream.next("topic-changed")
        sim.create_project("org/new")
        created = stream.next("project-created")
        sim.delete_change(c, "jane")
        gone = stream.next("change-deleted")
    assert abandoned["abandoner"]["username"] == "jane" and abandoned["reason"] == "not now"
    assert abandoned["change"]["status"] == "ABANDONED" and restored["change"]["status"] == "NEW"
    assert reviewer["reviewer"]["username"] == "rita" and reviewer["adder"]["username"] == "jane"
    assert deleted["approvals"] == [{"type": "Code-Review", "description": "Code-Review", "value": "0",
                                     "oldValue": "2"}]
    assert wip["change"]["wip"] is True and topic["change"]["topic"] == "t1"
    assert created == {"projectName": "org/new", "headName": "refs/heads/master", "type": "project-created",
                       "eventCreatedOn": created["eventCreatedOn"]}
    assert gone["deleter"]["username"] == "jane" and "patchSet" not in gone


def test_upload_emits_ref_noise_then_patchset_created(sim: GerritSimulator) -> None:
    with Stream(sim) as stream:
        c = sim.create_change("org/project", "Noise", owner="jane")
        events = [json.loads(stream.lines.get(timeout=5)) for _ in range(3)]
    assert [e["type"] for e in events] == ["ref-updated", "ref-updated", "patchset-created"]
    assert events[0]["refUpdate"]["refName"] == c.current.ref
    assert events[1]["refUpdate"]["refName"].endswith(f"/{c.number}/meta")
    assert events[2]["patchSet"]["number"] == 1 and events[2]["uploader"]["username"] == "jane"


# -- stream-events ----------------------------------------------------------------------------------------------
def test_burst_of_500_arrives_complete_in_order_through_fixed_watcher(sim: GerritSimulator) -> None:
    c = sim.create_change("org/project", "Burst", owner="jane")
    with Stream(sim) as stream:
        for i in range(500):
            sim.comment(c, "rita", f"burst {i}")
        got = []
        while len(got) < 500:
            event = stream.next("comment-added", timeout=5)
            got.append(event["comment"])
    assert got == [f"Patch Set 1:\n\nburst {i}" for i in range(500)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_stock_gerritlib_watcher_holds_buffered_events_back(sim: GerritSimulator) -> None:
    """The defect the fixed watcher exists for: gerritlib 0.11 delivers 1 event of a burst until more data."""
    c = sim.create_change("org/project", "Starve", owner="jane")
    g = gerritlib.Gerrit("127.0.0.1", "ci", port=sim.port, keyfile=sim.accounts["ci"].key_file)
    g.startWatching(connection_attempts=1, retry_delay=0)
    try:
        assert sim.wait_for(lambda: g.watcher_thread.state == gerritlib.CONSUMING)
        with Stream(sim) as fixed:
            sim.faults.pause_streams()
            for i in range(5):
                sim.comment(c, "rita", f"starve {i}")
            sim.faults.resume_streams()
            # The positive signal that the whole burst went out: a listener that reads properly got all of it
            # (each comment is a NoteDb ref-updated and a comment-added event).
            burst: list[dict] = []
            while sum(1 for e in burst if e["type"] == "comment-added") < 5:
                burst.append(json.loads(fixed.lines.get(timeout=10)))
            assert [e["comment"].rsplit("\n\n", 1)[1] for e in burst if e["type"] == "comment-added"] == [
                f"starve {i}" for i in range(5)]
            got = [g.event_queue.get(timeout=10)]
            try:
                while True:
                    got.append(g.event_queue.get(timeout=1.0))
            except queue.Empty:
                pass
            assert got == burst[:1], f"the stock watcher delivered {len(got)} of the {len(burst)} events"
            # The rest were held, not lost: the next arrival releases more of the burst, in order.
            sim.comment(c, "rita", "starve more")
            got.append(g.event_queue.get(timeout=10))
            assert got == burst[:2]
    finally:
        # The stock watcher has no stop(): make its next reconnect end the thread.
        g.watcher_thread._run = lambda: (_ for _ in ()).throw(SystemExit())
        sim.faults.cut_streams()
        g.watcher_thread.join(5)


def test_watcher_reconnects_with_capped_backoff_and_stops_cleanly(sim: GerritSimulator) -> None:
    sim.faults.refuse_connections = True
    stream = Stream(sim)
    stream.watcher.backoff_min, stream.watcher.backoff_max = 0.05, 0.2
    stream.watcher.start()
    try:
        assert sim.wait_for(lambda: stream.watcher.failures >= 5, timeout=10)
        assert stream.watcher.connects == 0
        sim.faults.refuse_connections = False
        assert stream.connected.wait(10)
        c = sim.create_change("org/project", "After reconnect", owner="jane")
        assert stream.next("patchset-created")["change"]["number"] == c.number
    finally:
        stream.__exit__()


def test_stream_subscribe_filter_and_multiple_listeners(sim: GerritSimulator) -> None:
    procs = [start_tied(
        ["ssh", "-i", sim.accounts["jane"].key_file, "-o", "StrictHostKeyChecking=no", "-o",
         "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-p", str(sim.port), "jane@127.0.0.1",
         "gerrit", "stream-events", "-s", "patchset-created"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)]
    try:
        assert sim.wait_for(lambda: sim.listener_count("jane") == 2)
        c = sim.create_change("org/project", "Filtered", owner="jane")
        for p in procs:
            event = json.loads(p.stdout.readline())
            assert (event["type"], event["change"]["number"]) == ("patchset-created", c.number)
    finally:
        for p in procs:
            p.kill()
            p.wait()


# -- git --------------------------------------------------------------------------------------------------------
def test_git_clone_fetch_change_ref_and_push_for_review(sim: GerritSimulator, tmp_path: object) -> None:
    c = sim.create_change("org/project", "Fetch me", owner="jane", files={"fetched.txt": "yes\n"})
    env = git_env(sim, "jane")
    work = str(tmp_path / "work")  # type: ignore[operator]
    git("clone", "-q", sim.ssh_url("org/project.git", "jane"), work, env=env)
    git("fetch", "-q", "origin", c.current.ref, env=env, cwd=work)
    assert git("rev-parse", "FETCH_HEAD", env=env, cwd=work).strip() == c.current.revision
    assert c.current.ref in git("ls-remote", "origin", env=env, cwd=work)
    # A push to refs/for/master becomes a change (Change-Id footer), a second push a new patch set.
    git("-c", "user.name=Jane Dev", "-c", "user.email=jane@example.com", "commit", "-q", "--allow-empty", "-m",
        "Pushed\n\nChange-Id: I" + "1" * 40, env=env, cwd=work)
    git("push", "-q", "origin", "HEAD:refs/for/master", env=env, cwd=work)
    pushed = sim.change("I" + "1" * 40)
    assert pushed.owner.username == "jane" and len(pushed.patch_sets) == 1
    git("-c", "user.name=Jane Dev", "-c", "user.email=jane@example.com", "commit", "-q", "--amend",
        "--allow-empty", "-m", "Pushed again\n\nChange-Id: I" + "1" * 40, env=env, cwd=work)
    git("push", "-q", "origin", "HEAD:refs/for/master", env=env, cwd=work)
    assert len(pushed.patch_sets) == 2 and pushed.subject == "Pushed again"


# -- faults -----------------------------------------------------------------------------------------------------
def test_fault_controls(sim: GerritSimulator) -> None:
    sim.faults.fail("review", exit_status=128)
    proc = ssh(sim, "ci", "gerrit", "review", "--message", "x", "1,1")
    assert (proc.returncode, proc.stderr) == (128, "fatal: internal server error\n")
    sim.faults.refuse_connections = True
    assert ssh(sim, "ci", "gerrit", "version").returncode == 255
    sim.faults.refuse_connections = False
    assert ssh(sim, "ci", "gerrit", "version").stdout == "gerrit version 3.10.1\n"


def test_gerrit_sim_command_runs_standalone(tmp_path: object) -> None:
    root = str(tmp_path / "standalone")  # type: ignore[operator]
    # this checkout's command, whatever else is called gatekeeper on PATH
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "gerrit-sim", "--root", root, "--port", "0",
                       "--account", "ops", "--project", "org/demo"], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith("account ops: private key ")
        key = lines[0].split("private key ", 1)[1].strip()
        port = lines[1].split("127.0.0.1:", 1)[1].split(" ", 1)[0]
        out = subprocess.run(
            ["ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
             "LogLevel=ERROR", "-p", port, "ops@127.0.0.1", "gerrit", "ls-projects"],
            capture_output=True, text=True, timeout=30)
        assert out.stdout.splitlines() == ["All-Projects", "All-Users", "org/demo"]
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


@pytest.mark.parametrize(("name", "problem"), [
    ("../../outside", "has a '..' segment (a path out of the git directory)"),
    ("org/../../../outside", "has a '..' segment"),
    ("/tmp/outside", "starts with / (an absolute path)"),
    ("org/./a", "has a '.' segment"),
    ("org//a", "has an empty segment (//)"),
    ("org/a/", "ends with /"),
    ("org/a.git", "ends with .git (the repository's suffix, not the project's: name it 'org/a')"),
    ("org.git/a", "has a segment ending in .git"),
    ("org/a~b", "holds '~', which Gerrit refuses in a project name"),
    ("org/a\nb", "holds a control character"),
])
def test_a_project_name_gerrit_refuses_is_refused_and_creates_nothing(tmp_path, name, problem) -> None:
    root = tmp_path / "deep" / "site"
    sim = GerritSimulator(str(root))
    with pytest.raises(GerritSimError, match="^" + re.escape(f"project name {name!r} {problem}")):
        sim.create_project(name)
    assert name not in sim.projects
    assert [p.name for p in tmp_path.rglob("*.git")] == []


def test_gerrit_sim_command_refuses_a_project_name_leading_out_of_its_data_dir(tmp_path) -> None:
    root = tmp_path / "deep" / "site"
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", "gerrit-sim", "--data-dir", str(root), "--port", "0",
                       "--project", "org/fine", "--project", "../../x"], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # it served instead of refusing: end it (the assertions below say so)
    assert (proc.returncode, out, err) == (
        2, "", "gerrit-sim: --project '../../x' has a '..' segment (a path out of the git directory)\n")
    assert not (tmp_path / "x.git").exists() and not root.exists()
