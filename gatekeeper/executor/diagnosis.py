"""Why a build failed: a short summary from its console and logs, who is to blame, and which known bugs it matches.

- `summarize` reads the console (and the collected service logs) and keeps what a person needs first: the failing
  step, which exercise failed with its assertion or traceback tail, a service that did not start with its last
  log lines, or else the step's first error lines.
- `classify` blames the change (its own steps failed), the infrastructure (node, SSH, image, provider, fetch or
  workspace, a timeout before the job's steps started) or nobody it can name (unknown); an infrastructure failure
  is turned into NODE_FAILURE or ERROR so that the scheduler retries it and never votes against the change.
- `match_signatures` runs the layout's known-bug signatures over the console or over the log files they name.
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gatekeeper.stats.outliers import outlier_sentence
from gatekeeper.zk.builds import (
    ABORTED,
    CHANGE,
    ERROR,
    FAILURE,
    INFRASTRUCTURE,
    NODE_FAILURE,
    SUCCESS,
    TIMED_OUT,
    UNKNOWN,
)

log = logging.getLogger("gatekeeper.executor.diagnosis")

MAX_LINES = 8  # a summary is read under a job's line in a review comment: a few lines
MAX_WIDTH = 240
SERVICE_LOG_LINES = 4
SCAN_BYTES = 8 << 20  # a signature reads at most this much of each file (the end of it, where failures are)
CONSOLE_BYTES = 16 << 20  # the summary reads at most this much of the console (its end)

_STEP = re.compile(r"^\$ (?P<step>.+)$")
_EXERCISE = re.compile(r"^exercise (?P<name>\S+): (?P<verdict>PASS|FAIL)$")
_SERVICE_DOWN = re.compile(r"^stack\.sh: (?P<svc>\S+) (?:failed to start|did not come up)")
_EXCEPTION = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Failure|Interrupt)\b(?::.*)?$")
_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):")
_FILE_LINE = re.compile(r'^\s*File "[^"]+", line \d+')
_ERRORISH = re.compile(r"(?i)\b(?:error|errors|fail|failed|failure|fatal|cannot|can't|unable|denied|refused)\b")
_STEP_END = re.compile(r"^(?P<step>.+) exited (?P<status>-?\d+) after [\d.]+s$")
# Lines a job's step prints when what failed under it was the network or the node, not the change.
INFRA_LINES = re.compile(
    r"(?i)(?:Could not resolve host|Temporary failure in name resolution|No space left on device"
    r"|Connection reset by peer|Network is unreachable|Read-only file system)"
)


@dataclass(frozen=True)
class Diagnosis:
    """What a failed build's result carries (BuildResult.failure_class, .summary, .signatures)."""

    failure_class: str
    summary: str
    signatures: list[dict[str, Any]]
    result: str  # the build's result, NODE_FAILURE or ERROR when an infrastructure failure was found in a step


# -- reading a console -----------------------------------------------------------------------------------------------
def console_text(line: str) -> str:
    """A console line without its timestamp (`2026-01-01 00:00:00.000000 | text`)."""
    return line.rstrip("\n").split(" | ", 1)[1] if " | " in line else line.rstrip("\n")


def read_console(path: str, limit: int = CONSOLE_BYTES) -> list[str]:
    """The console's lines without timestamps, its last `limit` bytes at most ([] when there is none): the
    failing step and its error are at the end."""
    text = _read_tail(path, limit)
    lines = text.splitlines()
    if lines and os.path.exists(path) and os.path.getsize(path) > limit:
        lines = lines[1:]  # the first line was cut
    return [console_text(line) for line in lines]


def _tail_lines(path: str, count: int) -> list[str]:
    text = _read_tail(path, 64 << 10)
    return [line for line in text.splitlines() if line.strip()][-count:]


def _read_tail(path: str, limit: int) -> str:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            if opener is open:
                size = os.path.getsize(path)
                if size > limit:
                    f.seek(size - limit)
            data = f.read()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", errors="replace")


