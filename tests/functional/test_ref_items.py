"""Ref items over real wires (Gerrit simulator over SSH, ZooKeeper, the merger on real git): a pushed tag runs a
tag pipeline's jobs on the commit it tags; a deleted branch runs a pipeline whose trigger says ignore-deletes: false
on the default branch; operators enqueue and dequeue refs from the CLI (a process of its own) and the admin API
(over HTTP), and bad input gets a sentence, never a traceback or a 500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper.config.layout import parse_layout
from gatekeeper.config.yamlfile import ConfigErrors
from gatekeeper.history.db import HistoryDB
from gatekeeper.web.server import WebService
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.event_queue import EventQueue
from tests.functional.gate_harness import GateHarness
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

REPO = Path(__file__).resolve().parents[2]
TOKEN = "ref-admin-token"
ZERO = "0" * 40

PIPELINES = r"""
  - name: post
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/.*$
  - name: tag
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/tags/.*$
  - name: branch-deleted
    manager: independent
    trigger:
      gerrit:
        - event: ref-updated
          ref: ^refs/heads/stable/.*$
          ignore-deletes: false
queues:"""

LAYOUT = GATE_LAYOUT.replace("\nqueues:", PIPELINES, 1).replace(
    "  - name: unit\n", "  - name: unit\n  - name: release\n    required-projects: [org/b]\n  - name: cleanup\n", 1
).replace("pipelines: {check: [unit], gate: [unit, integration]}",
          "pipelines: {check: [unit], gate: [unit, integration], post: [unit], tag: [release], "
          "branch-deleted: [cleanup]}", 1)


@pytest.fixture
def gate(tmp_path: Path, zk_factory: Callable[..., ZKClient]) -> Iterator[GateHarness]:
    harness = GateHarness(tmp_path / "gate", zk_factory, layout_text=LAYOUT)
    try:
        yield harness
    finally:
        harness.executor.release()
        harness.stop()


class Clone:
    """Rita's clone of a project over SSH: she commits, tags and pushes straight to Gerrit (no review)."""

    def __init__(self, gate: GateHarness, tmp_path: Path, project: str = "org/a") -> None:
        account = gate.sim.add_account("rita", key_dir=str(tmp_path / "rita-keys"))
        self.env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_SSH_COMMAND=(
            f"ssh -i {account.key_file} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o LogLevel=ERROR -p {gate.sim.port}"))
        self.work = tmp_path / "work"
        subprocess.run(["git", "clone", "-q", gate.sim.ssh_url(project, "rita"), str(self.work)], env=self.env,
                       check=True, capture_output=True, timeout=60)
        self.git("config", "user.name", "Rita Core")
        self.git("config", "user.email", "rita@example.com")

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def commit(self, text: str) -> str:
        (self.work / "release.txt").write_text(text)
        self.git("add", "release.txt")
        self.git("commit", "-q", "-m", f"Release text: {text}")
        return self.git("rev-parse", "HEAD")


def builds(gate: GateHarness, pipeline: str) -> list:
    return [r for r in gate.executor.history if r.pipeline == pipeline and r.result != "ABORTED"]


def given(gate: GateHarness, record) -> dict:
    """The repo state the build was given: project -> branch -> commit."""
    return gate.executor.requests[record.id].repo_state["branches"]


def recorded(gate: GateHarness, pipeline: str) -> list[dict]:
    """The buildsets the scheduler queued for the history in `pipeline`."""
    return [e["record"] for _, e in EventQueue(gate.zk, paths.history_queue()).list()
            if e.get("record", {}).get("pipeline") == pipeline and "job" not in e.get("record", {})]


