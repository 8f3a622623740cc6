"""Build requests and results: how the scheduler asks an executor to run one job for one queue item.

The contract between scheduler and executor (neither imports the other):

- The scheduler writes a `BuildRequest` to `/executor/requests/<id>`: the job and its parameters, the item's change
  and every change of its speculative state (`changes`, "1,1 2,1", the item's own last), the frozen `RepoState`
  the merger produced, the node label, and the node priority (pipeline precedence, then position in the queue).
- An executor takes a request with `claim_build` (a kazoo lock at `/locks/build/<id>`, held while it runs), runs
  it, then `complete_build` publishes a `BuildResult` at `/executor/results/<id>` and deletes the request, in one
  transaction.  A request is cancelled by deleting it (`cancel_build`): an executor running it notices that its
  request is gone (`request_exists`, or a watch), aborts, and publishes nothing.
- The scheduler retries infrastructure failures (NODE_FAILURE, ERROR) with a new request and `attempt` + 1, up to
  the job's `attempts`; the executor never retries on its own.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import LockTimeout, NodeExistsError, NoNodeError, NotEmptyError
from kazoo.recipe.lock import Lock

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
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
    label: str = ""  # node label
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


def submit_build(zk: ZKClient, request: BuildRequest) -> str:
    zk.client.create(paths.executor_request(request.id), request.to_bytes(), makepath=True)
    return request.id


def pending_builds(zk: ZKClient) -> list[str]:
    try:
        return sorted(zk.client.get_children(paths.EXECUTOR_REQUESTS))
    except NoNodeError:
        return []


def read_build_request(zk: ZKClient, ident: str) -> BuildRequest | None:
    try:
        raw, _ = zk.client.get(paths.executor_request(ident))
    except NoNodeError:
        return None
    return BuildRequest.from_bytes(raw)


def claim_build(zk: ZKClient, ident: str, identifier: str = "") -> tuple[Lock, BuildRequest] | None:
    """Lock a request for this executor and read it; None when another executor holds it, or it is gone.

    The scheduler creates the lock's parent with the request; the taker releases the lock and removes the
    parent (`release_claim`) after `complete_build`.
    """
    lock = zk.client.Lock(paths.lock("build", ident), identifier)
    try:
        if not lock.acquire(blocking=False):
            return None
    except (LockTimeout, NoNodeError):
        return None
    request = read_build_request(zk, ident)
    if request is None:  # completed or cancelled before we got the lock
        release_claim(zk, ident, lock)
        return None
    return lock, request


def release_claim(zk: ZKClient, ident: str, lock: Lock) -> None:
    try:
        lock.release()
        zk.client.delete(paths.lock("build", ident))
    except (NoNodeError, NotEmptyError):
        pass


def request_exists(zk: ZKClient, ident: str) -> bool:
    """False once the request was cancelled (or completed): a running build checks this to abort."""
    return zk.client.exists(paths.executor_request(ident)) is not None


def complete_build(zk: ZKClient, result: BuildResult) -> bool:
    """Publish the result and remove the request, in one transaction; False when the build was cancelled."""
    tx = zk.client.transaction()
    tx.delete(paths.executor_request(result.id))
    tx.create(paths.executor_result(result.id), result.to_bytes())
    outcome = tx.commit()
    for r in outcome:
        if isinstance(r, NoNodeError):
            return False
        if isinstance(r, NodeExistsError):
            return False
        if isinstance(r, Exception) and not _rolled_back(r):
            raise r
    return True


def _rolled_back(exc: Exception) -> bool:
    from kazoo.exceptions import RolledBackError, RuntimeInconsistency

    return isinstance(exc, (RolledBackError, RuntimeInconsistency))


def cancel_build(zk: ZKClient, ident: str) -> bool:
    """Withdraw a request, claimed or not; False when it had already completed (or was cancelled)."""
    try:
        zk.client.delete(paths.executor_request(ident))
    except NoNodeError:
        return False
    return True


def finished_builds(zk: ZKClient) -> list[str]:
    try:
        return sorted(zk.client.get_children(paths.EXECUTOR_RESULTS))
    except NoNodeError:
        return []


def read_build_result(zk: ZKClient, ident: str, delete: bool = True) -> BuildResult | None:
    try:
        raw, _ = zk.client.get(paths.executor_result(ident))
    except NoNodeError:
        return None
    if delete:
        try:
            zk.client.delete(paths.executor_result(ident))
        except NoNodeError:
            pass
    return BuildResult.from_bytes(raw)


def ensure_paths(zk: ZKClient) -> None:
    """The parents every party watches; idempotent."""
    zk.client.ensure_path(paths.EXECUTOR_REQUESTS)
    zk.client.ensure_path(paths.EXECUTOR_RESULTS)