def _clip(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= MAX_WIDTH else line[:MAX_WIDTH - 1] + "…"


def step_output(lines: Sequence[str], step: str) -> list[str]:
    """The lines a step printed: after its last `$ step` line, up to its exit line or the RESULT line."""
    start = None
    for i in range(len(lines) - 1, -1, -1):
        m = _STEP.match(lines[i])
        if m and m.group("step") == step:
            start = i + 1
            break
    if start is None:
        return []
    out = []
    for line in lines[start:]:
        if line.startswith("RESULT: ") or _STEP.match(line) or _STEP_END.match(line):
            break
        out.append(line)
    return out


def failing_step(lines: Sequence[str]) -> str:
    """The last step the console shows starting ("" when none started)."""
    for line in reversed(lines):
        m = _STEP.match(line)
        if m:
            return m.group("step")
    return ""


def error_tail(chunk: Sequence[str]) -> list[str]:
    """The lines that say what went wrong in a chunk of output: a traceback's last frame and exception, an
    exception line, else its first error-looking lines."""
    for i in range(len(chunk) - 1, -1, -1):
        if _TRACEBACK.match(chunk[i]):
            tb = [line for line in chunk[i + 1:] if line.strip()]
            exc = next((line for line in reversed(tb) if _EXCEPTION.match(line)), tb[-1] if tb else "")
            frames = [j for j, line in enumerate(tb) if _FILE_LINE.match(line)]
            last = tb[frames[-1]:frames[-1] + 2] if frames else []
            return [line.strip() for line in last if line != exc] + [exc.strip()]
    exceptions = [line.strip() for line in chunk if _EXCEPTION.match(line)]
    if exceptions:
        return exceptions[-1:]
    errors = [line.strip() for line in chunk if _ERRORISH.search(line)]
    if errors:
        return errors[:3]
    return [line.strip() for line in chunk if line.strip()][-3:]


def _exercises(output: Sequence[str]) -> list[list[str]]:
    """For each failed exercise: its FAIL line and the lines that say why."""
    failed = []
    start = 0
    for i, line in enumerate(output):
        m = _EXERCISE.match(line)
        if not m:
            continue
        if m.group("verdict") == "FAIL":
            failed.append([line, *error_tail(output[start:i])])
        start = i + 1
    return failed


def _service_failures(output: Sequence[str], log_dir: str) -> list[list[str]]:
    """For each service stack.sh saw die: its line and the last lines of its log."""
    failed = []
    for i, line in enumerate(output):
        m = _SERVICE_DOWN.match(line)
        if not m:
            continue
        svc = m.group("svc")
        tail = _tail_lines(os.path.join(log_dir, f"screen-{svc}.txt"), SERVICE_LOG_LINES) if log_dir else []
        if not tail:  # the console shows the log tail stack.sh printed
            tail = [x for x in output[i + 1:i + 1 + 20] if x.strip()][-SERVICE_LOG_LINES:]
        failed.append([f"service {svc} did not start; its log ends:", *(f"  {x.strip()}" for x in tail)])
    return failed


def summarize(lines: Sequence[str], result: str, message: str, log_dir: str = "") -> str:
    """A few lines saying what failed and why ("" for a build that passed or was aborted)."""
    if result in (SUCCESS, ABORTED, ""):
        return ""
    step = failing_step(lines)
    out: list[str] = []
    if result in (NODE_FAILURE, ERROR):
        out.append(f"{result}: {message}" if message else result)
        if step and "before the job started" not in message:
            out.append(f"while running {step}")
    elif result == TIMED_OUT:
        out.append(message or "the job timed out")
        out += error_tail(step_output(lines, step))[-3:] if step else []
    else:
        output = step_output(lines, step) if step else []
        out.append(message or (f"{step} failed" if step else "the build failed"))
        found = _service_failures(output, log_dir) + _exercises(output)
        if found:
            for block in found:
                out += block
        elif output:
            out += error_tail(output)
    out = [_clip(line) for line in out if line.strip()]
    if len(out) > MAX_LINES:
        out = out[:MAX_LINES - 1] + [f"… ({len(out) - MAX_LINES + 1} more lines in the console)"]
    return "\n".join(out)


# -- who is to blame ---------------------------------------------------------------------------------------------
def classify(lines: Sequence[str], result: str, steps_started: bool) -> tuple[str, str]:
    """(failure class, result): the class of a failed build, and its result, NODE_FAILURE or ERROR when what
    failed was the infrastructure, so that the scheduler retries it."""
    if result in (SUCCESS, ABORTED, ""):
        return "", result
    if result in (NODE_FAILURE, ERROR):
        return INFRASTRUCTURE, result
    if not steps_started:  # the job's own steps never ran: nothing of the change's was tested
        return INFRASTRUCTURE, NODE_FAILURE
    if result == TIMED_OUT:
        return UNKNOWN, result
    step = failing_step(lines)
    output = step_output(lines, step) if step else []
    end = next((m for m in (_STEP_END.match(x) for x in reversed(lines)) if m), None)
    if end is not None and int(end.group("status")) == -1:  # the step's channel closed without an exit status
        return INFRASTRUCTURE, ERROR
    if any(INFRA_LINES.search(line) for line in output):
        return INFRASTRUCTURE, ERROR
    if result == FAILURE and step:
        return CHANGE, result
    return UNKNOWN, result


# -- known bugs ---------------------------------------------------------------------------------------------------
def _log_files(log_dir: str, glob: str) -> list[str]:
    """The files in `log_dir` whose name matches `glob`, also as collected (`x.log`, stored as `x.txt`) and
    before compression (`x.txt.gz`)."""
    names = []
    for name in sorted(os.listdir(log_dir)) if os.path.isdir(log_dir) else ():
        plain = name[:-3] if name.endswith(".gz") else name
        as_collected = plain[:-4] + ".log" if plain.endswith(".txt") else plain
        if name != "index.html" and any(fnmatch.fnmatchcase(n, glob) for n in (name, plain, as_collected)):
            names.append(os.path.join(log_dir, name))
    return names


def match_signatures(signatures: Iterable[Any], log_dir: str) -> list[dict[str, Any]]:
    """The signatures (gatekeeper.config.layout.Signature) whose pattern matches their files in `log_dir`.

    A signature without `files` reads the console; a file is read from its end, up to SCAN_BYTES.  Console lines
    keep their timestamps out of the match (a pattern anchored with ^ works on the console too).
    """
    hits = []
    for sig in signatures:
        for path in _log_files(log_dir, sig.files or "console.txt"):
            text = _read_tail(path, SCAN_BYTES)
            if os.path.basename(path).startswith("console.txt"):
                text = "\n".join(console_text(line) for line in text.splitlines())
            if sig.pattern.search(text):
                hits.append({"id": sig.id, "title": sig.title, "url": sig.url})
                break
    return hits


def diagnose(console_path: str, log_dir: str, result: str, message: str, steps_started: bool,
             signatures: Iterable[Any] = ()) -> Diagnosis:
    """Everything above, for one finished build whose logs are in `log_dir`."""
    lines = read_console(console_path)
    failure_class, result = classify(lines, result, steps_started)
    if not failure_class:
        return Diagnosis("", "", [], result)
    summary = summarize(lines, result, message, log_dir)
    try:
        hits = match_signatures(signatures, log_dir)
    except OSError as exc:
        log.warning("matching known-bug signatures in %s failed: %s", log_dir, exc)
        hits = []
    return Diagnosis(failure_class, summary, hits, result)


def with_outlier_note(summary: str, failure_class: str, outlier: dict[str, Any] | None) -> str:
    """The summary, followed by the outlier sentence when the build ran on a provider flagged now as a job-failure
    outlier (an infrastructure failure already says it is not the change's fault)."""
    if not outlier or failure_class == INFRASTRUCTURE:
        return summary
    return "\n".join(part for part in (summary, outlier_sentence(outlier)) if part)
