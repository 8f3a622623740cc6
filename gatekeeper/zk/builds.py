"""Build requests and results: how the scheduler asks an executor to run one job for one queue item.

The contract between scheduler and executor (neither imports the other):

- The scheduler writes a `BuildRequest` to `/executor/requests/<id>`: the job and its parameters, the item's change
  and every change of its speculative state (`changes`, "1,1 2,1", the item's own last), the frozen `RepoState`
  the merger produced, the node label (or the nodeset: several named nodes in one node request), and the node
  priority (pipeline precedence, then position in the queue).
- An executor takes a request with `claim_build` (a kazoo lock at `/locks/build/<id>`, held while it runs), runs
  it, then `complete_build` publishes a `BuildResult` at `/executor/results/<id>` and deletes the request, in one
  transaction.  A request is cancelled by deleting it (`cancel_build`): an executor running it notices that its
  request is gone (`request_exists`, or a watch), aborts, and publishes nothing.
- An executor that dies while running a build loses its lock with its session, but not its `BuildStart` record:
  the other executors learn from a watch on the lock (gatekeeper.zk.jobs.ClaimWatch) that the request is free,
  and the one that claims it reports it lost (`lost_build`: ERROR, retried by the scheduler) rather than run it
  again unannounced.  A request handed back by an executor that stops (its record removed) is simply run again.
- These are the generic job queue's operations (gatekeeper.zk.jobs) on the executor's paths.
- The scheduler retries infrastructure failures (NODE_FAILURE, ERROR) with a new request and `attempt` + 1, up to
  the job's `attempts`; the executor never retries on its own.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.recipe.lock import Lock

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.components import list_components
from gatekeeper.zk.jobs import JobKind, JobQueue
from gatekeeper.zk.record import Record

SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
TIMED_OUT = "TIMED_OUT"
NODE_FAILURE = "NODE_FAILURE"  # no node, or the node died: not the change's fault, retried
ERROR = "ERROR"  # another infrastructure error (executor, log store): retried like NODE_FAILURE
ABORTED = "ABORTED"  # cancelled (by a reset or a dequeue); never reported
RETRY_LIMIT = "RETRY_LIMIT"  # infrastructure failures `attempts` times in a row: reported as a failure
SKIPPED = "SKIPPED"

RESULTS = (SUCCESS, FAILURE, TIMED_OUT, NODE_FAILURE, ERROR, ABORTED, RETRY_LIMIT, SKIPPED)
RETRYABLE = frozenset({NODE_FAILURE, ERROR})

# Who a failed build is blamed on (BuildResult.failure_class).
CHANGE = "change"  # the job's own steps failed
INFRASTRUCTURE = "infrastructure"  # node lost, SSH, boot or image, provider, fetch or workspace: never a -1
UNKNOWN = "unknown"
FAILURE_CLASSES = (CHANGE, INFRASTRUCTURE, UNKNOWN)


@dataclass
class BuildRequest(Record):
    """One job to run for one queue item on one speculative state."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    pipeline: str = ""
    item: str = ""  # the scheduler's item id, echoed back in the result
    job: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # run, timeout, vars, collect, devstack, required_projects
    change: dict[str, Any] = field(default_factory=dict)  # gatekeeper.zk.merges.ChangeSpec.to_dict()
    changes: str = ""  # every change of the speculative state, in merge order, own last: "1,1 2,1"
    repo_state: dict[str, Any] | None = None  # gatekeeper.zk.merges.RepoState.to_dict()
    label: str = ""  # node label, for a job on one node
    # a job on a nodeset: {name, nodes: [{name, label}], groups: [{name, nodes}]}, the first node the primary
    # ({} for a one-node job on `label`; records written before nodesets have none)
    nodeset: dict[str, Any] = field(default_factory=dict)
    priority: list[int] = field(default_factory=lambda: [1, 0])  # [pipeline precedence, position in queue]
    attempt: int = 1
    attempts: int = 3
    # providers where earlier attempts failed for infrastructure reasons: the node request asks to avoid them
    avoid_providers: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def sort_key(self) -> tuple:
        """Executors take lower keys first: high-precedence pipelines, then items nearer their queue's head."""
        return (*self.priority, self.created)


@dataclass
class BuildResult(Record):
    id: str = ""
    pipeline: str = ""
    item: str = ""
    job: str = ""
    result: str = ""  # one of RESULTS
    message: str = ""  # for people: why it failed, when it did
    log_url: str = ""
    node: dict[str, Any] = field(default_factory=dict)  # {name, label, provider, address}
    executor: str = ""
    attempt: int = 1
    start_time: float = 0.0
    end_time: float = 0.0
    # Diagnosis of a failed build: who is to blame, what went wrong, and which known bugs it matches.
    failure_class: str = ""  # one of FAILURE_CLASSES when the build failed, "" when it passed
    summary: str = ""  # a few lines: the failing step and its first meaningful error lines
    signatures: list[dict[str, Any]] = field(default_factory=list)  # known bugs matched: {id, title, url}

    @property
    def infrastructure(self) -> bool:
        """Whether the failure was the infrastructure's (node, SSH, image, provider), not the change's."""
        return self.failure_class == INFRASTRUCTURE

    @property
    def duration(self) -> float:
        return max(0.0, self.end_time - self.start_time)