def test_pushed_tag_runs_the_tag_pipeline_on_the_commit_it_tags(gate: GateHarness, tmp_path: Path) -> None:
    clone = Clone(gate, tmp_path)
    tagged = clone.commit("one")
    after = clone.commit("two")
    clone.git("tag", "-a", "1.0", "-m", "Release 1.0", tagged)
    tag_object = clone.git("rev-parse", "1.0")
    assert tag_object != tagged  # an annotated tag: its revision is the tag object, not the commit
    clone.git("push", "-q", "origin", "HEAD:refs/heads/master")
    wait_for(lambda: builds(gate, "post"), 30, "the post build of master")
    clone.git("push", "-q", "origin", "refs/tags/1.0")
    [build] = wait_for(lambda: builds(gate, "tag"), 30, "the tag build")
    gate.settle()
    assert (build.job, build.result, build.changes) == ("release", "SUCCESS", f"org/a:refs/tags/1.0@{tag_object[:12]}")
    # the merger gives the job the commit the tag names, not master's tip; required projects at their branch
    assert gate.sim.branch_tip("org/a", "master") == after
    assert given(gate, build) == {"org/a": {"refs/tags/1.0": tagged},
                                  "org/b": {"master": gate.sim.branch_tip("org/b", "master")}}
    change = gate.executor.requests[build.id].change
    assert (change["ref"], change["commit"], change["number"]) == ("refs/tags/1.0", tag_object, 0)
    # the branch pipeline saw master only; a tag is nobody's change: nothing was said on any change
    assert [b.changes for b in builds(gate, "post")] == [f"org/a:refs/heads/master@{after[:12]}"]
    [buildset] = recorded(gate, "tag")
    assert (buildset["ref"], buildset["newrev"], buildset["result"]) == ("refs/tags/1.0", tag_object, "SUCCESS")

    clone.git("tag", "1.0-light", after)  # a lightweight tag: its revision is the commit itself
    clone.git("push", "-q", "origin", "refs/tags/1.0-light")
    wait_for(lambda: len(builds(gate, "tag")) == 2, 30, "the build of the lightweight tag")
    gate.settle()
    light = builds(gate, "tag")[-1]
    assert light.changes == f"org/a:refs/tags/1.0-light@{after[:12]}"
    assert given(gate, light)["org/a"] == {"refs/tags/1.0-light": after}


def test_deleted_branch_runs_where_ignore_deletes_is_false_on_the_default_branch(gate: GateHarness,
                                                                                 tmp_path: Path) -> None:
    clone = Clone(gate, tmp_path)
    stable = clone.commit("stable")
    clone.git("push", "-q", "origin", "HEAD:refs/heads/stable/1")
    wait_for(lambda: builds(gate, "branch-deleted"), 30, "the build of the new branch")
    clone.git("push", "-q", "origin", ":refs/heads/stable/1")
    assert gate.sim.branch_tip("org/a", "stable/1") is None
    wait_for(lambda: len(builds(gate, "branch-deleted")) == 2, 30, "the build of the deleted branch")
    gate.settle()
    created, deleted = builds(gate, "branch-deleted")
    assert (created.job, created.changes) == ("cleanup", f"org/a:refs/heads/stable/1@{stable[:12]}")
    assert (deleted.job, deleted.result, deleted.changes) == ("cleanup", "SUCCESS",
                                                              f"org/a:refs/heads/stable/1@{ZERO[:12]}")
    # the deleted branch has no revision: the job gets the project's default branch, and both revisions
    assert given(gate, deleted) == {"org/a": {"master": gate.sim.branch_tip("org/a", "master")}}
    change = gate.executor.requests[deleted.id].change
    assert (change["ref"], change["branch"], change["oldrev"], change["commit"]) == (
        "refs/heads/stable/1", "stable/1", stable, ZERO)
    # the post pipeline's trigger keeps Zuul's default (ignore-deletes: true): the creation ran there, the
    # deletion did not
    assert [b.changes for b in builds(gate, "post")] == [f"org/a:refs/heads/stable/1@{stable[:12]}"]
    assert [s["newrev"] for s in recorded(gate, "post")] == [stable]


@pytest.mark.parametrize(("trigger", "message"), [
    ("{event: patchset-created, ignore-deletes: false}",
     "pipeline \"post\": a trigger's ignore-deletes applies only to ref-updated events"),
    ("{event: ref-updated, ignore-deletes: sometimes}", "expected true or false"),
])
def test_ignore_deletes_is_checked_by_the_layout(trigger: str, message: str) -> None:
    text = ("pipelines:\n  - name: post\n    manager: independent\n    trigger:\n      gerrit:\n        - "
            + trigger + "\njobs:\n  - name: unit\nprojects:\n  - name: org/a\n    pipelines: {post: [unit]}\n")
    with pytest.raises(ConfigErrors) as raised:
        parse_layout({"layout.yaml": text})
    assert message in str(raised.value) and "layout.yaml:" in str(raised.value)


