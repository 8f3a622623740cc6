"""The demo series: what a day at the integrated gate looks like, played against the embedded Gerrit.

Six changes are uploaded across the reference projects: three good ones, one that breaks nova's compute (so
devstack's exercises fail), one that conflicts with a change ahead of it, and one whose check is rechecked.
All are checked, then approved in order into the gate; the terminal shows the queues live, and the run ends
with what merged, what failed and where the logs are.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, TextIO

from gatekeeper.sim.devstack import BROKEN_NOVA_COMPUTE, NOVA_COMPUTE

GOOD, BROKEN, CONFLICT = "good", "breaks devstack", "conflicts"


@dataclass
class DemoChange:
    key: str
    project: str
    subject: str
    files: dict[str, str]
    expect: str = GOOD
    recheck: bool = False
    change: Any = None  # the simulator's Change once uploaded


SERIES = (
    DemoChange("A", "openstack/nova", "Log the server name when booting",
               {"nova/compute.py": NOVA_COMPUTE.replace('"""nova stand-in: ', '"""nova stand-in (logs boots): ')}),
    DemoChange("B", "openstack/glance", "Add an image cache size option",
               {"glance/cache.py": 'CACHE_SIZE_MB = 512\n'}),
    DemoChange("C", "openstack/nova", "Make boot report the server state directly",
               {"nova/compute.py": BROKEN_NOVA_COMPUTE}, expect=BROKEN),
    DemoChange("D", "openstack/glance", "Add an image cache option with a smaller default",
               {"glance/cache.py": 'CACHE_SIZE_MB = 128\nCACHE_TTL_S = 60\n'}, expect=CONFLICT),
    DemoChange("E", "openstack/python-novaclient", "Add --limit to server list",
               {"novaclient/limits.py": 'DEFAULT_LIMIT = 1000\n'}),
    DemoChange("F", "openstack/keystone", "Shorten the default token lifetime",
               {"keystone/token.py": 'EXPIRATION_S = 3600\n'}, recheck=True),
)


@dataclass
class Outcome:
    change: DemoChange
    status: str = ""
    verdict: str = ""
    logs: list[str] = field(default_factory=list)


class Progress:
    """Draws the status document in the terminal: redrawn in place on a terminal, changes only otherwise."""

    BAR = 20

    def __init__(self, status_url: str, out: TextIO) -> None:
        self.status_url = status_url
        self.out = out
        self.tty = out.isatty()
        self._last = ""

    def fetch(self) -> dict:
        with urllib.request.urlopen(self.status_url, timeout=5) as resp:
            return json.load(resp)

    def render(self, status: dict, headline: str) -> str:
        lines = [headline]
        for pipeline in status.get("pipelines", []):
            items = [i for q in pipeline.get("queues", []) for i in q.get("items", [])]
            if not items:
                continue
            windows = ", ".join(f"{q['name']} window {q['window']}" for q in pipeline["queues"] if q.get("window"))
            lines.append(f"  {pipeline['name']} ({len(items)} item{'s' if len(items) != 1 else ''}"
                         + (f"; {windows}" if windows else "") + ")")
            for item in items:
                change = item["change"]
                flag = " FAILING" if item.get("failing") else ""
                lines.append(f"    {change['key']:>6} {change['project']:<30} {change.get('subject', '')[:44]}{flag}")
                for job in item.get("jobs", []):
                    lines.append(f"           {job['name']:<22} {self._bar(job)}")
        return "\n".join(lines)

    def _bar(self, job: dict) -> str:
        state, result = job.get("state"), job.get("result")
        if state == "completed":
            return f"[{'#' * self.BAR}] {result}"
        if state == "running":
            pct = job.get("progress")
            elapsed = job.get("elapsed") or 0
            if pct is None:
                return f"[{'>':<{self.BAR}}] running {elapsed:.0f}s"
            filled = int(self.BAR * pct / 100)
            return f"[{'#' * filled}{'.' * (self.BAR - filled)}] {pct:>3}% {elapsed:.0f}s"
        return f"[{' ' * self.BAR}] {state}"

    def show(self, headline: str) -> None:
        try:
            text = self.render(self.fetch(), headline)
        except OSError as exc:
            text = f"{headline}\n  (status unavailable: {exc})"
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.out.write("\x1b[H\x1b[J" + text + "\n")
        else:
            self.out.write(text + "\n")
        self.out.flush()


class Demo:
    """Plays SERIES against the embedded Gerrit while `aio` (an AllInOne) gates it."""

    def __init__(self, world: Any, aio: Any, out: TextIO = sys.stdout, timeout: float = 900.0) -> None:
        self.world = world
        self.sim = world.gerrit
        self.aio = aio
        self.out = out
        self.timeout = timeout
        self.web_url = aio.web.url.rstrip("/")
        self.progress = Progress(f"{self.web_url}/api/v1/status", out)
        self.first_merge_s: float | None = None
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        self.out.write(f"\n== {text}\n")
        self.out.flush()

    def ci_messages(self, change: Any) -> list[str]:
        return [m for m in self.sim.messages(change) if "Build " in m or "could not be merged" in m]

    def ci_vote(self, change: Any) -> int | None:
        return self.sim.votes(change).get("gatekeeper", {}).get("Verified")

    def wait(self, what: str, done) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.progress.show(f"-- {what} ({time.monotonic() - self.started:.0f}s)")
            self._note_merges()
            if done():
                return
            time.sleep(1.0)
        raise TimeoutError(f"the demo gave up waiting for: {what} (after {self.timeout:.0f}s)")

    def _note_merges(self) -> None:
        if self.first_merge_s is None and any(
                c.change is not None and self.sim.change(c.change).status == "MERGED" for c in SERIES):
            self.first_merge_s = time.monotonic() - self.started

    def run(self) -> list[Outcome]:
        self.say(f"uploading {len(SERIES)} changes (status page: {self.web_url}/)")
        for c in SERIES:
            c.change = self.sim.create_change(c.project, c.subject, files=c.files, owner="jane")
            self.out.write(f"   {c.key}: {c.change.number},1 {c.project}: {c.subject} ({c.expect})\n")
        checked = {c.key: 0 for c in SERIES}
        self.wait("check pipeline: every change tested once",
                  lambda: all(len(self.ci_messages(c.change)) >= 1 for c in SERIES))
        for c in SERIES:
            checked[c.key] = len(self.ci_messages(c.change))
        for c in SERIES:
            if c.recheck:
                self.say(f"{c.key}: jane leaves a 'recheck' comment on {c.change.number},1")
                self.sim.review(c.change, "jane", message="recheck")
        self.wait("check pipeline: the recheck reported",
                  lambda: all(len(self.ci_messages(c.change)) > checked[c.key] for c in SERIES if c.recheck))
        self.say("rita approves every change (Code-Review +2, Approved +1), in this order: "
                 + " ".join(c.key for c in SERIES))
        for c in SERIES:
            self.sim.approve(c.change, "rita")
        self.wait("gate pipeline: every change merged or rejected", self._gate_done)
        self._wait_for_history()
        return self.outcomes()

    def _wait_for_history(self, timeout: float = 20.0) -> None:
        """Let the history recorder store the last reports, so the build history is complete when we stop."""
        from gatekeeper.zk import paths

        client = self.aio.clients[0].client
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not client.exists(paths.history_queue()) or not client.get_children(paths.history_queue()):
                return
            time.sleep(0.2)

    def _gate_done(self) -> bool:
        for c in SERIES:
            if self.sim.change(c.change).status == "MERGED":
                continue
            if self.ci_vote(c.change) != -2:
                return False
        return True

    def outcomes(self) -> list[Outcome]:
        out = []
        for c in SERIES:
            change = self.sim.change(c.change)
            messages = self.ci_messages(c.change)
            last = messages[-1] if messages else ""
            if change.status == "MERGED":
                verdict = "merged"
            elif "could not be merged" in last:
                verdict = "rejected: merge conflict"
            else:
                failed = re.findall(r"^- (\S+) .*? : (FAILURE|TIMED_OUT|RETRY_LIMIT|NODE_FAILURE)", last, re.M)
                verdict = "rejected: " + (", ".join(f"{j} {r}" for j, r in failed) or "failed")
            logs = re.findall(r"(https?://\S+/logs/\S+)", last)
            out.append(Outcome(c, change.status, verdict, logs))
        return out

    def summary(self, outcomes: list[Outcome]) -> str:
        lines = ["", "== result of the demo gate"]
        for o in outcomes:
            c = o.change
            lines.append(f"   {c.key} {c.change.number},1 {c.project:<30} {o.verdict:<34} (expected: {c.expect})")
            if o.verdict != "merged":
                for url in o.logs[:2]:
                    lines.append(f"        logs: {url}")
        if self.first_merge_s is not None:
            lines.append(f"   first merge {self.first_merge_s:.0f}s after the first upload")
        lines.append(f"   status page: {self.web_url}/   build history: {self.web_url}/builds")
        return "\n".join(lines)


def expected_verdicts_met(outcomes: list[Outcome]) -> bool:
    """Whether every change ended as the series says it should (good: merged, others: rejected as such)."""
    for o in outcomes:
        want = o.change.expect
        if want == GOOD and o.verdict != "merged":
            return False
        if want == BROKEN and (not o.verdict.startswith("rejected: ") or "conflict" in o.verdict):
            return False
        if want == CONFLICT and o.verdict != "rejected: merge conflict":
            return False
    return True
