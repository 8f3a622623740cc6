"""The gate scenario harness: real ZooKeeper, the Gerrit simulator over SSH, the Gerrit connection, the merger,
the in-process test executor and one or more schedulers.

    def test_three_changes_merge(gate):
        a, b, c = gate.change("org/a"), gate.change("org/b"), gate.change("org/a")
        gate.approve(a, b, c)
        gate.settle()
        gate.assert_history(("unit", "SUCCESS", "1,1 2,1 3,1"), ...)
        assert gate.merged(a, b, c)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from gatekeeper.config.layout import Layout, parse_layout
from gatekeeper.gerrit.connection import GerritConnection
from gatekeeper.gerrit.events import GerritEvent, event_from_gerrit
from gatekeeper.gerrit.source import GerritChangeSource, GerritReporter, without_marker
from gatekeeper.gitrepo import ssh_command
from gatekeeper.merger.service import MergerService
from gatekeeper.scheduler.scheduler import Scheduler
from gatekeeper.sim.gerrit import Change, GerritSimulator
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from tests.executor import TestExecutor
from tests.helpers import wait_for
from tests.layouts import GATE_LAYOUT

log = logging.getLogger("gatekeeper.tests.gate")

CONNECTION = "gerrit"

LAYOUT = GATE_LAYOUT

STREAM_LAG_S = 15.0

PROJECTS = ("org/a", "org/b", "org/c", "org/s")


class GateHarness:
    """Everything a gate needs, on loopback; `stop()` tears it all down."""

    def __init__(self, root: Path, zk_factory: Callable[..., ZKClient], layout_text: str = LAYOUT,
                 projects: tuple[str, ...] = PROJECTS, executor_duration: float = 0.0,
                 wrap_reporter: Callable[[GerritReporter], object] | None = None, ssh_timeout: float = 10.0) -> None:
        self.root = Path(root)
        self.ssh_timeout = ssh_timeout  # of every Gerrit command (and connect) of the connections
        self.root.mkdir(parents=True, exist_ok=True)
        self.zk_factory = zk_factory
        self.layout_text = layout_text
        self.layout_path = self.root / "layout.yaml"
        self.layout_path.write_text(layout_text)
        self.zk = zk_factory()
        self.sim = GerritSimulator(str(self.root / "gerrit")).start()
        self.ci = self.sim.add_account("ci", name="CI", email="ci@example.com", key_dir=str(self.root / "keys"))
        self.sim.add_account("jane", name="Jane Dev", email="jane@example.com")
        self.sim.add_account("rita", name="Rita Core", email="rita@example.com")
        for project in projects:
            self.sim.create_project(project)
        self.connections: list[GerritConnection] = []
        self._enqueued_keys: set[str] = set()  # events a listener wrote to ZooKeeper (settle waits for them)
        self._pending_since: tuple[int, float] | None = None
        self._last_comment: dict[tuple[int, str], int] = {}
        self.connection = self._connection(self.zk)
        listener = self.connection.listener
        assert listener is not None and listener.wait_leader(20), "the Gerrit listener did not start"
        wait_for(lambda: self.sim.listener_count() >= 1, 20, "the Gerrit listener to connect")
        wait_for(lambda: listener._state.last_event_time is not None, 20, "the listener's first checkpoint")
        self.merger = MergerService(zk_factory(), str(self.root / "merger"), workers=2,
                                    ssh=ssh_command(self.ci.key_file, str(self.root / "known_hosts"))).start()
        self.executor = TestExecutor(zk_factory(), duration=executor_duration).start()
        self.schedulers: list[Scheduler] = []
        if wrap_reporter:
            self.start_scheduler(wrap_reporter)
        else:
            self.start_scheduler()  # as subclasses that override it without arguments expect

    def _connection(self, zk: ZKClient | None) -> GerritConnection:
        conn = GerritConnection(CONNECTION, "127.0.0.1", "ci", port=self.sim.port, keyfile=self.ci.key_file,
                                web_url=self.sim.web_url, zk=zk, ssh_timeout=self.ssh_timeout, ssh_retries=2,
                                retry_delay=0.1, stream_backoff_min=0.1, stream_backoff_max=0.5)
        if conn.listener is not None:
            conn.listener.on_enqueued = self._enqueued
        conn.start()
        self.connections.append(conn)
        return conn

    def _enqueued(self, batch: list[GerritEvent]) -> None:
        self._enqueued_keys.update(event.dedup_key() for event in batch)

    def load_layout(self) -> Layout:
        return parse_layout({str(self.layout_path): self.layout_path.read_text()})

    def start_scheduler(self, wrap_reporter: Callable[[GerritReporter], object] | None = None) -> Scheduler:
        """A scheduler with its own ZooKeeper session and its own Gerrit SSH client; `wrap_reporter` puts
        something (a fault) between it and its Gerrit reporter."""
        conn = self._connection(None)
        reporter = GerritReporter(conn)
        scheduler = Scheduler(self.zk_factory(), self.load_layout(), GerritChangeSource(conn),
                              wrap_reporter(reporter) if wrap_reporter else reporter,
                              connections=(CONNECTION,), layout_loader=self.load_layout, ignore_accounts=("ci",))
        self.schedulers.append(scheduler.start())
        return scheduler

    def kill_scheduler(self, scheduler: Scheduler) -> None:
        """As SIGKILL would: its thread stops dead and its ZooKeeper session goes away without cleanup."""
        scheduler._stopping.set()
        scheduler._wake.set()
        if scheduler._thread:
            scheduler._thread.join(30)
        for reports in scheduler._report_queues.values():
            reports.stop()  # what was queued is lost, as it would be
        scheduler.zk.client.stop()
        scheduler.zk.client.close()
        self.schedulers.remove(scheduler)

    def stop(self) -> None:
        for scheduler in self.schedulers:
            try:
                scheduler.stop()
            except Exception:
                log.exception("stopping a scheduler")
        for part in (self.executor, self.merger):
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s", part)
        for conn in self.connections:
            try:
                conn.stop()
            except Exception:
                log.exception("stopping a Gerrit connection")
        self.sim.stop()

    # -- Gerrit, as people use it ---------------------------------------------------------------------------------
    def change(self, project: str = "org/a", subject: str | None = None, files: dict | None = None,
               parent: Change | None = None, depends_on: tuple[Change, ...] = ()) -> Change:
        n = len(self.sim.changes) + 1
        return self.sim.create_change(project, subject or f"Change {n}", files=files, owner="jane", parent=parent,
                                      depends_on=depends_on)

    def approve(self, *changes: Change) -> None:
        """Code-Review +2 and Approved +1, in order (the gate's order)."""
        for c in changes:
            self.sim.approve(c, "rita")

    def push_directly(self, project: str, files: dict[str, str]) -> None:
        """An admin pushes a commit straight to master, bypassing the gate (a change touching `files` then no longer
        merges)."""
        repo = self.sim.project(project).repo
        tip = repo.rev_parse("refs/heads/master")
        direct = repo.commit([tip], "Pushed directly\n", files, ("Admin", "admin@example.com"))
        repo.update_ref("refs/heads/master", direct, tip)

    def comment(self, change: Change, text: str) -> None:
        """Jane comments `text`. The same comment on the same change twice within one second is one action to the
        listener (catch-up, reading Gerrit's second-resolution timestamps, could not tell the two apart), so a
        repeat waits for the next second, as a person's would come later."""
        key = (change.number, text)
        if self._last_comment.get(key) == int(time.time()):
            time.sleep(1.0 - time.time() % 1.0 + 0.01)
        self.sim.review(change, "jane", message=text)
        self._last_comment[key] = int(time.time())

    # -- waiting ----------------------------------------------------------------------------------------------------
    def _activity(self) -> tuple:
        client = self.zk.client
        queue = client.get_children(paths.event_queue(CONNECTION)) if client.exists(
            paths.event_queue(CONNECTION)) else []
        mgmt = client.get_children(paths.management_queue()) if client.exists(paths.management_queue()) else []
        merges = client.get_children(paths.MERGER_REQUESTS) + client.get_children(paths.MERGER_RESULTS)
        requests = set(client.get_children(paths.EXECUTOR_REQUESTS))
        held = {r.id for r in self.executor.held()}
        results = client.get_children(paths.EXECUTOR_RESULTS)
        busy = bool(merges or results or (requests - held)) or not all(s.idle for s in self.schedulers) \
            or self._stream_behind()
        return busy, len(self.sim.events), len(self.executor.history), tuple(sorted(requests)), tuple(queue), \
            tuple(mgmt)

    def _stream_behind(self) -> bool:
        """Gerrit's last event that the gate takes is not in ZooKeeper yet (the stream is slow under load). Bounded
        at STREAM_LAG_S, for tests that cut the stream on purpose and settle meanwhile."""
        count = len(self.sim.events)
        event = next((e for e in map(event_from_gerrit, reversed(self.sim.events[-20:])) if e is not None), None)
        if event is None or event.dedup_key() in self._enqueued_keys:
            self._pending_since = None
            return False
        if self._pending_since is None or self._pending_since[0] != count:
            self._pending_since = (count, time.monotonic())
        return time.monotonic() - self._pending_since[1] < STREAM_LAG_S

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until nothing moves: Gerrit's events consumed, no merge or build pending (held builds aside)."""
        deadline = time.monotonic() + timeout
        quiet, last = 0, None
        while time.monotonic() < deadline:
            busy, *marks = self._activity()
            if not busy and marks == last:
                quiet += 1
                if quiet >= 4:
                    return
            else:
                quiet = 0
            last = marks
            time.sleep(0.05)
        raise AssertionError(f"the gate did not settle within {timeout:.0f}s: {self._activity()}")

    # -- reading back -----------------------------------------------------------------------------------------------
    def history(self, pipeline: str | None = None) -> list[tuple[str, str, str]]:
        """(job, result, changes) of every build that ran (in `pipeline`), aborted ones left out."""
        return [(b.job, b.result, b.changes) for b in self.executor.history
                if b.result != "ABORTED" and (pipeline is None or b.pipeline == pipeline)]

    def assert_history(self, *expected: tuple[str, str, str], ordered: bool = False) -> None:
        """Every `(job, result, changes)` given ran (builds aborted by a reset are left out)."""
        got = self.history()
        missing = [e for e in expected if e not in got]
        assert not missing, f"missing builds {missing}; history: {got}"
        if ordered:
            assert got == list(expected), f"history {got} != {list(expected)}"

    def ran(self, job: str, result: str, changes: str) -> bool:
        return (job, result, changes) in self.history()

    def status(self, change: Change) -> str:
        return self.sim.change(change).status

    def ci_votes(self, change: Change) -> dict[str, int]:
        return self.sim.votes(change).get("ci", {})

    def ci_messages(self, change: Change, raw: bool = False) -> list[str]:
        """CI's messages on the change, as people read them (`raw`: with each report's marker line)."""
        c = self.sim.change(change)
        return [m.message if raw else without_marker(m.message) for m in c.messages if m.author.username == "ci"]

    def reports(self, change: Change, pipeline: str = "gate") -> list[str]:
        """CI's messages on a change from one pipeline of the shared layout, without the "Patch Set N: votes"
        preamble and the report marker."""
        other = "check" if pipeline == "gate" else "gate"
        texts = [m.split("\n\n", 1)[1] if "\n\n" in m else m for m in self.ci_messages(change)]
        return [t for t in texts if f"({other} pipeline)" not in t and f"Starting {other} jobs." not in t]

    def gate_queue(self, pipeline: str = "gate") -> list[str]:
        state = self.schedulers[0].load_state(pipeline)
        return [item.key for item in state.all_items()]

    def branch_log(self, project: str, branch: str = "master") -> list[str]:
        """Subjects of the branch's history, newest first (merge commits included)."""
        repo = self.sim.project(project).repo
        out = repo.git("log", "--format=%s", f"refs/heads/{branch}")
        return [line for line in out.splitlines() if line]

    def merge_order(self) -> list[int]:
        """Change numbers in the order Gerrit merged them."""
        return [e["change"]["number"] for e in list(self.sim.events) if e["type"] == "change-merged"]

    def management(self, action: str, pipeline: str | None, timeout: float = 30.0, **fields) -> str:
        """Send an operator request like `gatekeeper enqueue` does; returns "" or the scheduler's error."""
        from gatekeeper.zk.management import Action, ManagementRequest, send_management

        return send_management(self.zk, ManagementRequest(Action(action), pipeline=pipeline or "", **fields), timeout)