@dataclass
class BuildStart(Record):
    """That a build runs, where, and how to watch it: at `/executor/running/<id>`, written by its executor when it
    takes the request and again when the build has its node (and its job starts); removed when it ends."""

    id: str = ""
    executor: str = ""
    started: float = 0.0  # when the executor took the request
    start_time: float = 0.0  # when the build had its node and its job started; 0 while it waits for a node
    node: dict[str, Any] = field(default_factory=dict)  # {name, label, provider, address}
    console_url: str = ""  # the executor's live console stream of this build
    pipeline: str = ""
    item: str = ""
    job: str = ""
    attempt: int = 1


def write_build_start(zk: ZKClient, start: BuildStart) -> None:
    data = start.to_bytes()
    try:
        zk.client.create(paths.executor_running(start.id), data, makepath=True)
    except NodeExistsError:
        zk.client.set(paths.executor_running(start.id), data)


def read_build_start(zk: ZKClient, ident: str) -> BuildStart | None:
    try:
        raw, _ = zk.client.get(paths.executor_running(ident))
    except NoNodeError:
        return None
    try:
        return BuildStart.from_bytes(raw)
    except (ValueError, TypeError):
        return None


def running_builds(zk: ZKClient) -> dict[str, BuildStart]:
    """Every build an executor has started and not finished, by build id."""
    try:
        children = zk.client.get_children(paths.EXECUTOR_RUNNING)
    except NoNodeError:
        return {}
    out = {}
    for ident in children:
        start = read_build_start(zk, ident)
        if start is not None:
            start.id = start.id or ident
            out[ident] = start
    return out


BUILDS: JobKind[BuildRequest, BuildResult] = JobKind(
    "build", paths.EXECUTOR_REQUESTS, paths.EXECUTOR_RESULTS, BuildRequest, BuildResult)


def build_queue(zk: ZKClient) -> JobQueue[BuildRequest, BuildResult]:
    """The build requests and results, as the generic job queue (gatekeeper.zk.jobs) sees them."""
    return JobQueue(zk, BUILDS)


def submit_build(zk: ZKClient, request: BuildRequest) -> str:
    return build_queue(zk).submit(request)


def pending_builds(zk: ZKClient) -> list[str]:
    return build_queue(zk).pending()


def read_build_request(zk: ZKClient, ident: str) -> BuildRequest | None:
    return build_queue(zk).read(ident)


def claim_build(zk: ZKClient, ident: str, identifier: str = "") -> tuple[Lock, BuildRequest] | None:
    """Lock a request for this executor and read it; None when another executor holds it, or it is gone.

    The scheduler creates the lock's parent with the request; the taker releases the lock and removes the
    parent with `release_claim`, or in `complete_build`'s transaction when it passes the lock there.
    """
    return build_queue(zk).claim(ident, identifier)


def release_claim(zk: ZKClient, ident: str, lock: Lock) -> None:
    build_queue(zk).release(ident, lock)


def request_exists(zk: ZKClient, ident: str) -> bool:
    """False once the request was cancelled (or completed): a running build checks this to abort."""
    return build_queue(zk).exists(ident)


def complete_build(zk: ZKClient, result: BuildResult, lock: Lock | None = None) -> bool:
    """Publish the result and remove the request, in one transaction (releasing the claim's `lock` with them,
    when given); False when the build was cancelled."""
    return build_queue(zk).complete(result, lock)


def lost_build(zk: ZKClient, request: BuildRequest, claimer: str) -> BuildResult | None:
    """The ERROR result that reports a claimed request as lost, when another executor had started it and let
    go of it without a result (it died, or its session ended); None when nobody else started it.

    Called by the executor that holds the request's lock now.  An executor that stops hands its builds back
    after removing their running records, so those are simply run again.
    """
    start = read_build_start(zk, request.id)
    if start is None or start.executor == claimer:
        return None
    owner = start.executor or "?"
    alive = any(c.ident == owner for c in list_components(zk, "executor"))
    message = (f"executor {owner} {'lost its ZooKeeper session' if alive else 'stopped'} while running this "
               "build; retrying")
    now = time.time()
    return BuildResult(id=request.id, pipeline=request.pipeline, item=request.item, job=request.job, result=ERROR,
                       message=message, executor=claimer, attempt=request.attempt, start_time=now, end_time=now)


def cancel_build(zk: ZKClient, ident: str) -> bool:
    """Withdraw a request, claimed or not; False when it had already completed (or was cancelled)."""
    return build_queue(zk).cancel(ident)


def finished_builds(zk: ZKClient) -> list[str]:
    return build_queue(zk).finished()


def read_build_result(zk: ZKClient, ident: str, delete: bool = True) -> BuildResult | None:
    return build_queue(zk).result(ident, delete)


def ensure_paths(zk: ZKClient) -> None:
    """The parents every party watches; idempotent."""
    build_queue(zk).ensure_paths()
