"""One build, from request to result: workspace, node, copy, devstack config, steps, logs, node release.

Result mapping:
- every step exited 0: SUCCESS; a step exited non-zero: FAILURE; the job's timeout passed: TIMED_OUT (the
  step's process group is killed on the node); the request was cancelled: ABORTED (group killed too).
- the node could not be had, reached or used, refused our pinned host key, vanished mid-run, or the workspace
  could not be copied before the job started: NODE_FAILURE; the repo state could not be rebuilt here: ERROR.
  The scheduler retries both on a new node; neither is ever the change's fault.
- a failed build is diagnosed once its logs are collected (gatekeeper.executor.diagnosis): failure class, summary
  and known bugs on its result; a step failure that was the infrastructure's (its SSH channel closed without an
  exit status, a fetch that could not resolve its host, a full disk) becomes ERROR, and a timeout before the
  job's steps started NODE_FAILURE, so they are retried too.
Node release: SUCCESS, NODE_FAILURE, ERROR and ABORTED give the node back used (the launcher deletes it);
FAILURE and TIMED_OUT hold it (24 h by default, or the job's hold-hours) with the build named as reason, unless
`max_held` nodes are already held; an operator's autohold request matching the build holds it in any case, with
the autohold's reason and duration.
A build on a nodeset (gatekeeper.executor.multinode) gets all its nodes in one request; its steps run on the
first, the primary. Its nodes are released together and held together (one autohold unit for the build; held only
while all fit under `max_held`); a step failure while another node of the set no longer answers is NODE_FAILURE.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.config.layout import Signature
from gatekeeper.executor import devstack, diagnosis, logs, multinode
from gatekeeper.executor.console import Console, ConsoleRegistry
from gatekeeper.executor.masking import Masker, secrets_from_vars
from gatekeeper.executor.multinode import BuildNode
from gatekeeper.executor.nodes import NodeSource, NodeWaitAborted, NoNode
from gatekeeper.executor.remote import ENV_NAME, NodeLost, RemoteHost, StepOutcome
from gatekeeper.executor.transfer import TransferError, push_rsync, push_tar
from gatekeeper.executor.workspace import GitCache, GitError, prepare_workspace, summarize
from gatekeeper.zk.builds import (
    ABORTED,
    ERROR,
    FAILURE,
    NODE_FAILURE,
    SUCCESS,
    TIMED_OUT,
    BuildRequest,
    BuildResult,
)
from gatekeeper.zk.node_records import Node

log = logging.getLogger("gatekeeper.executor.build")

REMOTE_WORKSPACE = "workspace"  # on the node, under the login's home
HELD_RESULTS = (FAILURE, TIMED_OUT)


@dataclass
class ExecutorSettings:
    """What an executor is configured with (the service config's `executor` section, plus wiring)."""

    work_dir: str
    hold_hours: float = 24.0
    max_held: int = 10
    node_timeout: float = 600.0
    transfer: str = "tar"  # "tar" (over the build's SSH connection) or "rsync"
    secrets: list[str] = field(default_factory=list)  # extra values to mask everywhere
    keep_build_dirs: bool = False


@dataclass
class BuildTimings:
    """When things happened (time.time()), for the status page and the benchmark."""

    requested: float = 0.0
    claimed: float = 0.0
    node_ready: float = 0.0
    workspace_ready: float = 0.0
    first_command: float = 0.0
    finished: float = 0.0


@dataclass
class _Context:
    node: Node | None = None  # the primary, where the steps run
    remote: RemoteHost | None = None
    members: list[BuildNode] = field(default_factory=list)  # a nodeset's nodes, the primary first ([]: one node)


class BuildFailed(Exception):
    """Ends a build early with a result and a message."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


def _params(request: BuildRequest) -> dict[str, Any]:
    p = dict(request.params or {})
    ds = p.get("devstack") or {}
    p.setdefault("run", [])
    p["localrc"] = dict(ds.get("localrc") or p.get("devstack_localrc") or {})
    p["local_conf"] = ds.get("local_conf") or ds.get("local-conf") or p.get("devstack_local_conf") or ""
    return p


def build_masker(request: BuildRequest, extra: list[str]) -> Masker:
    p = _params(request)
    secrets = secrets_from_vars(p.get("vars") or {}, p["localrc"])
    secrets.update(str(s) for s in p.get("secrets") or [])
    secrets.update(extra)
    return Masker(secrets)


def step_dir(request: BuildRequest, projects: list[str]) -> str:
    """The project a job's steps run in: `workdir` from the job, devstack for a devstack job, else the change's."""
    p = _params(request)
    if p.get("workdir"):
        return p["workdir"]
    if p["localrc"] or p["local_conf"]:
        for project in projects:
            if project.rsplit("/", 1)[-1] == "devstack":
                return project
    return request.change.get("project") or (projects[0] if projects else "")


def ref_env(change: dict[str, Any]) -> dict[str, Any]:
    """What a ref item's job (number 0: a branch or tag updated, created or deleted) is told, as Zuul's
    zuul.ref/oldrev/newrev/branch/tag: its revisions, the tag's name for a tag (and no branch), no change or
    patch set. Nothing for a change."""
    ref = change.get("ref", "")
    if change.get("number") or not ref.startswith("refs/"):
        return {}
    tag = ref[len("refs/tags/"):] if ref.startswith("refs/tags/") else ""
    return {"GK_CHANGE": "", "GK_PATCHSET": "", "GK_OLDREV": change.get("oldrev", ""),
            "GK_NEWREV": change.get("commit", ""), "GK_TAG": tag, "GK_BRANCH": "" if tag else change.get("branch", "")}


def hold_reason(request: BuildRequest, result: str) -> str:
    change = request.change or {}
    what = f"{change.get('number')},{change.get('patchset')}" if change.get("number") else "no change"
    return f"build {request.id}: {request.job} for {what} in {request.pipeline} ended {result}"


class BuildRunner:
    """Runs builds; one per executor, shared by its build threads."""

    def __init__(self, settings: ExecutorSettings, cache: GitCache, nodes: NodeSource, log_store: logs.LogStore,
                 consoles: ConsoleRegistry, executor_name: str = "executor",
                 signatures: Callable[[], Sequence[Signature]] | None = None) -> None:
        self.settings = settings
        self.signatures = signatures or (lambda: ())
        self.cache = cache
        self.nodes = nodes
        self.log_store = log_store
        self.consoles = consoles
        self.name = executor_name
        self.timings: dict[str, BuildTimings] = {}
        self._held_lock = threading.Lock()

    def run(self, request: BuildRequest, abort: threading.Event | None = None,
            on_start: Callable[[Node], None] | None = None) -> BuildResult:
        """Run one build to its end and return its result (ABORTED when `abort` was set); `on_start` is called
        with the node once the build has one, before its job starts."""
        abort = abort or threading.Event()
        timings = self.timings.setdefault(request.id, BuildTimings(requested=request.created))
        timings.claimed = time.time()
        result = BuildResult(id=request.id, pipeline=request.pipeline, item=request.item, job=request.job,
                             executor=self.name, attempt=request.attempt, start_time=time.time())
        tag = f"[{request.pipeline} {request.change.get('number')},{request.change.get('patchset')} {request.job}]"
        build_dir = os.path.join(self.settings.work_dir, request.id)
        log_dir = os.path.join(build_dir, "logs")
        shutil.rmtree(build_dir, ignore_errors=True)
        os.makedirs(log_dir)
        masker = build_masker(request, self.settings.secrets)
        console = Console(request.id, os.path.join(log_dir, "console.txt"), masker)
        self.consoles.add(console)
        ctx = _Context()
        try:
            try:
                self._run(request, abort, console, build_dir, timings, result, ctx, on_start)
            except BuildFailed as exc:
                result.result, result.message = exc.result, exc.message
                console.line(f"RESULT: {exc.result}: {exc.message}")
            except Exception as exc:  # a bug or an unforeseen failure here: retried, never the change's fault
                log.exception("%s build %s: executor error", tag, request.id)
                result.result, result.message = ERROR, f"executor error: {type(exc).__name__}: {exc}"
                console.line(f"RESULT: {result.result}: {result.message}")
            log.info("%s build %s: %s%s", tag, request.id, result.result,
                     f" ({masker.text(result.message)})" if result.message else "")
            if ctx.remote is not None and result.result != NODE_FAILURE:
                self._collect(ctx.remote, request, log_dir, masker, console)
                self._collect_peers(ctx.members[1:], request, log_dir, masker, console)
            self._diagnose(request, result, console, log_dir, bool(timings.first_command), tag)
            console.line(f"Build {request.id} finished: {result.result}")
        finally:
            console.close()
            self.consoles.finish(request.id)
            if ctx.remote is not None:
                ctx.remote.close()
            for member in ctx.members[1:]:
                if member.remote is not None:
                    member.remote.close()
        result.log_url, archived = self._archive(request, log_dir)
        if archived:  # a late follower of the live console now reads it from the log store
            console.path = os.path.join(archived, "console.txt")
        if ctx.node is not None:
            held_hours = self._release(request, [m.node for m in ctx.members] or [ctx.node], result.result, tag)
            if held_hours:
                # the report tells the change's owner that the node waits for them, and until when
                result.node["held_until"] = round(time.time() + held_hours * 3600)
        if not self.settings.keep_build_dirs:
            shutil.rmtree(build_dir, ignore_errors=True)
        result.end_time = timings.finished = time.time()
        while len(self.timings) > 1000:  # the recent ones are enough for status and benchmarks
            self.timings.pop(next(iter(self.timings)))
        return result

    # -- the steps of a build ---------------------------------------------------------------------------------
    def _run(self, request: BuildRequest, abort: threading.Event, console: Console, build_dir: str,
             timings: BuildTimings, result: BuildResult, ctx: _Context,
             on_start: Callable[[Node], None] | None) -> None:
        p = _params(request)
        if not request.repo_state:
            raise BuildFailed(ERROR, "the build request carries no repo state")
        try:
            plan = multinode.plan_of(request.nodeset)
        except ValueError as exc:
            raise BuildFailed(ERROR, str(exc)) from None
        ws_dir = os.path.join(build_dir, "src")
        paths: dict[str, str] | None = None
        ws_error = ""
        # the workspace is built here while the launcher finds the node
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="workspace") as pool:
            ws_future = pool.submit(prepare_workspace, request.repo_state, ws_dir, self.cache)
            try:
                if plan is None:
                    ctx.node = self.nodes.acquire(request.label or p.get("label", ""), request.priority,
                                                  f"{self.name} build {request.id}", abort,
                                                  self.settings.node_timeout, avoid=request.avoid_providers)
                else:  # one node request for the whole nodeset: one provider, the labels in order
                    got = self.nodes.acquire_set(plan.labels, request.priority, f"{self.name} build {request.id}",
                                                 abort, self.settings.node_timeout, avoid=request.avoid_providers)
                    ctx.members = [BuildNode(name, n) for name, n in zip(plan.names, got, strict=True)]
                    ctx.node = got[0]
            except NodeWaitAborted as exc:
                raise BuildFailed(ABORTED, str(exc)) from None
            except NoNode as exc:
                raise BuildFailed(NODE_FAILURE, str(exc)) from None
            finally:
                try:
                    paths = ws_future.result()
                    timings.workspace_ready = time.time()
                except (GitError, OSError) as exc:
                    ws_error = str(exc)
                except Exception as exc:
                    log.exception("build %s: preparing the workspace failed", request.id)
                    ws_error = f"{type(exc).__name__}: {exc}"
        node = ctx.node
        timings.node_ready = time.time()
        result.node = {"name": node.id, "label": node.label, "provider": node.provider, "address": node.address,
                       "image": node.image}
        if ctx.members:
            result.node["nodeset"] = [{"name": m.name, "id": m.node.id, "label": m.node.label,
                                       "provider": m.node.provider, "address": m.node.address} for m in ctx.members]
        if on_start is not None:
            try:
                on_start(node)
            except Exception:  # the status page misses this build's start; the build itself goes on
                log.exception("build %s: reporting its start failed", request.id)
        if paths is None:
            raise BuildFailed(ERROR, f"could not rebuild the repo state on {self.name}: {ws_error}")
        self._header(console, request, node, paths)
        for m in ctx.members:
            console.line(f"NODESET_NODE={m.name} {m.node.id} {m.node.label} {m.node.provider} "
                         f"{m.node.address}:{m.node.port}{' (primary)' if m is ctx.members[0] else ''}")
        if abort.is_set():
            raise BuildFailed(ABORTED, "cancelled before the job started")
        try:
            ctx.remote = RemoteHost(node).connect()
            for member in ctx.members:
                member.remote = ctx.remote if member.node is node else RemoteHost(member.node).connect()
            home = self._prepare_node(ctx.remote, request, p, ws_dir, paths, node)
            if ctx.members:
                multinode.prepare(ctx.members, plan.groups, request.id)
                console.line(f"Nodeset ready: {len(ctx.members)} nodes reachable from {ctx.members[0].name}, "
                             f"inventory at {home}/{multinode.INVENTORY}")
        except (NodeLost, TransferError) as exc:
            raise BuildFailed(NODE_FAILURE, f"before the job started: {exc}") from None
        extra = multinode.environment(ctx.members, home) if ctx.members else {}
        try:
            self._steps(ctx.remote, request, p, home, paths, console, abort, timings, extra)
        except BuildFailed as exc:
            # a step that failed because another node of the set went away is the infrastructure's failure
            lost = multinode.lost_peers(ctx.members) if exc.result in HELD_RESULTS else []
            if lost:
                raise BuildFailed(NODE_FAILURE, f"node {', '.join(lost)} of the nodeset stopped answering "
                                                f"({exc.message})") from None
            raise
        result.result = SUCCESS

    def _header(self, console: Console, request: BuildRequest, node: Node, paths: dict[str, str]) -> None:
        for repo in summarize(paths):
            console.line(repo.line())
        change = request.change or {}
        console.line(f"NODE_PROVIDER={node.provider}")
        console.line(f"NODE_LABEL={node.label}")
        if node.image:  # static hosts have none
            console.line(f"NODE_IMAGE={node.image}{f' (build {node.image_build})' if node.image_build else ''}")
        console.line(f"NODE_ID={node.id}")
        console.line(f"NODE_ADDRESS={node.address}:{node.port}")
        console.line(f"BUILD_ID={request.id}")
        if ref_env(change):  # a ref item: no change to name
            console.line(f"REF={change.get('project', '')} {change.get('ref', '')} "
                         f"{change.get('oldrev', '')[:12] or '?'}..{change.get('commit', '')[:12]} ({request.changes})")
        else:
            console.line(f"CHANGE={change.get('project', '')} {change.get('number', '')},"
                         f"{change.get('patchset', '')} ({request.changes})")
        console.line(f"PIPELINE={request.pipeline}")
        console.line(f"JOB={request.job} attempt {request.attempt}/{request.attempts}")
        variant = (request.params or {}).get("variant")
        console.line(f"JOB_VARIANT={f'branches {variant}' if variant else 'default'} "
                     f"(branch {change.get('branch', '')})")

    def _prepare_node(self, remote: RemoteHost, request: BuildRequest, p: dict, ws_dir: str,
                      paths: dict[str, str], node: Node) -> str:
        """Copy the workspace and install the devstack config; returns the login's home on the node."""
        status, out = remote.execute(f"mkdir -p {shlex.quote(REMOTE_WORKSPACE)} && pwd", timeout=60)
        if status != 0:
            raise TransferError(f"{remote.where}: cannot create the workspace: {out.decode(errors='replace')}")
        home = out.decode().strip().splitlines()[-1]
        if self.settings.transfer == "rsync":
            push_rsync(node, ws_dir, REMOTE_WORKSPACE)
        else:
            push_tar(remote, ws_dir, REMOTE_WORKSPACE)
        files = devstack.config_files(p["localrc"], p["local_conf"])
        if files:
            target = f"{REMOTE_WORKSPACE}/{step_dir(request, list(paths))}"
            for name, text in files.items():
                path = f"{target}/{name}"
                status, out = remote.execute(f"cat > {shlex.quote(path)}", stdin=text.encode(), timeout=60)
                if status != 0:
                    raise TransferError(f"{remote.where}: writing {path} failed: {out.decode(errors='replace')}")
        return home

    def _env(self, request: BuildRequest, p: dict, home: str) -> dict[str, Any]:
        env: dict[str, Any] = {}
        for name, value in (p.get("vars") or {}).items():
            if ENV_NAME.match(str(name)) and not isinstance(value, (dict, list)):
                env[name] = value
        change = request.change or {}
        env.update(
            GK_BUILD_ID=request.id, GK_JOB=request.job, GK_PIPELINE=request.pipeline,
            GK_PROJECT=change.get("project", ""), GK_BRANCH=change.get("branch", ""),
            GK_CHANGE=change.get("number", ""), GK_PATCHSET=change.get("patchset", ""), GK_REF=change.get("ref", ""),
            GK_OLDREV="", GK_NEWREV="", GK_TAG="",
            GK_CHANGES=request.changes, GK_WORKSPACE=f"{home}/{REMOTE_WORKSPACE}",
        )
        env.update(ref_env(change))
        return env

    def _steps(self, remote: RemoteHost, request: BuildRequest, p: dict, home: str, paths: dict[str, str],
               console: Console, abort: threading.Event, timings: BuildTimings,
               extra_env: dict[str, str] | None = None) -> None:
        timeout = float(p.get("timeout") or 3600)
        deadline = time.monotonic() + timeout
        cwd = f"{home}/{REMOTE_WORKSPACE}/{step_dir(request, list(paths))}"
        env = {**self._env(request, p, home), **(extra_env or {})}

        def started() -> None:
            if not timings.first_command:
                timings.first_command = time.time()

        for step in p["run"]:
            console.line(f"$ {step}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise BuildFailed(TIMED_OUT, f"the job's timeout of {timeout:.0f}s passed")
            try:
                outcome: StepOutcome = remote.run_step(step, cwd, env, console.line, timeout=left, abort=abort,
                                                       on_start=started)
            except NodeLost as exc:
                raise BuildFailed(NODE_FAILURE, f"during {step}: {exc}") from None
            if outcome.aborted:
                raise BuildFailed(ABORTED, f"cancelled during {step}; its processes on the node were killed")
            if outcome.timed_out:
                raise BuildFailed(TIMED_OUT, f"the job's timeout of {timeout:.0f}s passed during {step}; "
                                             "its processes on the node were killed")
            console.line(f"{step} exited {outcome.status} after {outcome.elapsed:.1f}s")
            if outcome.status != 0:
                raise BuildFailed(FAILURE, f"{step} exited {outcome.status}")

    # -- after the run ---------------------------------------------------------------------------------------
    def _collect(self, remote: RemoteHost, request: BuildRequest, log_dir: str, masker: Masker,
                 console: Console) -> None:
        # the node's syslog is always collected, as syslog.txt, wherever this node keeps it
        patterns = [c for c in (_params(request).get("collect") or []) if c not in logs.SYSLOG_FILES]
        try:
            got = logs.collect_files(remote, patterns, log_dir, masker)
            name = logs.collect_syslog(remote, log_dir, masker)
            console.line(f"Collected {len(got.files) + 1} log files ({', '.join(got.files + [name])})")
        except (NodeLost, OSError) as exc:
            console.line(f"Log collection failed: {exc}")

    def _collect_peers(self, peers: list[BuildNode], request: BuildRequest, log_dir: str, masker: Masker,
                       console: Console) -> None:
        """The other nodes' syslogs and `collect` files, each stored as `<node name>-<file>`."""
        patterns = [c for c in (_params(request).get("collect") or []) if c not in logs.SYSLOG_FILES]
        for member in peers:
            if member.remote is None:
                continue
            try:
                got = multinode.collect_peer_logs(member, patterns, log_dir, masker)
                console.line(f"Collected {len(got)} log files from {member.name} ({', '.join(got)})")
            except (NodeLost, OSError) as exc:
                console.line(f"Log collection from {member.name} failed: {exc}")

    def _diagnose(self, request: BuildRequest, result: BuildResult, console: Console, log_dir: str,
                  steps_started: bool, tag: str) -> None:
        """Fill the result's failure class, summary and known bugs; an infrastructure failure found in a step
        turns the result into NODE_FAILURE or ERROR (retried, never the change's fault)."""
        if result.result in (SUCCESS, ABORTED):
            return
        try:
            signatures = list(self.signatures())
        except Exception:
            log.exception("%s build %s: reading the known-bug signatures failed; matching none", tag, request.id)
            signatures = []
        found = diagnosis.diagnose(console.path, log_dir, result.result, result.message, steps_started, signatures)
        if found.result != result.result:
            console.line(f"RESULT: {found.result}: {result.result} classed as an infrastructure failure")
            log.info("%s build %s: %s classed as an infrastructure failure: %s", tag, request.id, result.result,
                     found.result)
            result.result = found.result
        result.failure_class, result.summary, result.signatures = found.failure_class, found.summary, found.signatures
        provider = (result.node or {}).get("provider", "")
        if provider:
            result.summary = diagnosis.with_outlier_note(result.summary, result.failure_class,
                                                         self.nodes.provider_outlier(provider))
        bugs = ", ".join(f"{s['id']} ({s['title']})" for s in found.signatures)
        console.line(f"Failure class: {found.failure_class}" + (f"; matches known bug {bugs}" if bugs else ""))

    def _archive(self, request: BuildRequest, log_dir: str) -> tuple[str, str]:
        """Index the logs and move them into the log store; returns (URL, local directory)."""
        change = request.change or {}
        relpath = self.log_store.build_path(change.get("number"), change.get("patchset"), request.pipeline,
                                            request.job, request.id)
        title = f"{request.job} {change.get('number')},{change.get('patchset')} {request.pipeline} build {request.id}"
        try:
            logs.write_index(log_dir, title)
            url = self.log_store.archive(log_dir, relpath)
            self.log_store.compress_later(relpath, title)
            return url, self.log_store.local_path(relpath)
        except OSError as exc:
            log.error("build %s: archiving logs in %s failed: %s", request.id, self.log_store.root, exc)
            return "", ""

    def _release(self, request: BuildRequest, nodes: list[Node], result: str, tag: str) -> float:
        """Give the build's nodes back together, all held when the build failed; returns the hours they are held
        for (0: not held). A nodeset is held as one: it takes one unit of an autohold, and is held only while all
        its nodes fit under `max_held` (a count of nodes)."""
        node = nodes[0]
        p = _params(request)
        hours = p.get("hold_hours")
        hours = self.settings.hold_hours if hours is None else float(hours)
        change = request.change or {}
        try:
            with self._held_lock:
                # an operator's autohold request wins over the cap; otherwise failures are held up to max_held
                auto = self.nodes.autohold(change.get("project", ""), request.job,
                                           f"{change.get('number')},{change.get('patchset')}", node) \
                    if result in HELD_RESULTS else None
                if auto is not None:
                    hold, (reason, hours) = True, auto
                else:
                    hold = (result in HELD_RESULTS and hours > 0
                            and self.nodes.held_count() + len(nodes) <= self.settings.max_held)
                    reason = hold_reason(request, result) if hold else ""
                released = []
                for one in nodes:
                    try:
                        self.nodes.release(one, held=hold, reason=reason, hold_hours=hours,
                                           change=f"{change.get('number')},{change.get('patchset')}",
                                           owner=change.get("owner", ""))
                        released.append(one.id)
                    except Exception:  # the others still go back
                        log.exception("%s could not release node %s", tag, one.id)
            log.info("%s %s %s released %s", tag, "node" if len(released) == 1 else "nodes", ", ".join(released),
                     f"held for {hours:g}h" if hold else "as used")
            return hours if hold and released else 0.0
        except Exception:
            log.exception("%s could not release node %s", tag, node.id)
            return 0.0
