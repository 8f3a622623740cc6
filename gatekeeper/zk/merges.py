"""Merge requests and results: how the scheduler asks a merger for an item's speculative state.

The contract between scheduler and merger (neither imports the other):

- The scheduler writes a `MergeRequest` to `/merger/requests/<id>`: the changes of one queue item, to be merged
  onto `base` (the `RepoState` of the item ahead, or None for the branch tips).  Merging is incremental: item N's
  request carries item N-1's result as its base, so a queue of N items costs N merges.
- A merger locks the request (`/locks/merge/<id>`), does the merge, writes a `MergeResult` to
  `/merger/results/<id>` and deletes the request.  The scheduler watches the results path, reads and deletes.
- A `RepoState` is exact and reproducible on any host: `branches` names the commit per project and branch, and
  `steps` is the recipe that made them (base commit, change ref/commit, mode) with deterministic commit metadata,
  so an executor on another host replays the steps and checks it arrives at the same commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from kazoo.exceptions import NodeExistsError, NoNodeError

from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.record import Record


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


def submit_merge(zk: ZKClient, request: MergeRequest) -> str:
    zk.client.create(paths.merger_request(request.id), request.to_bytes(), makepath=True)
    return request.id


def pending_merges(zk: ZKClient) -> list[str]:
    try:
        return sorted(zk.client.get_children(paths.MERGER_REQUESTS))
    except NoNodeError:
        return []


def read_merge_request(zk: ZKClient, ident: str) -> MergeRequest | None:
    try:
        raw, _ = zk.client.get(paths.merger_request(ident))
    except NoNodeError:
        return None
    return MergeRequest.from_bytes(raw)


def complete_merge(zk: ZKClient, result: MergeResult) -> None:
    """Publish the result and remove the request, in one transaction."""
    tx = zk.client.transaction()
    tx.create(paths.merger_result(result.id), result.to_bytes())
    tx.delete(paths.merger_request(result.id))
    outcome = tx.commit()
    created, deleted = outcome
    if isinstance(created, NodeExistsError) or isinstance(deleted, NoNodeError):
        return  # another merger finished it first (its result may even have been read and deleted already)
    for r in outcome:
        if isinstance(r, Exception):
            raise r


def read_merge_result(zk: ZKClient, ident: str, delete: bool = True) -> MergeResult | None:
    try:
        raw, _ = zk.client.get(paths.merger_result(ident))
    except NoNodeError:
        return None
    if delete:
        try:
            zk.client.delete(paths.merger_result(ident))
        except NoNodeError:
            pass
    return MergeResult.from_bytes(raw)
