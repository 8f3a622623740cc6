"""The `gerrit ...` SSH commands: argument parsing, Gerrit's error texts and exit statuses."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gatekeeper.sim.gerrit.model import Change, PatchSet, format_value
from gatekeeper.sim.gerrit.query import QueryError, change_row, parse_query

if TYPE_CHECKING:
    import paramiko

    from gatekeeper.sim.gerrit.simulator import GerritSimulator

DEFAULT_QUERY_LIMIT = 500


@dataclass
class CommandResult:
    stdout: str | bytes = ""
    stderr: str = ""
    status: int = 0


class UsageError(Exception):
    """A command-line error: `fatal: <text>`, exit 1."""


def run_gerrit_command(sim: GerritSimulator, username: str | None, argv: list[str],
                       channel: paramiko.Channel | None = None) -> CommandResult:
    """Run one exec string (already split) the way Gerrit's sshd would."""
    if not argv:
        return CommandResult(stderr="fatal: no command given\n", status=1)
    if argv[0] != "gerrit":
        return CommandResult(stderr=f"fatal: {argv[0]}: not found\n", status=1)
    if len(argv) < 2:
        return CommandResult(stderr="fatal: gerrit: missing subcommand\n", status=1)
    name, args = argv[1], argv[2:]
    handler = COMMANDS.get(name)
    if handler is None:
        return CommandResult(stderr=f"fatal: gerrit: {name}: not found\n", status=1)
    persistent = sim.faults.matching(name, args)
    if persistent is not None:
        return CommandResult(stderr=persistent.stderr, status=persistent.exit_status or 1)
    hang_after = 0.0
    drop_after = False
    for fault_name in fault_names(argv):
        fault = sim.faults.take(fault_name)
        if fault is None:
            continue
        drop_after = drop_after or fault.drop_after
        if fault.hang_s and fault.hang_after:
            hang_after = max(hang_after, fault.hang_s)
        elif fault.hang_s and not _wait_unless_gone(channel, fault.hang_s):
            return CommandResult(status=127)  # client gone: Gerrit abandons the command
        if fault.exit_status is not None:
            return CommandResult(stderr=fault.stderr, status=fault.exit_status)
    try:
        if name in STDIN_COMMANDS:
            result = STDIN_COMMANDS[name](sim, username, args, lambda: _read_stdin(channel))
        else:
            result = handler(sim, username, args)
    except UsageError as e:
        result = CommandResult(stderr=f"fatal: {e}\n", status=1)
    if hang_after:
        _wait_unless_gone(channel, hang_after)
    if drop_after and channel is not None:
        channel.get_transport().close()  # applied, but the client never hears so
    return result


def fault_names(argv: list[str]) -> list[str]:
    """The names under which faults of this `gerrit ...` command are set: its own, and "submit" for a submitting
    review."""
    if len(argv) < 2 or argv[0] != "gerrit":
        return []
    name, args = argv[1], argv[2:]
    return [name] + (["submit"] if name == "review" and ("--submit" in args or "-s" in args) else [])


def _read_stdin(channel: paramiko.Channel | None, limit: int = 1 << 20) -> bytes:
    """Everything the client sends before closing its side of the channel (at most `limit` bytes)."""
    if channel is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        data = channel.recv(65536)
        if not data:
            break
        chunks.append(data)
        size += len(data)
    return b"".join(chunks)


