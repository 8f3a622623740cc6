"""The simulator's state on disk, so that a restart with the same data directory keeps everything.

The repositories are already on disk (`<root>/git/<project>.git`); this keeps the rest in `<root>/state.json`
(accounts, projects, changes with their patch sets, votes, comments and messages, the next change number),
rewritten atomically after every change, and every event in order in `<root>/events.jsonl`.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

from gatekeeper.sim.gerrit.model import (
    Account,
    Approval,
    Change,
    ChangeMessage,
    InlineComment,
    PatchSet,
    Project,
)
from gatekeeper.sim.gerrit.repo import BareRepo, FileChange

if TYPE_CHECKING:
    from gatekeeper.sim.gerrit.simulator import GerritSimulator

log = logging.getLogger("gatekeeper.sim.gerrit.persist")

STATE_FILE = "state.json"
EVENTS_FILE = "events.jsonl"
VERSION = 1


class StateError(RuntimeError):
    """The state file cannot be read back; the text names the file and what is wrong."""


def _account(a: Account) -> dict:
    return {"id": a.account_id, "username": a.username, "name": a.name, "email": a.email,
            "keys": [f"{k.get_name()} {k.get_base64()}" for k in a.public_keys], "key_file": a.key_file}


def _patchset(ps: PatchSet) -> dict:
    return {
        "number": ps.number, "revision": ps.revision, "parents": ps.parents, "ref": ps.ref,
        "uploader": ps.uploader.username, "created_on": ps.created_on, "author_name": ps.author_name,
        "author_email": ps.author_email, "author_username": ps.author_username,
        "commit_message": ps.commit_message, "kind": ps.kind,
        "files": [[f.file, f.type, f.insertions, f.deletions, f.file_old] for f in ps.files],
        "approvals": {user: {label: [a.value, a.granted_on] for label, a in labels.items()}
                      for user, labels in ps.approvals.items()},
        "comments": [[c.file, c.line, c.reviewer.username, c.message] for c in ps.comments],
    }


def _change(c: Change) -> dict:
    return {
        "number": c.number, "project": c.project.name, "branch": c.branch, "change_id": c.change_id,
        "owner": c.owner.username, "created_on": c.created_on, "last_updated": c.last_updated, "url": c.url,
        "status": c.status, "topic": c.topic, "wip": c.wip, "private": c.private, "hashtags": c.hashtags,
        "reviewers": c.reviewers, "ccs": c.ccs, "meta_rev": c.meta_rev,
        "patch_sets": [_patchset(ps) for ps in c.patch_sets],
        "messages": [[m.timestamp, m.author.username, m.message, m.patchset, m.tag] for m in c.messages],
    }


def save_state(sim: GerritSimulator) -> None:
    """Write the whole state (called with the simulator's lock held)."""
    state = {
        "version": VERSION,
        "next_change": sim._next_change,
        "accounts": [_account(a) for a in sim.accounts.values()],
        "projects": [{"name": p.name, "labels": p.labels, "submit_rule": p.submit_rule,
                      "description": p.description, "head": p.head} for p in sim.projects.values()],
        "changes": [_change(c) for c in sim.changes.values()],
    }
    path = os.path.join(sim.root, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(state, f, separators=(",", ":"))
    os.replace(path + ".tmp", path)


def append_event(sim: GerritSimulator, line: bytes) -> None:
    with open(os.path.join(sim.root, EVENTS_FILE), "ab") as f:
        f.write(line)


def load_state(sim: GerritSimulator) -> bool:
    """Read back what `save_state` wrote, if anything; True when there was a state to load."""
    from gatekeeper.sim.gerrit.simulator import _load_public_key

    path = os.path.join(sim.root, STATE_FILE)
    if not os.path.exists(path):
        return False
    try:
        with open(path) as f:
            state = json.load(f)
        if state.get("version") != VERSION:
            raise StateError(f"{path}: state version {state.get('version')!r}, this simulator reads {VERSION}")
        for a in state["accounts"]:
            sim.accounts[a["username"]] = Account(
                a["id"], a["username"], a["name"], a["email"],
                [_load_public_key(k) for k in a["keys"]], a["key_file"])
        for p in state["projects"]:
            repo = BareRepo(os.path.join(sim.root, "git", p["name"] + ".git"))
            labels = {k: tuple(v) for k, v in p["labels"].items()}
            sim.projects[p["name"]] = Project(p["name"], repo, labels, p["submit_rule"], p["description"], p["head"])
        for c in state["changes"]:
            change = Change(
                number=c["number"], project=sim.projects[c["project"]], branch=c["branch"],
                change_id=c["change_id"], owner=sim.accounts[c["owner"]], created_on=c["created_on"],
                last_updated=c["last_updated"], url=c["url"], status=c["status"], topic=c["topic"], wip=c["wip"],
                private=c["private"], hashtags=c["hashtags"], reviewers=c["reviewers"], ccs=c["ccs"],
                meta_rev=c["meta_rev"])
            for ps in c["patch_sets"]:
                patchset = PatchSet(
                    number=ps["number"], revision=ps["revision"], parents=ps["parents"], ref=ps["ref"],
                    uploader=sim.accounts[ps["uploader"]], created_on=ps["created_on"],
                    author_name=ps["author_name"], author_email=ps["author_email"],
                    author_username=ps["author_username"], commit_message=ps["commit_message"],
                    files=[FileChange(*f) for f in ps["files"]], kind=ps["kind"])
                patchset.approvals = {
                    user: {label: Approval(label, value, granted, sim.accounts[user])
                           for label, (value, granted) in labels.items()}
                    for user, labels in ps["approvals"].items()}
                patchset.comments = [InlineComment(f, line, sim.accounts[u], text)
                                     for f, line, u, text in ps["comments"]]
                change.patch_sets.append(patchset)
                sim._by_revision[patchset.revision] = (change, patchset)
            change.messages = [ChangeMessage(t, sim.accounts[u], text, number, tag)
                               for t, u, text, number, tag in c["messages"]]
            sim.changes[change.number] = change
        sim._next_change = state["next_change"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StateError(f"{path}: cannot read the Gerrit simulator's state back ({type(e).__name__}: {e})") from e
    events = os.path.join(sim.root, EVENTS_FILE)
    if os.path.exists(events):
        with open(events, "rb") as f:
            sim.events.extend(json.loads(line) for line in f if line.strip())
    log.info("Gerrit simulator state loaded from %s: %d projects, %d changes, %d events", sim.root,
             len(sim.projects), len(sim.changes), len(sim.events))
    return True
