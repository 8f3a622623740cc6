"""GerritSimulator: state, the Python API, and the event stream of the simulated Gerrit.

The SSH side (server.py, commands.py) calls the same methods the Python API exposes, so what a test does
through `sim.review(...)` and what gatekeeper does over `ssh gerrit review` have the same effects and events.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import paramiko

from gatekeeper.config.schema_parts import project_name_problem
from gatekeeper.sim.gerrit.faults import Faults
from gatekeeper.sim.gerrit.model import (
    DEFAULT_LABELS,
    Account,
    Approval,
    Change,
    ChangeMessage,
    InlineComment,
    PatchSet,
    Project,
    change_ref,
    vote_text,
)
from gatekeeper.sim.gerrit.persist import append_event, load_state, save_state
from gatekeeper.sim.gerrit.receive import PushOptionError, RefCommand, parse_push_options
from gatekeeper.sim.gerrit.repo import ZERO_SHA, BareRepo

log = logging.getLogger("gatekeeper.sim.gerrit")

CHANGE_ID_RE = re.compile(r"^Change-Id:\s*(I[0-9a-f]{40})\s*$", re.MULTILINE | re.IGNORECASE)


class GerritSimError(Exception):
    """An operation Gerrit would refuse; the text is Gerrit's error message (without `error:`/`fatal:`)."""


def _now() -> int:
    return int(time.time())


def _load_public_key(key: paramiko.PKey | str) -> paramiko.PKey:
    if isinstance(key, paramiko.PKey):
        return key
    text = key
    if os.path.exists(key):
        with open(key) as f:
            text = f.read()
    kind, b64 = text.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(b64))