def _wait_unless_gone(channel: paramiko.Channel | None, seconds: float) -> bool:
    """Sleep up to `seconds`; False as soon as the client closed the channel."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if channel is not None and channel.closed:
            return False
        time.sleep(0.05)
    return True


# -- gerrit version / ls-projects -----------------------------------------------------------------------------
def cmd_version(sim: GerritSimulator, username: str | None, args: list[str]) -> CommandResult:
    if "--json" in args:
        return CommandResult(json.dumps({"gerrit_version": sim.version}) + "\n")
    return CommandResult(f"gerrit version {sim.version}\n")


def cmd_ls_projects(sim: GerritSimulator, username: str | None, args: list[str]) -> CommandResult:
    describe = "--description" in args or "-d" in args
    fmt = None
    prefix = None
    i = 0
    while i < len(args):
        if args[i] == "--format" and i + 1 < len(args):
            fmt = args[i + 1].lower()
            i += 1
        elif args[i].startswith("--format="):
            fmt = args[i].split("=", 1)[1].lower()
        elif args[i] in ("--prefix", "-p") and i + 1 < len(args):
            prefix = args[i + 1]
            i += 1
        i += 1
    names = sorted(["All-Projects", "All-Users", *sim.projects])
    if prefix:
        names = [n for n in names if n.startswith(prefix)]
    if fmt in ("json", "json_compact"):
        out = {n: {"id": n.replace("/", "%2F"), "state": "ACTIVE"} for n in names}
        for n in names:
            if describe and n in sim.projects and sim.projects[n].description:
                out[n]["description"] = sim.projects[n].description
        return CommandResult(json.dumps(out) + "\n")
    lines = []
    for n in names:
        desc = sim.projects[n].description if n in sim.projects else ""
        lines.append(f"{n} - {desc}" if describe and desc else n)
    return CommandResult("".join(line + "\n" for line in lines))


# -- gerrit query ---------------------------------------------------------------------------------------------
QUERY_FLAGS = {
    "--current-patch-set": "current_patch_set", "--patch-sets": "patch_sets", "--all-approvals": "all_approvals",
    "--files": "files", "--commit-message": "commit_message", "--dependencies": "dependencies",
    "--comments": "comments", "--submit-records": "submit_records", "--all-reviewers": "all_reviewers",
}


def cmd_query(sim: GerritSimulator, username: str | None, args: list[str]) -> CommandResult:
    flags: dict[str, bool] = {}
    fmt = "TEXT"
    start = 0
    words: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            words.extend(args[i + 1:])
            break
        if a in QUERY_FLAGS:
            flags[QUERY_FLAGS[a]] = True
        elif a == "--format" or a.startswith("--format="):
            value = a.split("=", 1)[1] if "=" in a else _operand(args, i, a)
            i += 0 if "=" in a else 1
            if value.upper() not in ("TEXT", "JSON"):
                raise UsageError(f'"{value}" is not a valid value for "--format"')
            fmt = value.upper()
        elif a in ("--start", "-S"):
            value = _operand(args, i, a)
            i += 1
            if not value.isdigit():
                raise UsageError(f'"{value}" is not a valid value for "{a}"')
            start = int(value)
        elif a == "--no-limit":
            flags["no_limit"] = True
        elif a.startswith("--"):
            raise UsageError(f'"{a}" is not a valid option')
        else:
            words.append(a)
        i += 1
    if flags.get("files") and not (flags.get("patch_sets") or flags.get("current_patch_set")
                                   or flags.get("all_approvals")):
        raise UsageError("--files option needs --patch-sets or --current-patch-set")
    started = time.monotonic()
    try:
        match, limit = parse_query(sim, " ".join(words), username)
    except QueryError as e:
        if fmt == "JSON":
            return CommandResult(json.dumps({"type": "error", "message": str(e)}) + "\n")
        return CommandResult(f"Error in operator {e}\n")
    with sim._lock:
        hits = sorted((c for c in sim.changes.values() if match(c)),
                      key=lambda c: (c.last_updated, c.number), reverse=True)
        limit = None if flags.pop("no_limit", False) else (limit or DEFAULT_QUERY_LIMIT)
        page = hits[start:start + limit] if limit else hits[start:]
        more = limit is not None and len(hits) > start + limit
        rows = [change_row(sim, c, **flags) for c in page]
    stats = {"type": "stats", "rowCount": len(rows),
             "runTimeMilliseconds": int((time.monotonic() - started) * 1000), "moreChanges": more}
    if fmt == "JSON":
        out = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in rows)
        return CommandResult(out + json.dumps(stats, separators=(",", ":")) + "\n")
    text = []
    for r in rows:
        text.append(f"change {r['id']}\n" + "".join(
            f"  {k}: {v}\n" for k, v in r.items() if k in ("project", "branch", "number", "subject", "status", "url")
        ) + "\n")
    text.append(f"type: stats\nrowCount: {len(rows)}\n")
    return CommandResult("".join(text))


# -- gerrit review --------------------------------------------------------------------------------------------
PATCHSET_RE = re.compile(r"^[1-9][0-9]*,[1-9][0-9]*$")
SHA_RE = re.compile(r"^[0-9a-fA-F]{4,40}$")
REVIEW_VALUED = {"--project": "project", "-p": "project", "--branch": "branch", "-b": "branch",
                 "--message": "message", "-m": "message", "--notify": "notify", "-n": "notify",
                 "--tag": "tag", "-t": "tag", "--move": "move"}
REVIEW_BOOL = {"--submit": "submit", "-s": "submit", "--abandon": "abandon", "--restore": "restore",
               "--rebase": "rebase", "--json": "json", "-j": "json"}


def _operand(args: list[str], i: int, name: str) -> str:
    if i + 1 >= len(args):
        raise UsageError(f'Option "{name}" takes an operand')
    return args[i + 1]


def _label_options(sim: GerritSimulator) -> dict[str, tuple[str, int, int]]:
    """--code-review, --verified, ...: one per label defined in any project (Gerrit: in All-Projects)."""
    out = {}
    for p in sim.projects.values():
        for label, (lo, hi) in p.labels.items():
            out["--" + label.lower()] = (label, lo, hi)
    return out


def cmd_review(sim: GerritSimulator, username: str | None, args: list[str],
               stdin: Callable[[], bytes] | None = None) -> CommandResult:
    opts: dict = {"labels": {}}
    tokens: list[str] = []
    label_opts = _label_options(sim)
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in REVIEW_VALUED:
            value = inline if eq else _operand(args, i, name)
            i += 0 if eq else 1
            opts[REVIEW_VALUED[name]] = value
            if REVIEW_VALUED[name] == "project" and value not in sim.projects:
                raise UsageError(f'"{value}" is not a valid project')
        elif name in REVIEW_BOOL and not eq:
            opts[REVIEW_BOOL[name]] = True
        elif name in ("--label", "-l"):
            value = inline if eq else _operand(args, i, name)
            i += 0 if eq else 1
            m = re.fullmatch(r"([^=]+)=([+-]?\d+)", value)
            if not m:
                raise UsageError(f'"{value}" is not a valid value for "--label"')
            opts["labels"][m.group(1)] = int(m.group(2))
        elif name in label_opts:
            label, lo, hi = label_opts[name]
            value = inline if eq else _operand(args, i, name)
            i += 0 if eq else 1
            if not re.fullmatch(r"[+-]?\d+", value):
                raise UsageError(f'"{value}" is not a valid value for "{name}"')
            if not lo <= int(value) <= hi:
                raise UsageError(f'"{value}" must be in range {format_value(lo).strip()}..{format_value(hi)} '
                                 f'for "{name}"')
            opts["labels"][label] = int(value)
        elif a.startswith("-"):
            raise UsageError(f'"{a}" is not a valid option')
        else:
            tokens.append(a)
        i += 1
    _check_exclusive(opts)
    if not tokens:
        raise UsageError("Argument \"{COMMIT | CHANGE,PATCHSET}\" is required")
    targets = [_resolve(sim, t, opts.get("project"), opts.get("branch")) for t in tokens]
    if opts.get("json"):
        error = _review_input(opts, stdin() if stdin else b"")
        if error:
            return CommandResult(stderr=f"error: {error}\nfatal: internal error while reading review input\n",
                                 status=1)
    errors = []
    for c, ps in targets:
        try:
            _review_one(sim, username, c, ps, opts)
        except Exception as e:  # GerritSimError: Gerrit's per-patch-set error line
            errors.append(f"error: {e}\n")
    if errors:
        return CommandResult(stderr="".join(errors) + "fatal: one or more reviews failed; review output above\n",
                             status=1)
    return CommandResult()


def _review_input(opts: dict, data: bytes) -> str | None:
    """Fold a ReviewInput JSON object (`--json` on stdin) into `opts`; an error text when it is not one."""
    try:
        review = json.loads(data.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return f"review input is not JSON: {e}"
    if not isinstance(review, dict):
        return "review input must be a JSON object (ReviewInput)"
    labels = review.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, int) for v in labels.values()):
        return 'review input "labels" must map label names to integers'
    comments = review.get("comments") or {}
    if not isinstance(comments, dict) or not all(isinstance(v, list) for v in comments.values()):
        return 'review input "comments" must map file paths to lists of comments'
    for key in ("message", "tag"):
        if review.get(key) is not None and not isinstance(review[key], str):
            return f'review input "{key}" must be a string'
    opts["labels"].update(labels)
    opts["message"] = review.get("message")
    opts["tag"] = review.get("tag")
    opts["comments"] = comments
    opts["ready"] = bool(review.get("ready"))
    opts["work_in_progress"] = bool(review.get("work_in_progress"))
    opts["reviewers"] = [r.get("reviewer") for r in review.get("reviewers") or [] if isinstance(r, dict)]
    return None


def _check_exclusive(opts: dict) -> None:
    pairs = [("abandon", "restore"), ("abandon", "submit"), ("abandon", "rebase"), ("abandon", "move"),
             ("rebase", "submit"), ("json", "restore"), ("json", "submit"), ("json", "abandon"),
             ("json", "message"), ("json", "rebase"), ("json", "move"), ("json", "tag")]
    for a, b in pairs:
        if opts.get(a) and opts.get(b):
            raise UsageError(f"{a} and {b} actions are mutually exclusive")


def _resolve(sim: GerritSimulator, token: str, project: str | None, branch: str | None) -> tuple[Change, PatchSet]:
    if PATCHSET_RE.match(token):
        number, psnum = (int(x) for x in token.split(","))
        c = sim.changes.get(number)
        if c is None:
            raise UsageError(f'"{token}" no such patch set')
        if project and c.project.name != project:
            raise UsageError(f"change {number} not in project {project}")
        ps = c.patchset(psnum)
        if ps is None:
            raise UsageError(f'"{token}" no such patch set')
        return c, ps
    if SHA_RE.match(token):
        found = sim.find_patchsets(token, project, branch)
        if not found:
            raise UsageError(f'"{token}" no such patch set')
        if len(found) > 1:
            raise UsageError(f'"{token}" matches multiple patch sets')
        return found[0]
    raise UsageError(f'"{token}" is not a valid patch set')


def _review_one(sim: GerritSimulator, username: str | None, c: Change, ps: PatchSet, opts: dict) -> None:
    message = opts.get("message")
    labels = opts["labels"]
    with sim._lock:
        if opts.get("abandon"):
            if labels:
                sim.review(c, username, None, labels, ps.number, opts.get("tag"))
            sim.abandon(c, username, message or "")
            return
        if opts.get("restore"):
            sim.restore(c, username, message or "")
            if labels:
                sim.review(c, username, None, labels, ps.number, opts.get("tag"))
            return
        if opts.get("rebase") or opts.get("move"):
            raise UsageError("--rebase and --move are not supported by this simulator")
        sim.review(c, username, message, labels, ps.number, opts.get("tag"), opts.get("comments"))
        for reviewer in opts.get("reviewers") or []:
            sim.add_reviewer(c, reviewer, username)
        if opts.get("work_in_progress") or opts.get("ready"):
            sim.set_wip(c, bool(opts.get("work_in_progress")), username)
        if opts.get("submit"):
            if ps is not c.current:
                raise UsageError(f"Patch set {ps.number} is not current")
            sim.submit(c, username)


# -- gerrit set-reviewers / set-topic -------------------------------------------------------------------------
def _change_arg(sim: GerritSimulator, token: str, project: str | None = None) -> Change:
    """A CHANGE argument: a number, a Change-Id, or project~branch~Change-Id (ChangeArgumentParser)."""
    parts = token.split("~")
    with sim._lock:
        if len(parts) == 3:
            found = [c for c in sim.changes.values()
                     if (c.project.name, c.branch, c.change_id) == (parts[0], parts[1], parts[2])]
        elif token.isdigit():
            found = [c for c in sim.changes.values() if c.number == int(token)]
        elif re.fullmatch(r"I[0-9a-f]{6,40}", token):
            found = [c for c in sim.changes.values() if c.change_id.startswith(token)]
        else:
            found = []
        if project:
            found = [c for c in found if c.project.name == project]
    if not found:
        raise UsageError(f'"{token}": not found')
    if len(found) > 1:
        raise UsageError(f'"{token}": multiple changes found')
    return found[0]


def cmd_set_reviewers(sim: GerritSimulator, username: str | None, args: list[str]) -> CommandResult:
    add: list[str] = []
    remove: list[str] = []
    project = None
    tokens: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in ("--add", "-a", "--remove", "-r", "--project", "-p"):
            value = inline if eq else _operand(args, i, name)
            i += 0 if eq else 1
            if name in ("--project", "-p"):
                if value not in sim.projects:
                    raise UsageError(f'"{value}" is not a valid project')
                project = value
            else:
                (add if name in ("--add", "-a") else remove).append(value)
        elif a.startswith("-"):
            raise UsageError(f'"{a}" is not a valid option')
        else:
            tokens.append(a)
        i += 1
    if not tokens:
        raise UsageError('Argument "CHANGE" is required')
    changes = [_change_arg(sim, t, project) for t in tokens]
    errors = []
    for c in changes:
        for who in remove:
            if who not in sim.accounts:
                errors.append(f"error: {who} is not a valid user\n")
                continue
            sim.remove_reviewer(c, who, username)
        for who in add:
            if who not in sim.accounts:
                errors.append(f"error: {who} does not identify a registered user or group\n")
                continue
            sim.add_reviewer(c, who, username)
    if errors:
        return CommandResult(stderr="".join(errors) + "fatal: one or more updates failed\n", status=1)
    return CommandResult()


def cmd_set_topic(sim: GerritSimulator, username: str | None, args: list[str]) -> CommandResult:
    topic = None
    tokens: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in ("--topic", "-t"):
            topic = inline if eq else _operand(args, i, name)
            i += 0 if eq else 1
        elif a.startswith("-"):
            raise UsageError(f'"{a}" is not a valid option')
        else:
            tokens.append(a)
        i += 1
    if len(tokens) != 1:
        raise UsageError('Argument "CHANGE" is required' if not tokens else f'"{tokens[1]}" is not a valid option')
    c = _change_arg(sim, tokens[0])
    if topic and len(topic) > 2048:
        raise UsageError("topic length exceeds the limit (2048)")
    if (c.topic or None) != (topic or None):
        sim.set_topic(c, topic, username)
    return CommandResult()


COMMANDS = {
    "version": cmd_version,
    "ls-projects": cmd_ls_projects,
    "query": cmd_query,
    "review": cmd_review,
    "set-reviewers": cmd_set_reviewers,
    "set-topic": cmd_set_topic,
}
# Commands that read the client's stdin (called with a reader as a fourth argument).
STDIN_COMMANDS = {"review": cmd_review}
