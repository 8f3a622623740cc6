"""Merge requests and results: how the scheduler asks a merger for an item's speculative state.

The contract between scheduler and merger (neither imports the other):

- The scheduler writes a `MergeRequest` to `/merger/requests/<id>`: the changes of one queue item, to be merged
  onto `base` (the `RepoState` of the item ahead, or None for the branch tips).  Merging is incremental: item N's
  request carries item N-1's result as its base, so a queue of N items costs N merges.
- A merger locks the request (`/locks/merge/<id>`), does the merge, writes a `MergeResult` to
  `/merger/results/<id>` and deletes the request, in one transaction.  The scheduler watches the results path,
  reads and deletes.  A merger that dies loses its lock with its session: another merger, told by a watch on the
  lock (gatekeeper.zk.jobs.ClaimWatch), does the merge again (a merge is reproducible, and only one result is
  ever published).  These are the generic job queue's operations (gatekeeper.zk.jobs) on the merger's paths.
- A `RepoState` is exact and reproducible on any host: `branches` names the commit per project and branch, and
  `steps` is the recipe that made them (base commit, change ref/commit, mode) with deterministic commit metadata,
  so an executor on another host replays the steps and checks it arrives at the same commits.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

from kazoo.recipe.lock import Lock

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.jobs import JobKind, JobQueue
from gatekeeper.zk.record import Record


class MergeState(enum.StrEnum):
    """Where a queue item's merge stands; the values are the wire format of the item's `merge_state`."""

    NONE = ""  # not requested (yet, or again after a merger error)
    PENDING = "pending"  # requested, no result yet
    OK = "ok"  # merged: the item has its speculative state
    CONFLICT = "conflict"  # a change cannot be merged onto the state ahead (or the merger kept failing)


@dataclass
class ChangeSpec(Record):
    """One change to merge: where to fetch it and how to merge it."""

    project: str = ""
    branch: str = "master"
    number: int = 0
    patchset: int = 0
    ref: str = ""  # refs/changes/NN/N/P
    commit: str = ""  # the patch set's sha, when known
    url: str = ""  # git fetch URL of the project
    merge_mode: str = "merge-resolve"
    owner: str = ""  # the change owner's username
    oldrev: str = ""  # a ref item (number 0): the ref's revision before (the job's GK_OLDREV)

    @property
    def key(self) -> str:
        return f"{self.number},{self.patchset}"


@dataclass
class MergeStep(Record):
    """One step of the recipe: `change` merged onto `base` gave `result` on project/branch."""

    project: str = ""
    branch: str = ""
    base: str = ""
    change_ref: str = ""
    change_commit: str = ""
    mode: str = "merge-resolve"
    result: str = ""


@dataclass
class RepoState(Record):
    """project -> branch -> commit, and the steps that produced it from branch tips in Gerrit."""

    branches: dict[str, dict[str, str]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)  # MergeStep.to_dict(), in order

    def commit(self, project: str, branch: str) -> str | None:
        return self.branches.get(project, {}).get(branch)


@dataclass
class MergeRequest(Record):
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    changes: list[dict[str, Any]] = field(default_factory=list)  # ChangeSpec.to_dict(), in merge order
    base: dict[str, Any] | None = None  # RepoState.to_dict() of the item ahead
    after: str = ""  # or: the id of the item ahead's merge request, still pending, whose result is the base
    projects: list[dict[str, str]] = field(default_factory=list)  # extra {project, branch, url} to include
    pipeline: str = ""
    item: str = ""  # the scheduler's item id, echoed back
    created: float = 0.0


@dataclass
class MergeResult(Record):
    id: str = ""
    item: str = ""
    pipeline: str = ""
    ok: bool = False
    conflict: bool = False  # True: a change could not be merged (not an infrastructure error)
    conflict_change: str = ""  # "5,1"
    conflict_project: str = ""
    message: str = ""  # for people: what failed and where
    repo_state: dict[str, Any] | None = None  # RepoState.to_dict() when ok
    merger: str = ""  # which merger did it
    elapsed: float = 0.0
    merges: int = 0  # merges (and cherry-picks) this request performed: one per change, never a replay of the base
    containing_branches: list[str] = field(default_factory=list)  # a tag item's: its project's branches that
    # contain the tagged commit (what job branch matchers look at for a tag)

    @property
    def state(self) -> MergeState:
        """The state the item's merge takes from this result: NONE after a merger error (it is requested again)."""
        if self.ok:
            return MergeState.OK
        return MergeState.CONFLICT if self.conflict else MergeState.NONE


MERGES: JobKind[MergeRequest, MergeResult] = JobKind(
    "merge", paths.MERGER_REQUESTS, paths.MERGER_RESULTS, MergeRequest, MergeResult)


def merge_queue(zk: ZKClient) -> JobQueue[MergeRequest, MergeResult]:
    """The merge requests and results, as the generic job queue (gatekeeper.zk.jobs) sees them."""
    return JobQueue(zk, MERGES)


def submit_merge(zk: ZKClient, request: MergeRequest) -> str:
    return merge_queue(zk).submit(request)


def pending_merges(zk: ZKClient) -> list[str]:
    return merge_queue(zk).pending()


def read_merge_request(zk: ZKClient, ident: str) -> MergeRequest | None:
    return merge_queue(zk).read(ident)


def complete_merge(zk: ZKClient, result: MergeResult, lock: Lock | None = None) -> bool:
    """Publish the result and remove the request, in one transaction (releasing the claim's `lock` with them,
    when given); False when another merger finished it first (its result may even have been read and deleted
    already), and nothing was published."""
    return merge_queue(zk).complete(result, lock)


def read_merge_result(zk: ZKClient, ident: str, delete: bool = True) -> MergeResult | None:
    return merge_queue(zk).result(ident, delete)