class GerritSimulator:
    """A Gerrit that speaks Gerrit's SSH protocols, backed by real bare repos under `root`.

    Start it with `start()` (or use it as a context manager); `port` is then the bound SSH port.
    Everything else is the Python API used by tests and the demo (see the package docstring).
    """

    def __init__(
        self,
        root: str,
        host: str = "127.0.0.1",
        port: int = 0,
        web_url: str = "https://review.example.com",
        version: str = "3.10.1",
        host_key_file: str | None = None,
        stream_batch: int = 32,
        stream_buffer: int | None = None,
        http_port: int | None = None,
        persist: bool = False,
    ) -> None:
        """`stream_batch`: events per write to a listener (Gerrit: 32). `stream_buffer`: events a slow or
        paused listener may have pending before the rest are dropped and `dropped-output` is sent (Gerrit:
        128); None buffers without limit. `http_port`: serve `/tools/hooks/commit-msg` over HTTP there (0: a
        free port, stored back in `http_port`); None serves no HTTP. `persist`: keep the state in `root` across
        restarts (read back here when `root` holds one; see gatekeeper.sim.gerrit.persist)."""
        self.root = root
        self.host = host
        self.port = port
        self.web_url = web_url.rstrip("/")
        self.version = version
        self.host_key_file = host_key_file
        self.stream_batch = stream_batch
        self.stream_buffer = stream_buffer
        self.faults = Faults(self)
        self.accounts: dict[str, Account] = {}
        self.projects: dict[str, Project] = {}
        self.changes: dict[int, Change] = {}
        self.events: list[dict] = []  # every event emitted, in order (whether or not anyone listened)
        self._lock = threading.RLock()
        self._next_change = 1
        self._by_revision: dict[str, tuple[Change, PatchSet]] = {}
        self.http_port = http_port
        self._server: Any = None
        self._http: Any = None
        self.persist = persist
        os.makedirs(os.path.join(root, "git"), exist_ok=True)
        if not (persist and load_state(self)):
            self.add_account("admin", name="Administrator", email="admin@example.com")

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> GerritSimulator:
        """Listen for SSH on host:port (port 0 picks a free one, stored back in `port`)."""
        from gatekeeper.sim.gerrit.server import SSHServer

        self._server = SSHServer(self, self.host, self.port, self.host_key_file)
        self.port = self._server.start()
        if self.http_port is not None:
            from gatekeeper.sim.gerrit.hooks import HookServer

            self._http = HookServer(self.host, self.http_port).start()
            self.http_port = self._http.port
        log.info("Gerrit simulator listening on %s:%s (root %s)", self.host, self.port, self.root)
        return self

    def stop(self) -> None:
        """Close the listening socket and every SSH connection; the state stays readable."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> GerritSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------------------------
    def ssh_url(self, project: str, username: str | None = None) -> str:
        """`ssh://user@host:port/project`, what `git clone`/`git fetch` take."""
        user = f"{username}@" if username else ""
        return f"ssh://{user}{self.host}:{self.port}/{project}"

    def change_url(self, change: Change | int) -> str:
        c = self.change(change)
        return f"{self.web_url}/c/{c.project.name}/+/{c.number}"

    # -- accounts and projects --------------------------------------------------------------------------------
    def add_account(
        self,
        username: str,
        name: str | None = None,
        email: str | None = None,
        public_key: paramiko.PKey | str | None = None,
        key_dir: str | None = None,
    ) -> Account:
        """Register a user. `public_key` is a PKey, an OpenSSH public-key line or a path to one.

        With `key_dir`, a new ECDSA key pair is written there (`<username>_ecdsa`, `.pub`), registered,
        and its private key path is `account.key_file` (usable by ssh -i, git and gerritlib).
        """
        with self._lock:
            account = self.accounts.get(username)
            if account is None:
                account = Account(
                    account_id=1000000 + len(self.accounts),
                    username=username,
                    name=name or username.capitalize(),
                    email=email or f"{username}@example.com",
                )
                self.accounts[username] = account
            if public_key is not None:
                account.public_keys.append(_load_public_key(public_key))
            if key_dir is not None:
                os.makedirs(key_dir, exist_ok=True)
                key = paramiko.ECDSAKey.generate()
                path = os.path.join(key_dir, f"{username}_ecdsa")
                key.write_private_key_file(path)
                with open(path + ".pub", "w") as f:
                    f.write(f"{key.get_name()} {key.get_base64()} {username}\n")
                account.public_keys.append(key)
                account.key_file = path
            if self.persist:
                save_state(self)
            return account

    def account(self, who: Account | str | None) -> Account:
        if isinstance(who, Account):
            return who
        if who is None:
            return self.accounts["admin"]
        try:
            return self.accounts[who]
        except KeyError:
            raise GerritSimError(f"account {who!r} not found") from None

    def create_project(
        self,
        name: str,
        branches: Iterable[str] = ("master",),
        labels: dict[str, tuple[int, int]] | None = None,
        submit_rule: dict[str, int] | None = None,
        empty_commit: bool = True,
        description: str = "",
    ) -> Project:
        """Create a project with a real bare repo (an initial empty commit on each branch unless told not).

        `labels` maps label -> (min, max) (default Code-Review -2..+2, Verified -2..+2, Approved 0..+1);
        `submit_rule` maps label -> value needed to submit (default: each label's max).
        """
        branches = list(branches)
        problem = project_name_problem(name)
        if problem:
            raise GerritSimError(f"project name {name!r} {problem}")
        with self._lock:
            if name in self.projects:
                raise GerritSimError(f'Project "{name}" already exists')
            labels = dict(labels or DEFAULT_LABELS)
            rule = dict(submit_rule if submit_rule is not None else {k: v[1] for k, v in labels.items()})
            path = os.path.join(self.root, "git", name + ".git")
            if os.path.exists(os.path.join(path, "HEAD")):
                # A repository left by an earlier run: adopt it as it is (never reset its branches).
                repo = BareRepo(path)
                empty_commit = empty_commit and not repo.refs("refs/heads/")
            else:
                repo = BareRepo.init(path, head=branches[0])
            project = Project(name, repo, labels, rule, description, head=f"refs/heads/{branches[0]}")
            self.projects[name] = project
            now = _now()
            self._emit({"projectName": name, "headName": project.head, "type": "project-created",
                        "eventCreatedOn": now})
            if empty_commit:
                root = repo.commit([], "Initial empty repository\n", when=now)
                for branch in branches:
                    repo.update_ref(f"refs/heads/{branch}", root)
                    self._emit_ref_updated(project, f"refs/heads/{branch}", ZERO_SHA, root, None, now)
            return project

    def project(self, project: Project | str) -> Project:
        if isinstance(project, Project):
            return project
        try:
            return self.projects[project]
        except KeyError:
            raise GerritSimError(f'Project "{project}" not found') from None

    def branch_tip(self, project: Project | str, branch: str = "master") -> str | None:
        """The commit `refs/heads/<branch>` points at (None when the branch does not exist)."""
        return self.project(project).repo.rev_parse(f"refs/heads/{branch}")

    def create_branch(self, project: Project | str, branch: str, revision: str | None = None) -> str:
        """Create a branch at `revision` (default: the project's HEAD branch tip)."""
        with self._lock:
            p = self.project(project)
            sha = revision or p.repo.rev_parse(p.head)
            p.repo.update_ref(f"refs/heads/{branch}", sha)
            self._emit_ref_updated(p, f"refs/heads/{branch}", ZERO_SHA, sha, None, _now())
            return sha

    # -- changes ----------------------------------------------------------------------------------------------
    def change(self, change: Change | int | str) -> Change:
        """A change by object, number, "number" or Change-Id."""
        if isinstance(change, Change):
            return change
        with self._lock:
            if isinstance(change, str) and change.startswith("I"):
                for c in self.changes.values():
                    if c.change_id == change:
                        return c
            else:
                c = self.changes.get(int(change))
                if c is not None:
                    return c
        raise GerritSimError(f'"{change}" no such change')

    def create_change(
        self,
        project: Project | str,
        subject: str = "A change",
        files: dict[str, str | bytes | None] | None = None,
        branch: str = "master",
        owner: Account | str | None = None,
        parent: Change | str | None = None,
        depends_on: Iterable[Change | str] = (),
        topic: str | None = None,
        body: str = "",
        change_id: str | None = None,
    ) -> Change:
        """Commit `files` on top of `parent` (a change's current patch set, a sha, default the branch tip)
        and upload it as a new change. `depends_on` adds `Depends-On: <url>` footers (a Change gives its URL,
        a string is used as is). Emits ref-updated noise then patchset-created."""
        with self._lock:
            p = self.project(project)
            who = self.account(owner)
            base = self._resolve_parent(p, branch, parent)
            if change_id is None:
                change_id = "I" + hashlib.sha1(uuid.uuid4().bytes).hexdigest()
            footers = [f"Depends-On: {self.change_url(d) if isinstance(d, Change) else d}" for d in depends_on]
            footers.append(f"Change-Id: {change_id}")
            message = subject + "\n\n" + (body.strip() + "\n\n" if body.strip() else "") + "\n".join(footers) + "\n"
            files = files if files is not None else {f"change-{self._next_change}.txt": subject + "\n"}
            sha = p.repo.commit([base] if base else [], message, files, (who.name, who.email), when=_now())
            change, _ = self.upload(p, sha, branch=branch, uploader=who, topic=topic)
            return change

    def create_patchset(
        self,
        change: Change | int,
        files: dict[str, str | bytes | None] | None = None,
        subject: str | None = None,
        parent: Change | str | None = None,
        uploader: Account | str | None = None,
        body: str | None = None,
    ) -> PatchSet:
        """Upload a new patch set: the current one's tree with `files` changed; with `parent` it is rebased
        onto that commit/change (the change's own file edits are re-applied there)."""
        with self._lock:
            c = self.change(change)
            cur = c.current
            who = self.account(uploader) if uploader else c.owner
            repo = c.project.repo
            old_lines = cur.commit_message.split("\n")
            msg = cur.commit_message
            if subject is not None or body is not None:
                footers = [ln for ln in old_lines if re.match(r"^(Change-Id|Depends-On):", ln)]
                new_subject = subject if subject is not None else c.subject
                text = body.strip() + "\n\n" if body and body.strip() else ""
                msg = new_subject + "\n\n" + text + "\n".join(footers) + "\n"
            if parent is None:
                parents = list(cur.parents)
                edits = dict(files or {})
                base_tree_commit = cur.revision
            else:
                new_parent = self._resolve_parent(c.project, c.branch, parent)
                parents = [new_parent]
                edits = {}
                for f in cur.files:
                    edits[f.file] = None if f.type == "DELETED" else repo.show_bytes(cur.revision, f.file)
                    if f.file_old and f.type == "RENAMED":
                        edits[f.file_old] = None
                edits.update(files or {})
                base_tree_commit = new_parent
            sha = repo.commit([base_tree_commit], msg, edits, (who.name, who.email), when=_now())
            if [base_tree_commit] != parents:  # re-parent the tree we built
                tree = repo.git("rev-parse", sha + "^{tree}").strip()
                sha = repo.commit(parents, msg, None, (who.name, who.email), when=_now(), tree=tree)
            _, ps = self.upload(c.project, sha, branch=c.branch, uploader=who)
            return ps

    def _resolve_parent(self, p: Project, branch: str, parent: Change | str | None) -> str | None:
        if parent is None:
            return p.repo.rev_parse(f"refs/heads/{branch}")
        if isinstance(parent, Change):
            return parent.current.revision
        sha = p.repo.rev_parse(parent)
        if sha is None:
            raise GerritSimError(f"parent {parent!r} not found in {p.name}")
        return sha

    def upload(
        self,
        project: Project | str,
        revision: str,
        branch: str = "master",
        uploader: Account | str | None = None,
        topic: str | None = None,
        source: str | None = None,
        wip: bool = False,
        private: bool = False,
        message: str | None = None,
    ) -> tuple[Change, PatchSet]:
        """Turn a commit into a new change or, when an open change on `branch` has its Change-Id, a new patch
        set of it (what a push to refs/for/<branch> does). The commit must be in the project's repo, or in the
        git repository at path `source` (then `revision` may be any ref there, e.g. "HEAD"). `topic`, `wip`
        and `private` apply to a new change; `message` is added to the "Uploaded patch set" message."""
        with self._lock:
            p = self.project(project)
            who = self.account(uploader)
            if source is not None:
                p.repo.git("fetch", "-q", source, f"+{revision}:refs/sim-upload/incoming")
                revision = "refs/sim-upload/incoming"
            sha = p.repo.rev_parse(revision)
            if source is not None:
                p.repo.delete_ref("refs/sim-upload/incoming")
            if sha is None:
                raise GerritSimError(f"commit {revision} not found in {p.name}")
            if sha in self._by_revision:
                raise GerritSimError("no new changes")
            info = p.repo.commit_info(sha)
            m = CHANGE_ID_RE.findall(info["message"])
            if not m:
                raise GerritSimError(f"commit {sha[:7]}: missing Change-Id in message footer")
            change_id = m[-1]
            existing = [c for c in self.changes.values()
                        if c.change_id == change_id and c.project is p and c.branch == branch]
            now = _now()
            uploader_acct = who
            author = self._account_by_email(info["author_email"])
            if existing:
                c = existing[0]
                if not c.is_open:
                    raise GerritSimError(f"change {c.number} closed")
                number = len(c.patch_sets) + 1
            else:
                c = Change(
                    number=self._next_change, project=p, branch=branch, change_id=change_id, owner=who,
                    created_on=now, last_updated=now, url="", topic=topic, wip=wip, private=private,
                )
                c.url = f"{self.web_url}/c/{p.name}/+/{c.number}"
                number = 1
            parent = info["parents"][0] if info["parents"] else None
            kind = "REWORK"
            if existing:
                prev = c.current
                same_tree = p.repo.git("rev-parse", sha + "^{tree}", prev.revision + "^{tree}").split()
                if same_tree[0] == same_tree[1]:
                    kind = "NO_CODE_CHANGE" if info["parents"] == prev.parents else "TRIVIAL_REBASE"
            ps = PatchSet(
                number=number, revision=sha, parents=info["parents"], ref=change_ref(c.number, number),
                uploader=uploader_acct, created_on=now, author_name=info["author_name"],
                author_email=info["author_email"], author_username=author.username if author else "",
                commit_message=info["message"], files=p.repo.diff_files(parent, sha), kind=kind,
            )
            if not existing:
                self.changes[c.number] = c
                self._next_change += 1
            c.patch_sets.append(ps)
            c.last_updated = now
            self._by_revision[sha] = (c, ps)
            p.repo.update_ref(ps.ref, sha)
            text = f"Uploaded patch set {number}." + (f"\n\n{message}" if message else "")
            c.messages.append(ChangeMessage(now, who, text, number))
            self._emit_ref_updated(p, ps.ref, ZERO_SHA, sha, None, now)
            self._emit_meta(c, now)
            self._emit(self._change_event("patchset-created", c, ps, now, uploader=who.attr()))
            return c, ps

    def _account_by_email(self, email: str) -> Account | None:
        for a in self.accounts.values():
            if a.email == email:
                return a
        return None

    def find_patchsets(self, token: str, project: str | None = None, branch: str | None = None
                       ) -> list[tuple[Change, PatchSet]]:
        """Patch sets whose revision starts with `token` (a full or abbreviated sha)."""
        token = token.lower()
        with self._lock:
            return [
                (c, ps) for sha, (c, ps) in self._by_revision.items()
                if sha.startswith(token)
                and (project is None or c.project.name == project)
                and (branch is None or c.branch == branch)
            ]

    # -- reviews ----------------------------------------------------------------------------------------------
    def review(
        self,
        change: Change | int,
        author: Account | str | None = None,
        message: str | None = None,
        labels: dict[str, int] | None = None,
        patchset: int | None = None,
        tag: str | None = None,
        comments: dict[str, list[dict]] | None = None,
    ) -> None:
        """Post a review: votes and/or a message on a patch set (default the current one), and optionally
        inline comments (`{path: [{"line": N, "message": text}]}`, ReviewInput's shape).

        Emits comment-added with Gerrit's approvals list and "Patch Set N: Label+V" comment.
        Raises GerritSimError with Gerrit's text for unknown labels, out-of-range values, closed changes.
        """
        with self._lock:
            c = self.change(change)
            who = self.account(author)
            ps = c.patchset(patchset) if patchset else c.current
            if ps is None:
                raise GerritSimError(f'"{c.number},{patchset}" no such patch set')
            labels = dict(labels or {})
            for label, value in labels.items():
                if label not in c.project.labels:
                    raise GerritSimError(f'label "{label}" is not a configured label')
                lo, hi = c.project.labels[label]
                if not lo <= value <= hi:
                    raise GerritSimError(f'label "{label}": {value} is not a valid value')
            if labels and not c.is_open:
                raise GerritSimError("change is closed")
            if labels and ps is not c.current:
                raise GerritSimError(f"not permitted: vote on outdated patch set {ps.number}")
            now = _now()
            mine = ps.approvals.setdefault(who.username, {})
            changed: dict[str, int] = {}
            for label, value in labels.items():
                old = mine[label].value if label in mine else 0
                if old != value:
                    changed[label] = old
                mine[label] = Approval(label, value, now, who)
            inline = self._inline_comments(ps, who, comments or {})
            if not changed and not message and not inline:
                return
            ps.comments.extend(inline)
            text = f"Patch Set {ps.number}:"
            votes = sorted(vote_text(label, mine[label].value) for label in changed)
            if votes:
                text += " " + " ".join(votes)
            if inline:
                text += f"\n\n({len(inline)} comment{'s' if len(inline) != 1 else ''})"
            if message:
                text += "\n\n" + message
            c.messages.append(ChangeMessage(now, who, text, ps.number, tag))
            c.last_updated = now
            if who.username not in c.reviewers and who is not c.owner:
                c.reviewers.append(who.username)
            approvals = []
            for label in c.project.labels:
                value = mine[label].value if label in mine else 0
                a = {"type": label, "description": label, "value": str(value)}
                if label in changed:
                    a["oldValue"] = str(changed[label])
                approvals.append(a)
            self._emit_meta(c, now)
            self._emit(self._change_event("comment-added", c, ps, now, author=who.attr(),
                                          approvals=approvals, comment=text))

    @staticmethod
    def _inline_comments(ps: PatchSet, who: Account, comments: dict[str, list[dict]]) -> list[InlineComment]:
        """Validate ReviewInput `comments` against the patch set's files (Gerrit refuses unknown paths)."""
        known = {f.file for f in ps.files} | {"/COMMIT_MSG", "/PATCHSET_LEVEL"}
        out = []
        for path, entries in comments.items():
            if path not in known:
                raise GerritSimError(f"file {path} not found in revision {ps.revision}")
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("message"), str):
                    raise GerritSimError(f"comment on {path} has no message")
                line = entry.get("line", 0)
                if not isinstance(line, int) or line < 0:
                    raise GerritSimError(f"comment on {path}: line {line!r} is not a line number")
                out.append(InlineComment(path, line, who, entry["message"]))
        return out

    def comment(self, change: Change | int, author: Account | str | None, message: str) -> None:
        """A message without votes (e.g. "recheck")."""
        self.review(change, author, message=message)

    def approve(self, change: Change | int, author: Account | str | None = None,
                labels: dict[str, int] | None = None) -> None:
        """Vote what the gate needs to start: Code-Review +2 and Approved +1 by default."""
        self.review(change, author, labels=labels or {"Code-Review": 2, "Approved": 1})

    def submit_problems(self, change: Change | int) -> list[str]:
        """Why the change's current patch set cannot be submitted (empty when it can)."""
        return [label for label, status, _ in self.submit_labels(change) if status != "OK"]

    def submit_labels(self, change: Change | int) -> list[tuple[str, str, Account | None]]:
        """The submit rule's verdict on each of its labels, as Gerrit's max_with_block gives it: (label, status,
        by) with status REJECT (someone gave the label's minimum, a veto; `by` is who), OK (someone gave what is
        needed; `by` is who) or NEED (nobody did yet)."""
        c = self.change(change)
        verdicts: list[tuple[str, str, Account | None]] = []
        for label, needed in c.project.submit_rule.items():
            votes = [labels[label] for labels in c.current.approvals.values() if label in labels]
            lo = c.project.labels.get(label, (0, 0))[0]
            veto = next((a for a in votes if lo < 0 and a.value == lo), None)
            enough = next((a for a in votes if a.value >= needed), None)
            if veto is not None:
                verdicts.append((label, "REJECT", veto.by))
            elif enough is not None:
                verdicts.append((label, "OK", enough.by))
            else:
                verdicts.append((label, "NEED", None))
        return verdicts

    def submit(self, change: Change | int, submitter: Account | str | None = None) -> str:
        """Merge the change (and its open ancestors) into its branch, merge-if-necessary.

        Emits ref-updated for the branch, then change-merged (newRev = new tip). Returns the new tip.
        Raises GerritSimError with Gerrit's text when a submit requirement is not met or on conflict."""
        with self._lock:
            c = self.change(change)
            who = self.account(submitter)
            if c.status == "MERGED":
                raise GerritSimError("change is merged")
            if c.status == "ABANDONED":
                raise GerritSimError("change is abandoned")
            repo = c.project.repo
            branch_ref = f"refs/heads/{c.branch}"
            tip = repo.read_ref(branch_ref)
            to_merge: list[Change] = []
            # One git process: what the change brings, and whether the branch is an ancestor of it (then one of
            # those commits has the tip as a parent) for a fast-forward.
            brought = repo.rev_list_parents(c.current.revision, tip)
            for sha, _ in brought:
                owner = self._by_revision.get(sha)
                if owner is None:
                    continue
                oc, ops = owner
                if oc.status == "MERGED":
                    continue
                if oc.status != "NEW" or ops is not oc.current:
                    raise GerritSimError(
                        f"Change {c.number}: depends on change {oc.number} that was not submitted"
                        + (" (outdated patch set)" if ops is not oc.current else "")
                    )
                if oc not in to_merge:
                    to_merge.append(oc)
            if c not in to_merge:
                to_merge.append(c)
            for oc in to_merge:
                problems = self.submit_problems(oc)
                if problems:
                    raise GerritSimError(f"Change {oc.number}: blocked by {', '.join(problems)}")
            head = c.current.revision
            if tip is None or head == tip or any(tip in parents for _, parents in brought):
                new_tip = head
            else:
                tree = repo.merge_tree(tip, head)
                if tree is None:
                    raise GerritSimError(
                        f"Change {c.number}: Change could not be merged due to a path conflict. "
                        "Please rebase the change locally and upload the rebased commit for review."
                    )
                new_tip = repo.commit([tip, head], f'Merge "{c.subject}"\n', None, (who.name, who.email),
                                      when=_now(), tree=tree)
            repo.update_ref(branch_ref, new_tip, tip)
            now = _now()
            for oc in to_merge:
                oc.status = "MERGED"
                oc.last_updated = now
                oc.messages.append(ChangeMessage(now, who, f"Change has been successfully merged by {who.name}",
                                                 oc.current.number))
                self._emit_meta(oc, now)
            self._emit_ref_updated(c.project, branch_ref, tip or ZERO_SHA, new_tip, who, now)
            for oc in to_merge:
                self._emit(self._change_event("change-merged", oc, oc.current, now, submitter=who.attr(),
                                              newRev=new_tip))
            return new_tip

    def abandon(self, change: Change | int, who: Account | str | None = None, reason: str = "") -> None:
        with self._lock:
            c = self.change(change)
            if c.status != "NEW":
                raise GerritSimError(f"change is {c.status.lower()}")
            self._close(c, "ABANDONED", self.account(who), reason, "Abandoned", "change-abandoned", "abandoner")

    def restore(self, change: Change | int, who: Account | str | None = None, reason: str = "") -> None:
        with self._lock:
            c = self.change(change)
            if c.status != "ABANDONED":
                raise GerritSimError(f"change is {c.status.lower()}")
            self._close(c, "NEW", self.account(who), reason, "Restored", "change-restored", "restorer")

    def _close(self, c: Change, status: str, who: Account, reason: str, verb: str, etype: str, key: str) -> None:
        now = _now()
        c.status = status
        c.last_updated = now
        c.messages.append(ChangeMessage(now, who, verb + (f"\n\n{reason}" if reason else ""), c.current.number))
        self._emit_meta(c, now)
        self._emit(self._change_event(etype, c, c.current, now, **{key: who.attr(), "reason": reason}))

    def set_wip(self, change: Change | int, wip: bool = True, who: Account | str | None = None) -> None:
        with self._lock:
            c = self.change(change)
            acct = self.account(who)
            if c.wip == wip:
                return
            now = _now()
            c.wip = wip
            c.last_updated = now
            text = "Set Work In Progress" if wip else "Set Ready For Review"
            c.messages.append(ChangeMessage(now, acct, text, c.current.number))
            self._emit_meta(c, now)
            self._emit(self._change_event("wip-state-changed", c, c.current, now, changer=acct.attr()))

    def set_topic(self, change: Change | int, topic: str | None, who: Account | str | None = None) -> None:
        with self._lock:
            c = self.change(change)
            acct = self.account(who)
            now = _now()
            old, c.topic = c.topic, topic or None
            c.last_updated = now
            c.messages.append(ChangeMessage(now, acct, f"Topic set to {topic}" if topic else "Topic removed",
                                            c.current.number))
            self._emit_meta(c, now)
            extra: dict = {"changer": acct.attr()}
            if old:
                extra["oldTopic"] = old
            self._emit(self._change_event("topic-changed", c, None, now, **extra))

    def add_reviewer(self, change: Change | int, reviewer: Account | str, adder: Account | str | None = None) -> None:
        with self._lock:
            c = self.change(change)
            r, a = self.account(reviewer), self.account(adder)
            if r.username in c.reviewers:
                return
            now = _now()
            c.reviewers.append(r.username)
            c.last_updated = now
            self._emit_meta(c, now)
            self._emit(self._change_event("reviewer-added", c, c.current, now, reviewer=r.attr(), adder=a.attr()))

    def remove_reviewer(self, change: Change | int, reviewer: Account | str,
                        remover: Account | str | None = None) -> None:
        """Remove a reviewer and their votes on the current patch set (emits reviewer-deleted)."""
        with self._lock:
            c = self.change(change)
            r, rm = self.account(reviewer), self.account(remover)
            if r.username not in c.reviewers:
                return
            ps = c.current
            removed = ps.approvals.pop(r.username, {})
            approvals = [{"type": label, "description": label, "value": "0", "oldValue": str(a.value)}
                         for label, a in removed.items() if a.value]
            now = _now()
            c.reviewers.remove(r.username)
            text = f"Removed reviewer {r.name} <{r.email}>"
            votes = [vote_text(label, a.value) for label, a in removed.items() if a.value]
            if votes:
                text += " with the following votes:\n\n" + "".join(f"* {v} by {r.name} <{r.email}>\n" for v in votes)
            else:
                text += "."
            c.messages.append(ChangeMessage(now, rm, text, ps.number))
            c.last_updated = now
            self._emit_meta(c, now)
            self._emit(self._change_event("reviewer-deleted", c, ps, now, reviewer=r.attr(), remover=rm.attr(),
                                          approvals=approvals, comment=text))

    def delete_vote(self, change: Change | int, reviewer: Account | str, label: str,
                    remover: Account | str | None = None) -> None:
        """Remove `reviewer`'s vote on `label` on the current patch set (emits vote-deleted)."""
        with self._lock:
            c = self.change(change)
            r, rm = self.account(reviewer), self.account(remover)
            ps = c.current
            mine = ps.approvals.get(r.username, {})
            if label not in mine or not mine[label].value:
                raise GerritSimError(f"no vote on {label} by {r.username}")
            old = mine[label].value
            mine[label] = Approval(label, 0, _now(), r)
            now = _now()
            text = f"Removed {vote_text(label, old)} by {r.name} <{r.email}>\n"
            c.messages.append(ChangeMessage(now, rm, text, ps.number))
            c.last_updated = now
            self._emit_meta(c, now)
            self._emit(self._change_event(
                "vote-deleted", c, ps, now, reviewer=r.attr(), remover=rm.attr(),
                approvals=[{"type": label, "description": label, "value": "0", "oldValue": str(old)}],
                comment=text,
            ))

    def delete_change(self, change: Change | int, who: Account | str | None = None) -> None:
        """Delete a change (Gerrit allows it for open or abandoned changes); emits change-deleted."""
        with self._lock:
            c = self.change(change)
            if c.status == "MERGED":
                raise GerritSimError("cannot delete a merged change")
            acct = self.account(who)
            now = _now()
            for ps in c.patch_sets:
                self._by_revision.pop(ps.revision, None)
                c.project.repo.delete_ref(ps.ref)
            del self.changes[c.number]
            self._emit(self._change_event("change-deleted", c, None, now, deleter=acct.attr()))

    # -- reading back -----------------------------------------------------------------------------------------
    def votes(self, change: Change | int, patchset: int | None = None) -> dict[str, dict[str, int]]:
        """Non-zero votes on a patch set (default current): {username: {label: value}}."""
        c = self.change(change)
        ps = c.patchset(patchset) if patchset else c.current
        return ps.votes() if ps else {}

    def messages(self, change: Change | int) -> list[str]:
        """The change's messages (review comments included), oldest first."""
        return [m.message for m in self.change(change).messages]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
        """Poll `predicate` until true or `timeout`; handy in tests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return predicate()

    def listener_count(self, username: str | None = None) -> int:
        """How many stream-events listeners (of `username`, if given) are connected right now."""
        return self._server.listener_count(username) if self._server else 0

    # -- events -----------------------------------------------------------------------------------------------
    def _change_event(self, etype: str, c: Change, ps: PatchSet | None, now: int, **fields: Any) -> dict:
        event = dict(fields)
        if ps is not None:
            event["patchSet"] = ps.attr()
        event.update(
            change=c.event_attr(),
            project=c.project.name,
            refName=f"refs/heads/{c.branch}",
            changeKey={"id": c.change_id},
            type=etype,
            eventCreatedOn=now,
        )
        return event

    def _emit_ref_updated(self, p: Project, ref: str, old: str, new: str, who: Account | None, now: int) -> None:
        event: dict = {}
        if who is not None:
            event["submitter"] = who.attr()
        event.update(refUpdate={"oldRev": old, "newRev": new, "refName": ref, "project": p.name},
                     type="ref-updated", eventCreatedOn=now)
        self._emit(event)

    def _emit_meta(self, c: Change, now: int) -> None:
        old, new = c.bump_meta()
        self._emit_ref_updated(c.project, f"refs/changes/{c.number % 100:02d}/{c.number}/meta", old, new, None, now)

    def _emit(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)
            line = (json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            if self.persist:
                append_event(self, line)
                save_state(self)
            if self._server is not None:
                self._server.broadcast(event["type"], line)

    def _broadcast_raw(self, data: bytes) -> None:
        with self._lock:
            if self._server is not None:
                self._server.broadcast(None, data)

    def _cut_streams(self) -> int:
        return self._server.cut_streams() if self._server else 0

    def after_receive_pack(self, project: Project, before: dict[str, str], pusher: Account) -> None:
        """Called after a `git push`: direct branch moves become ref-updated events. (Pushes to
        refs/for/<branch> never reach the refs: receive-pack hands them to `receive_for_review`.)"""
        with self._lock:
            after = project.repo.refs()
            now = _now()
            for ref, sha in sorted(after.items()):
                if before.get(ref) != sha and not ref.startswith("refs/changes/"):
                    self._emit_ref_updated(project, ref, before.get(ref, ZERO_SHA), sha, pusher, now)
            for ref, sha in before.items():
                if ref not in after and not ref.startswith("refs/changes/"):
                    self._emit_ref_updated(project, ref, sha, ZERO_SHA, pusher, now)

    # -- magic pushes -----------------------------------------------------------------------------------------
    def receive_for_review(self, project: Project, commands: list[RefCommand], push_options: list[str],
                           pusher: Account) -> tuple[list[list[str]], list[str]]:
        """Gerrit's ReceiveCommits for `refs/for/<branch>[%options]` pushes: each ref is accepted (every new
        commit becomes a change or a patch set, the push options applied) or rejected as a whole with Gerrit's
        reason. Returns the proc-receive verdicts (`["ok", ref]` / `["ng", ref, reason]`) and the `remote:`
        lines for the pusher."""
        results: list[list[str]] = []
        messages: list[str] = []
        with self._lock:
            for cmd in commands:
                try:
                    messages.extend(self._receive_one(project, cmd, push_options, pusher))
                    results.append(["ok", cmd.ref])
                except PushRejected as e:
                    log.info("push of %s to %s in %s by %s rejected: %s", cmd.new[:7], cmd.ref, project.name,
                             pusher.username, e.reason)
                    messages.extend(e.lines)
                    results.append(["ng", cmd.ref, e.reason])
        return results, messages

    def _receive_one(self, p: Project, cmd: RefCommand, push_options: list[str], pusher: Account) -> list[str]:
        target, _, inline = cmd.ref[len("refs/for/"):].partition("%")
        branch = target.removeprefix("refs/heads/")
        try:
            opts = parse_push_options(inline.split(",") + list(push_options))
        except PushOptionError as e:
            raise PushRejected(str(e)) from None
        if cmd.new == ZERO_SHA:
            raise PushRejected("magic refs cannot be deleted")
        tip = p.repo.rev_parse(f"refs/heads/{branch}")
        if not branch or tip is None:
            raise PushRejected(f"branch {branch} not found")
        for who in opts.reviewers + opts.ccs:
            if who not in self.accounts:
                raise PushRejected(f"{who} does not identify a registered user or group")
        fresh = [sha for sha in p.repo.rev_list(cmd.new, tip) if sha not in self._by_revision]
        if not fresh:
            raise PushRejected("no new changes")
        plan: list[tuple[str, str, Change | None]] = []
        seen_ids: set[str] = set()
        for sha in fresh:
            message = p.repo.commit_info(sha)["message"]
            footer = message.rstrip("\n").rsplit("\n\n", 1)[-1]
            ids = CHANGE_ID_RE.findall(footer)
            if not ids:
                if re.search(r"^Change-Id:", footer, re.MULTILINE | re.IGNORECASE):
                    raise PushRejected(f"commit {sha[:7]}: invalid Change-Id line format in message footer")
                raise PushRejected(f"commit {sha[:7]}: missing Change-Id in message footer",
                                   self._change_id_hint(sha, pusher))
            if len(ids) > 1:
                raise PushRejected(f"commit {sha[:7]}: multiple Change-Id lines in message footer")
            if ids[0] in seen_ids:
                raise PushRejected("same Change-Id in multiple changes")
            seen_ids.add(ids[0])
            existing = next((c for c in self.changes.values()
                             if c.change_id == ids[0] and c.project is p and c.branch == branch), None)
            if existing is not None and not existing.is_open:
                raise PushRejected(f"change {existing.url} closed")
            plan.append((sha, ids[0], existing))
        report = []
        new_count = 0
        for sha, _, existing in plan:
            c, ps = self.upload(p, sha, branch=branch, uploader=pusher, topic=opts.topic, wip=bool(opts.wip),
                                private=bool(opts.private), message=opts.message)
            if existing is None:
                new_count += 1
            else:
                if opts.topic is not None and c.topic != (opts.topic or None):
                    self.set_topic(c, opts.topic, pusher)
                if opts.wip is not None:
                    self.set_wip(c, opts.wip, pusher)
            for who in opts.reviewers:
                self.add_reviewer(c, who, pusher)
            for who in opts.ccs:
                if who not in c.ccs and who not in c.reviewers:
                    c.ccs.append(who)
            if opts.hashtags:
                self.add_hashtags(c, opts.hashtags, pusher)
            tags = (" [PRIVATE]" if c.private else "") + (" [WIP]" if c.wip else "")
            tags += " [NEW]" if existing is None else ""
            report.append(f"  {c.url} {c.subject}{tags}")
        updated = len(plan) - new_count
        counts = "".join([f", new: {new_count}" if new_count else "", f", updated: {updated}" if updated else ""])
        return [f"Processing changes: refs: 1{counts}, done", "", "SUCCESS", "", *report, ""]

    def _change_id_hint(self, sha: str, pusher: Account) -> list[str]:
        """The lines Gerrit prints under a missing Change-Id: how to install the commit-msg hook."""
        return [
            f"ERROR: commit {sha[:7]}: missing Change-Id in message footer",
            "",
            "Hint: to automatically insert a Change-Id, install the hook:",
            f"  gitdir=$(git rev-parse --git-dir); scp -p -P {self.port} {pusher.username}@{self.host}:"
            "hooks/commit-msg ${gitdir}/hooks/",
            "or, for http(s):",
            f'  f="$(git rev-parse --git-dir)/hooks/commit-msg"; curl -o "$f" {self.web_url}/tools/hooks/commit-msg'
            ' ; chmod +x "$f"',
            "and then amend the commit:",
            "  git commit --amend --no-edit",
            "Finally, push your changes again",
            "",
        ]

    def add_hashtags(self, change: Change | int, hashtags: Iterable[str], editor: Account | str | None = None
                     ) -> None:
        """Add hashtags to a change (emits hashtags-changed when any is new)."""
        with self._lock:
            c = self.change(change)
            who = self.account(editor)
            added = [h for h in dict.fromkeys(hashtags) if h not in c.hashtags]
            if not added:
                return
            now = _now()
            c.hashtags.extend(added)
            c.last_updated = now
            c.messages.append(ChangeMessage(now, who, "Hashtag added: " + ", ".join(added), c.current.number))
            self._emit_meta(c, now)
            self._emit(self._change_event("hashtags-changed", c, None, now, editor=who.attr(), added=added,
                                          hashtags=list(c.hashtags)))


class PushRejected(Exception):
    """A refs/for push Gerrit refuses: `reason` goes into git's `! [remote rejected]` line, `lines` to `remote:`."""

    def __init__(self, reason: str, lines: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lines = ["Processing changes: refs: 1, done", *(lines or [])]
