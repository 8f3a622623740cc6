"""A wire-compatible Gerrit simulator: SSH commands, stream-events, git over SSH, real bare repos.

Usage (tests, demo; every method is documented on GerritSimulator)::

    from gatekeeper.sim.gerrit import GerritSimulator, GerritSimError

    sim = GerritSimulator(root=tmp_path).start()          # SSH on 127.0.0.1:<sim.port>; stop() when done
    ci = sim.add_account("ci", key_dir=tmp_path / "keys")   # generates a key: ci.key_file for ssh/git/gerritlib
    sim.add_account("jane"); sim.add_account("rita")
    sim.create_project("org/lib")                          # bare repo, initial commit on master
    sim.create_project("org/app", submit_rule={"Code-Review": 2, "Approved": 1})  # no Verified needed

    lib = sim.create_change("org/lib", "Add API", files={"api.py": "x = 1\\n"}, owner="jane")
    app = sim.create_change("org/app", "Use API", owner="jane", depends_on=[lib])  # Depends-On: <lib url>
    app2 = sim.create_change("org/app", "Follow-up", owner="jane", parent=app)     # git parent = app
    sim.create_patchset(app, files={"app.py": "v2\\n"})   # new patch set (same Change-Id)
    sim.create_patchset(app2, parent=sim.branch_tip("org/app"))  # rebase onto a commit (or a Change)
    sim.upload("org/app", "HEAD", source="/path/to/work/repo")  # a real commit; Change-Id footer decides

    sim.approve(app, "rita")                               # Code-Review +2, Approved +1 -> comment-added
    sim.review(app, "rita", message="recheck")             # plain comment
    sim.review(app, "ci", "Build succeeded.", {"Verified": 2})
    sim.submit(app, "ci")                                  # merge-if-necessary; GerritSimError if blocked

    sim.votes(app)            # {"rita": {"Code-Review": 2, "Approved": 1}, "ci": {"Verified": 2}}
    sim.messages(app)         # ["Uploaded patch set 1.", ..., "Patch Set 2: Approved+1 Code-Review+2", ...]
    sim.change(app).status    # "MERGED";  sim.branch_tip("org/app", "master") -> sha
    sim.events                # every event emitted, as Gerrit's JSON dicts
    sim.ssh_url("org/app", "ci")  # git clone/fetch URL; change refs: sim.change(app).current.ref

    sim.abandon(c, "jane", "reason"); sim.restore(c, "jane"); sim.set_wip(c, True, "jane")
    sim.set_topic(c, "t", "jane"); sim.add_reviewer(c, "rita", "jane"); sim.delete_vote(c, "rita", "Code-Review")

    # Faults: sim.faults.cut_streams(), .pause_streams()/.resume_streams(), .fail("review"|"submit"|"query"),
    # .hang("review", seconds[, after=True]), .drop("review"), .close("query") (its channel, unanswered),
    # .unanswered("submit") (its connection goes silent), .refuse_connections = True, .inject_raw(b"not json\\n"),
    # .clear();
    # sim.stream_buffer = 128 makes a slow listener lose events behind `dropped-output`, as Gerrit does.

Developers' tools work against it: `git push HEAD:refs/for/master[%topic=t,wip,r=rita]` (or `-o topic=t`) is
validated as Gerrit does (gatekeeper.sim.gerrit.receive) and answered with the change URLs or `! [remote
rejected] (<reason>)`; the commit-msg hook comes by `scp -O host:hooks/commit-msg` or, with `http_port`, from
`<web>/tools/hooks/commit-msg`; `gerrit review --json`, `set-reviewers` and `set-topic` work; git-review's
whole loop is tested. `GerritSimulator(root, persist=True)` keeps everything in `root` across restarts.

Standalone: `gatekeeper gerrit-sim --data-dir DIR --port 29418 --account NAME[=PUBKEYFILE] --project org/x
[--reference-projects] [--http-port 8080]` (see gatekeeper.cmd.gerrit_sim; the state is kept in DIR).
"""

from gatekeeper.sim.gerrit.model import Account, Change, PatchSet, Project, change_ref
from gatekeeper.sim.gerrit.simulator import GerritSimError, GerritSimulator

__all__ = ["Account", "Change", "GerritSimError", "GerritSimulator", "PatchSet", "Project", "change_ref"]
