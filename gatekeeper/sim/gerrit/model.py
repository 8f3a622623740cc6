"""The simulated Gerrit's state: accounts, projects, changes, patch sets, votes, and their JSON attributes.

The `*_attr()` methods render Gerrit's event/query attribute objects with Gerrit's key names, key order and
value types (json.txt): approval values are strings, null fields are omitted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import paramiko

from gatekeeper.sim.gerrit.repo import BareRepo, FileChange

# Default labels: name -> (min, max); the default submit rule needs the max of each.
DEFAULT_LABELS: dict[str, tuple[int, int]] = {"Code-Review": (-2, 2), "Verified": (-2, 2), "Approved": (0, 1)}


def format_value(value: int) -> str:
    """Gerrit's LabelValue.formatValue: "+1", " 0", "-2"."""
    if value < 0:
        return str(value)
    return " 0" if value == 0 else f"+{value}"


def vote_text(label: str, value: int) -> str:
    """`Code-Review+2`, `Verified-1`, or `-Label` for a removed vote (LabelVote.appendTo)."""
    if value == 0:
        return f"-{label}"
    return f"{label}{'+' if value > 0 else ''}{value}"


def change_ref(number: int, patchset: int) -> str:
    """refs/changes/NN/N/P: NN is the change number modulo 100, two digits."""
    return f"refs/changes/{number % 100:02d}/{number}/{patchset}"


@dataclass
class Account:
    """A Gerrit user; SSH logins must present one of `public_keys` and use `username`."""

    account_id: int
    username: str
    name: str
    email: str
    public_keys: list[paramiko.PKey] = field(default_factory=list)
    key_file: str | None = None  # private key the simulator generated for this account, if any

    def attr(self) -> dict:
        return {"name": self.name, "email": self.email, "username": self.username}


@dataclass
class Project:
    """A project: a real bare repository plus its labels and submit rule."""

    name: str
    repo: BareRepo
    labels: dict[str, tuple[int, int]]
    submit_rule: dict[str, int]  # label -> value needed (the max by default); a min vote always blocks
    description: str = ""
    head: str = "refs/heads/master"


@dataclass
class Approval:
    label: str
    value: int
    granted_on: int
    by: Account

    def attr(self) -> dict:
        return {
            "type": self.label,
            "description": self.label,
            "value": str(self.value),
            "grantedOn": self.granted_on,
            "by": self.by.attr(),
        }


@dataclass
class InlineComment:
    """A published comment on a file of a patch set (what query --patch-sets --comments lists)."""

    file: str
    line: int
    reviewer: Account
    message: str

    def attr(self) -> dict:
        return {"file": self.file, "line": self.line, "reviewer": self.reviewer.attr(), "message": self.message}


@dataclass
class PatchSet:
    number: int
    revision: str
    parents: list[str]
    ref: str
    uploader: Account
    created_on: int
    author_name: str
    author_email: str
    author_username: str
    commit_message: str
    files: list[FileChange]
    kind: str = "REWORK"
    # username -> label -> Approval
    approvals: dict[str, dict[str, Approval]] = field(default_factory=dict)
    comments: list[InlineComment] = field(default_factory=list)

    @property
    def size_insertions(self) -> int:
        return sum(f.insertions for f in self.files)

    @property
    def size_deletions(self) -> int:
        return sum(f.deletions for f in self.files)

    def author_attr(self) -> dict:
        return {"name": self.author_name, "email": self.author_email, "username": self.author_username}

    def votes(self) -> dict[str, dict[str, int]]:
        """Non-zero votes on this patch set: {username: {label: value}}."""
        return {
            user: {label: a.value for label, a in labels.items() if a.value}
            for user, labels in self.approvals.items()
            if any(a.value for a in labels.values())
        }

    def label_values(self, label: str) -> list[int]:
        return [labels[label].value for labels in self.approvals.values() if label in labels]

    def attr(self, with_approvals: bool = False, with_files: bool = False, with_comments: bool = False) -> dict:
        out: dict = {
            "number": self.number,
            "revision": self.revision,
            "parents": list(self.parents),
            "ref": self.ref,
            "uploader": self.uploader.attr(),
            "createdOn": self.created_on,
            "author": self.author_attr(),
            "kind": self.kind,
        }
        if with_approvals:
            approvals = [a.attr() for labels in self.approvals.values() for a in labels.values() if a.value]
            if approvals:
                out["approvals"] = approvals
        if with_files:
            out["files"] = [{"file": "/COMMIT_MSG", "type": "ADDED",
                             "insertions": self.commit_message.count("\n") + 6, "deletions": 0}]
            for f in self.files:
                entry = {"file": f.file}
                if f.file_old:
                    entry["fileOld"] = f.file_old
                entry.update(type=f.type, insertions=f.insertions, deletions=-f.deletions)
                out["files"].append(entry)
        if with_comments and self.comments:
            out["comments"] = [c.attr() for c in self.comments]
        out["sizeInsertions"] = self.size_insertions
        out["sizeDeletions"] = self.size_deletions
        return out


@dataclass
class ChangeMessage:
    """A change message (what query --comments lists); `timestamp` equals the matching event's eventCreatedOn."""

    timestamp: int
    author: Account
    message: str
    patchset: int
    tag: str | None = None

    def attr(self) -> dict:
        return {"timestamp": self.timestamp, "reviewer": self.author.attr(), "message": self.message}


@dataclass
class Change:
    """A change and its patch sets; `patch_sets[-1]` is the current one."""

    number: int
    project: Project
    branch: str
    change_id: str
    owner: Account
    created_on: int
    last_updated: int
    url: str
    status: str = "NEW"  # NEW, MERGED, ABANDONED
    topic: str | None = None
    wip: bool = False
    private: bool = False
    hashtags: list[str] = field(default_factory=list)
    patch_sets: list[PatchSet] = field(default_factory=list)
    messages: list[ChangeMessage] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    ccs: list[str] = field(default_factory=list)
    meta_rev: str = "0" * 40

    @property
    def current(self) -> PatchSet:
        return self.patch_sets[-1]

    @property
    def subject(self) -> str:
        return self.current.commit_message.split("\n", 1)[0]

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"

    def patchset(self, number: int) -> PatchSet | None:
        if 1 <= number <= len(self.patch_sets):
            return self.patch_sets[number - 1]
        return None

    def bump_meta(self) -> tuple[str, str]:
        """Advance the NoteDb meta ref's (fake) revision; returns (old, new)."""
        old = self.meta_rev
        self.meta_rev = hashlib.sha1(f"{self.number}:{old}".encode()).hexdigest()
        return old, self.meta_rev

    def event_attr(self) -> dict:
        """The change attribute as events carry it (EventFactory.asChangeAttribute)."""
        out: dict = {"project": self.project.name, "branch": self.branch}
        if self.topic:
            out["topic"] = self.topic
        out.update(
            id=self.change_id,
            number=self.number,
            subject=self.subject,
            owner=self.owner.attr(),
            url=self.url,
            commitMessage=self.current.commit_message,
        )
        if self.hashtags:
            out["hashtags"] = list(self.hashtags)
        out["createdOn"] = self.created_on
        out["status"] = self.status
        if self.wip:
            out["wip"] = True
        if self.private:
            out["private"] = True
        return out