# -- operators --------------------------------------------------------------------------------------------------
def cli(env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", *argv], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **env}, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli_env(zk_server, zk_chroot: str, tmp_path: Path) -> dict[str, str]:
    """The operator's environment: the test's ZooKeeper, no config file."""
    return {"GATEKEEPER_CONFIG": "", "GATEKEEPER_URL": "", "GATEKEEPER_ZOOKEEPER_HOSTS": zk_server.hosts,
            "GATEKEEPER_ZOOKEEPER_CHROOT": zk_chroot, "GATEKEEPER_HISTORY_URL": f"sqlite:///{tmp_path}/h.sqlite"}


def queued(gate: GateHarness, pipeline: str) -> list[str]:
    return gate.gate_queue(pipeline)


def test_operator_enqueues_and_dequeues_a_ref_from_the_cli(gate: GateHarness, cli_env: dict[str, str]) -> None:
    gate.executor.hold = True
    tip = gate.sim.branch_tip("org/a", "master")
    code, out, err = cli(cli_env, "enqueue", "--pipeline", "post", "--project", "org/a", "--ref", "refs/heads/master")
    assert (code, out.strip()) == (0, "done"), err
    key = f"org/a:refs/heads/master@{tip[:12]}"  # no --newrev: the branch's tip in Gerrit
    assert queued(gate, "post") == [key]
    wait_for(lambda: gate.executor.held(), 30, "the post build to start")
    assert gate.executor.held()[0].change["commit"] == tip

    gate.sim.project("org/a").repo.update_ref("refs/tags/0.9", tip)  # a tag made before the tag pipeline was
    code, _, err = cli(cli_env, "enqueue", "--pipeline", "tag", "--project", "org/a", "--ref", "refs/tags/0.9",
                       "--newrev", tip, "--oldrev", ZERO)
    assert code == 0, err
    assert queued(gate, "tag") == [f"org/a:refs/tags/0.9@{tip[:12]}"]

    code, out, err = cli(cli_env, "dequeue", "--pipeline", "post", "--project", "org/a", "--ref", "refs/heads/master")
    assert (code, out.strip()) == (0, "done"), err
    wait_for(lambda: queued(gate, "post") == [], 10, "the ref item to leave post")
    code, _, err = cli(cli_env, "dequeue", "--pipeline", "post", "--project", "org/a", "--ref", "refs/heads/master")
    assert code == 1 and err.strip() == "no item of org/a refs/heads/master in post", err
    code, _, err = cli(cli_env, "dequeue", "--pipeline", "tag", "--project", "org/a", "--ref", "refs/tags/0.9",
                       "--newrev", "1" * 40)
    assert code == 1 and err.strip() == f"no item of org/a refs/tags/0.9@{'1' * 12} in tag", err
    assert queued(gate, "tag") == [f"org/a:refs/tags/0.9@{tip[:12]}"]  # another revision: left alone
    code, _, err = cli(cli_env, "dequeue", "--pipeline", "tag", "--project", "org/a", "--ref", "refs/tags/0.9",
                       "--newrev", tip)
    assert code == 0, err
    wait_for(lambda: queued(gate, "tag") == [], 10, "the tag item to leave")

    refusals = [
        (("enqueue", "--pipeline", "gate", "--project", "org/a", "--ref", "refs/heads/master"),
         1, "org/a refs/heads/master: a ref does not enter a dependent pipeline (gate)"),
        (("enqueue", "--pipeline", "post", "--project", "org/nope", "--ref", "refs/heads/master"),
         1, "no project org/nope in the layout"),
        (("enqueue", "--pipeline", "post", "--project", "org/a", "--ref", "refs/heads/nope"),
         1, "org/a has no branch nope in Gerrit"),
        (("enqueue", "--pipeline", "tag", "--project", "org/a", "--ref", "refs/tags/2.0"),
         1, "org/a refs/tags/2.0: give the revision (newrev) to enqueue: only a branch's tip is looked up"),
        (("enqueue", "--pipeline", "post", "--project", "org/a", "--ref", "master"),
         2, "error: field \"ref\": 'master' is not a branch or tag (expected a full ref such as refs/heads/master "
            "or refs/tags/1.0)"),
        (("enqueue", "--pipeline", "post", "--ref", "refs/heads/master"),
         2, 'error: field "project": enqueue of a ref needs a project and a ref'),
        (("enqueue", "--pipeline", "post", "--project", "org/a", "--ref", "refs/heads/master", "--newrev", "abc"),
         2, "error: field \"newrev\": 'abc' is not a revision (expected 40 hex digits)"),
        (("dequeue", "--pipeline", "post", "--project", "org/a", "--ref", "refs/heads/a..b"),
         2, "error: field \"ref\": 'refs/heads/a..b' is not a branch or tag"),
    ]
    for argv, want_code, want in refusals:
        code, _, err = cli(cli_env, *argv)
        assert (code, "Traceback" in err) == (want_code, False), (argv, err)
        assert want in err, (argv, err)
    code, _, err = cli(cli_env, "dequeue", "--pipeline", "post", "--change", "1,1", "--ref", "refs/heads/master")
    assert code == 2 and "argument --ref: not allowed with argument --change" in err, err


def admin(url: str, action: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/api/v1/admin/{action}", json.dumps(body).encode(),
                                 {"Authorization": f"Bearer {TOKEN}", "X-Gatekeeper-User": "ops"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_admin_api_enqueues_and_dequeues_a_ref_and_refuses_bad_input(gate: GateHarness, tmp_path: Path,
                                                                     zk_factory: Callable[..., ZKClient]) -> None:
    gate.executor.hold = True
    logs = tmp_path / "logs"
    logs.mkdir()
    web = WebService(zk_factory(), port=0, admin_token=TOKEN, history=HistoryDB(f"sqlite:///{tmp_path}/h.db"),
                     log_dir=logs, management_timeout=20).start()
    try:
        url = web.url
        tip = gate.sim.branch_tip("org/a", "master")
        ref = {"pipeline": "tag", "project": "org/a", "ref": "refs/tags/3.0"}
        gate.sim.project("org/a").repo.update_ref("refs/tags/3.0", tip)  # a tag whose event was missed
        assert admin(url, "enqueue", {**ref, "newrev": tip}) == (200, {
            "action": "enqueue", "pipeline": "tag", "project": "org/a", "ref": "refs/tags/3.0", "newrev": tip,
            "result": "done"})
        assert queued(gate, "tag") == [f"org/a:refs/tags/3.0@{tip[:12]}"]
        assert admin(url, "enqueue", {**ref, "newrev": tip}) == (409, {
            "error": f"org/a:refs/tags/3.0@{tip[:12]} is already in tag"})
        wait_for(lambda: gate.executor.held(), 30, "the tag build to start")

        bad = [
            ({"pipeline": "tag"}, 400, "missing field: change"),
            ({"pipeline": "tag", "project": "org/a"}, 400, 'field "ref": enqueue of a ref needs a project and a ref'),
            ({**ref, "ref": "refs/tags/3.0 ; rm -rf /"}, 400, 'field "ref": \'refs/tags/3.0 ; rm -rf /\' is not a '
                                                              "branch or tag"),
            ({**ref, "newrev": "x" * 40}, 400, 'field "newrev": \'' + "x" * 40 + "' is not a revision"),
            ({**ref, "newrev": "a" * 41}, 400, "field newrev: String should have at most 40 characters"),
            ({**ref, "change": "1,1"}, 400, 'field "change": enqueue takes a change or a ref, not both'),
            ({**ref, "newrev": tip, "pipeline": "gate"}, 409, "a ref does not enter a dependent pipeline"),
            ({**ref, "newrev": tip, "project": "org/zzz"}, 404, "no project org/zzz in the layout"),
            ({**ref, "newrev": tip, "pipeline": "nope"}, 404, 'no pipeline "nope"'),
            ({**ref, "ref": ["refs/tags/3.0"]}, 400, "field ref: Input should be a valid string"),
        ]
        for body, status, want in bad:
            got_status, got = admin(url, "enqueue", body)
            assert got_status == status and want in got["error"], (body, got_status, got)

        assert admin(url, "dequeue", {**ref, "oldrev": tip}) == (400, {
            "error": 'field "oldrev": dequeue names a ref item by its ref and new revision only'})
        assert admin(url, "dequeue", {**ref, "ref": "refs/tags/9.9"}) == (404, {
            "error": "no item of org/a refs/tags/9.9 in tag"})
        assert admin(url, "dequeue", ref) == (200, {
            "action": "dequeue", "pipeline": "tag", "project": "org/a", "ref": "refs/tags/3.0", "result": "done"})
        wait_for(lambda: queued(gate, "tag") == [], 10, "the tag item to leave")
        assert admin(url, "dequeue", ref)[0] == 404
    finally:
        web.stop()
        web.history.close()
