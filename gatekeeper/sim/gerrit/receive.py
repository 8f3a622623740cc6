"""Pushes to `refs/for/<branch>`: git's proc-receive hook hands them to the simulator, which answers as Gerrit does.

`git receive-pack` runs with `receive.procReceiveRefs=refs/for`, so it never writes a `refs/for/*` ref itself: it
runs the `proc-receive` hook (this module, as a script) and reports, per ref, what the hook says: `ok` (git
prints `* [new reference]`) or `ng <reason>` (git prints `! [remote rejected] ... (<reason>)` and exits non-zero).
What the hook writes to stderr reaches the pusher as `remote:` lines. The hook is a separate process; it talks to
the simulator over a socket inherited from the SSH server (`GERRIT_SIM_PUSH_FD`), one JSON request and one reply.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote_plus

log = logging.getLogger("gatekeeper.sim.gerrit.receive")

PUSH_FD_ENV = "GERRIT_SIM_PUSH_FD"
HOOK_NAME = "proc-receive"


@dataclass
class RefCommand:
    """One ref update the client asked for: `<old> <new> <ref>`."""

    old: str
    new: str
    ref: str


@dataclass
class PushOptions:
    """What `%opt,...` after the ref and `git push -o opt` ask of the changes in one push."""

    topic: str | None = None
    wip: bool | None = None  # True: %wip, False: %ready, None: leave as is
    private: bool | None = None
    reviewers: list[str] = field(default_factory=list)
    ccs: list[str] = field(default_factory=list)
    hashtags: list[str] = field(default_factory=list)
    message: str | None = None


class PushOptionError(ValueError):
    """An option Gerrit does not know or a malformed one; the text is the rejection reason."""


def parse_push_options(words: list[str]) -> PushOptions:
    """Parse Gerrit's push options (`topic=x`, `wip`, `ready`, `private`, `r=a`, `cc=b`, `hashtag=h`, `t=h`,
    `m=text_with_underscores`, `notify=...`); raises PushOptionError for unknown ones."""
    opts = PushOptions()
    for word in words:
        if not word:
            continue
        key, eq, value = word.partition("=")
        if key == "topic" and eq:
            opts.topic = value
        elif key in ("wip", "work-in-progress") and not eq:
            opts.wip = True
        elif key == "ready" and not eq:
            opts.wip = False
        elif key == "private" and not eq:
            opts.private = True
        elif key == "remove-private" and not eq:
            opts.private = False
        elif key in ("r", "reviewer") and value:
            opts.reviewers.append(value)
        elif key == "cc" and value:
            opts.ccs.append(value)
        elif key in ("hashtag", "t") and value:
            opts.hashtags.append(value)
        elif key in ("m", "message") and eq:
            # Gerrit takes the message URL-encoded (git-review) or with `_` for spaces.
            opts.message = unquote_plus(value) if "%" in value or "+" in value else value.replace("_", " ")
        elif key in ("notify", "notify-to", "notify-cc", "notify-bcc", "trace", "deadline", "publish-comments",
                     "no-publish-comments"):
            pass  # they change who is mailed and how the push is traced: nothing a simulator keeps
        elif key in ("submit", "merged", "edit", "base", "label", "l"):
            raise PushOptionError(f'"--{key}" is not supported by this simulator')
        else:
            raise PushOptionError(f'"--{key}" is not a valid option')
    if "wip" in words and "ready" in words:
        raise PushOptionError("the options 'wip' and 'ready' are mutually exclusive")
    return opts


# -- the hook side (runs inside git receive-pack) ---------------------------------------------------------------
def _read_pkt(stream: BinaryIO) -> bytes | None:
    """One pkt-line payload; None for a flush packet."""
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError("receive-pack closed the pipe")
    size = int(head, 16)
    if size == 0:
        return None
    return stream.read(size - 4)


def _write_pkt(stream: BinaryIO, text: str) -> None:
    data = text.encode()
    stream.write(b"%04x" % (len(data) + 4) + data)


def _read_until_flush(stream: BinaryIO) -> list[str]:
    out = []
    while (pkt := _read_pkt(stream)) is not None:
        out.append(pkt.decode(errors="replace").rstrip("\n"))
    return out


def hook_main() -> int:
    """The proc-receive hook: negotiate, forward the commands to the simulator, report its verdicts."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    first = _read_until_flush(stdin)
    features = first[0].split("\0", 1)[1].split() if first and "\0" in first[0] else []
    push_options = "push-options" in features
    _write_pkt(stdout, "version=1\0" + ("push-options" if push_options else ""))
    stdout.write(b"0000")
    stdout.flush()
    commands = [line.split(" ", 2) for line in _read_until_flush(stdin)]
    options = _read_until_flush(stdin) if push_options else []
    reply = {"results": [], "messages": []}
    fd = os.environ.get(PUSH_FD_ENV, "")
    if fd.isdigit():
        try:
            with socket.socket(fileno=int(fd)) as sock, sock.makefile("rwb") as channel:
                channel.write(json.dumps({"commands": commands, "options": options}).encode() + b"\n")
                channel.flush()
                reply = json.loads(channel.readline() or b'{"results": [], "messages": []}')
        except (OSError, ValueError) as e:
            reply["messages"] = [f"error: the Gerrit simulator did not answer this push ({e})"]
    for line in reply["messages"]:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    answered = {ref for _, ref, *_ in reply["results"]}
    for verdict, ref, *reason in reply["results"]:
        _write_pkt(stdout, f"{verdict} {ref}" + (f" {reason[0]}" if reason else ""))
    for _, _, ref in commands:
        if ref not in answered:
            _write_pkt(stdout, f"ng {ref} internal error in the Gerrit simulator")
    stdout.write(b"0000")
    stdout.flush()
    return 0


def write_hook(hooks_dir: str) -> str:
    """Write the hook script (run by this interpreter) into `hooks_dir`; returns the directory."""
    os.makedirs(hooks_dir, exist_ok=True)
    path = os.path.join(hooks_dir, HOOK_NAME)
    script = (f"#!{sys.executable}\n"
              "from gatekeeper.sim.gerrit.receive import hook_main\n"
              "raise SystemExit(hook_main())\n")
    current = open(path).read() if os.path.exists(path) else None
    if current != script:
        with open(path + ".tmp", "w") as f:
            f.write(script)
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
    return hooks_dir


def receive_pack_config(hooks_dir: str) -> list[str]:
    """`git -c` arguments that make receive-pack hand refs/for/* to the hook and accept `git push -o`."""
    return ["-c", f"core.hooksPath={hooks_dir}", "-c", "receive.procReceiveRefs=refs/for",
            "-c", "receive.advertisePushOptions=true"]


def serve_push(sock: socket.socket,
               handle: Callable[[list[RefCommand], list[str]], tuple[list[list[str]], list[str]]]) -> None:
    """Answer the hook's one request on `sock` with `handle(commands, options) -> (results, messages)`."""
    with sock, sock.makefile("rwb") as channel:
        line = channel.readline()
        if not line:
            return  # no refs/for push in this receive-pack run: the hook never ran
        request = json.loads(line)
        commands = [RefCommand(*c) for c in request["commands"]]
        try:
            results, messages = handle(commands, request["options"])
        except Exception:
            log.exception("push of %s failed in the simulator", ", ".join(c.ref for c in commands))
            results = [["ng", c.ref, "internal server error"] for c in commands]
            messages = ["error: internal server error", ""]
        channel.write(json.dumps({"results": results, "messages": messages}).encode() + b"\n")
        channel.flush()
