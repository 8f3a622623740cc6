"""What a pipeline holds: changes, builds, items, change queues; plain records stored in ZooKeeper."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.zk.builds import ABORTED, INFRASTRUCTURE, SKIPPED, SUCCESS
from gatekeeper.zk.merges import ChangeSpec, MergeState
from gatekeeper.zk.record import Record

MERGE_ATTEMPTS = 3  # merger errors in a row before an item's merge is given up (reported as the merger's failure)


@dataclass
class Change(Record):
    """One patch set of a Gerrit change, as the scheduler last saw it (refreshed on every event about it).

    Number 0 stands for a ref instead (a post pipeline's item): `ref` is the branch ref that was updated and
    `commit` its new revision; see `ref_item`."""

    project: str = ""
    branch: str = "master"
    number: int = 0
    patchset: int = 0
    ref: str = ""
    commit: str = ""
    url: str = ""
    subject: str = ""
    change_id: str = ""
    status: str = "NEW"  # NEW, MERGED, ABANDONED
    current_patchset: int = 0
    wip: bool = False
    approvals: list[dict[str, Any]] = field(default_factory=list)  # [{label, value, by}] on the current patch set
    needs: list[str] = field(default_factory=list)  # "N,P" of open changes it needs: git parent, Depends-On
    needs_error: str = ""  # a Depends-On the source could not resolve
    owner: str = ""  # the change owner's username (who may reach a node held for its failed build)
    files: list[str] = field(default_factory=list)  # the patch set's files as Gerrit lists them ([]: not known)
    oldrev: str = ""  # a ref item: the ref's revision before (all zeros: the ref was created)
    containing: list[str] | None = None  # a tag item: the branches that contain its commit (None: not known yet)
    # What Gerrit's submit records say it lacks to be submitted (Zuul's missing_labels): label -> NEED (nobody gave
    # it yet) or REJECT (a blocking vote); {} when it may be submitted, or when Gerrit gave no records
    missing_labels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        if self.is_ref:
            return ref_key(self.project, self.ref, self.commit)
        return f"{self.number},{self.patchset}"

    @property
    def is_ref(self) -> bool:
        """A ref's new revision (a branch updated), not a change: nothing to vote on, nothing to merge."""
        return self.number == 0 and bool(self.ref)

    @property
    def is_tag(self) -> bool:
        return self.is_ref and self.ref.startswith("refs/tags/")

    @property
    def containing_branches(self) -> tuple[str, ...] | None:
        """What job branch matchers look at besides `branch`: a tag item's branches that contain its commit (None
        while the merger has not said), nothing for any other item."""
        if not self.is_tag:
            return ()
        return None if self.containing is None else tuple(self.containing)

    @property
    def is_current(self) -> bool:
        return self.patchset == self.current_patchset

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"

    def has_approval(self, label: str, value: int) -> bool:
        return any(a["label"] == label and int(a["value"]) == value for a in self.approvals)

    def spec(self, url: str, merge_mode: str = "merge-resolve") -> ChangeSpec:
        return ChangeSpec(project=self.project, branch=self.branch, number=self.number, patchset=self.patchset,
                          ref=self.ref, commit=self.commit, url=url, merge_mode=merge_mode, owner=self.owner,
                          oldrev=self.oldrev)

    def refreshed(self, latest: Change) -> Change:
        """This patch set seen through `latest` (a newer snapshot of the same change, maybe a newer patch set)."""
        if latest.patchset == self.patchset:
            return latest
        return _with(self, status=latest.status, current_patchset=latest.current_patchset, wip=latest.wip,
                     approvals=[])


def ref_key(project: str, ref: str, commit: str) -> str:
    """The key of a ref item: unique per project, ref and revision, never "N,P"
    (`org/a:refs/heads/master@1a2b3c4d5e6f`; two projects' branches may well point at one commit)."""
    return f"{project}:{ref}@{commit[:12]}"


def is_ref_key(key: str) -> bool:
    return ":refs/" in key and "@" in key


def ref_item(project: str, ref: str, newrev: str, oldrev: str = "", url: str = "") -> Change:
    """What a pipeline holds for a ref updated to `newrev`: a Change of number 0 (its project at `newrev`)."""
    branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref
    subject = f"{ref} deleted" if not newrev.strip("0") else f"{ref} updated to {newrev[:12]}"
    return Change(project=project, branch=branch, ref=ref, commit=newrev, oldrev=oldrev, url=url, status="MERGED",
                  subject=subject)


def _with(change: Change, **updates: Any) -> Change:
    data = change.to_dict()
    data.update(updates)
    return Change.from_dict(data)


@dataclass
class Build(Record):
    """One run of one job for one item: requested, then finished with a result."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    job: str = ""
    attempt: int = 1
    voting: bool = True
    result: str = ""  # "" while requested or running
    message: str = ""
    log_url: str = ""
    node: dict[str, Any] = field(default_factory=dict)
    start_time: float = 0.0
    end_time: float = 0.0
    failure_class: str = ""  # change, infrastructure, unknown (gatekeeper.zk.builds.FAILURE_CLASSES)
    summary: str = ""  # the failing step and its first error lines
    signatures: list[dict[str, Any]] = field(default_factory=list)  # known bugs it matched: {id, title, url}

    @property
    def finished(self) -> bool:
        return bool(self.result)

    @property
    def failed(self) -> bool:
        """A voting job that ended otherwise than well; a job skipped for its dependencies did not fail (the job it
        depends on did, if it counts)."""
        return self.finished and self.voting and self.result not in (SUCCESS, ABORTED, SKIPPED)

    @property
    def infrastructure(self) -> bool:
        """Failed because of the infrastructure (node, provider, retries exhausted), not the change."""
        return self.failed and self.failure_class == INFRASTRUCTURE


@dataclass
class Item(Record):
    """A change in a queue, with its speculative state: the item it is built on, its merge and its builds.

    `ahead` is [id, generation] of the item whose state this one was merged onto (None: the branch tips).  The
    queue loop resets an item whose `ahead` is no longer its nearest non-failing item; a reset bumps `gen`, so
    that items built on this one see their base change too.
    """

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    change: Change = field(default_factory=Change)
    queue: str = ""
    live: bool = True
    jobs: list[str] = field(default_factory=list)  # frozen at enqueue
    enqueued: float = field(default_factory=time.time)
    gen: int = 0
    ahead: list | None = None
    merge_id: str = ""
    merge_state: MergeState = MergeState.NONE
    merge_message: str = ""
    merge_attempts: int = 0
    repo_state: dict[str, Any] | None = None
    changes: str = ""  # the speculative state's changes, "1,1 2,1", own last
    builds: dict[str, Build] = field(default_factory=dict)  # job -> latest build
    reported: list[str] = field(default_factory=list)  # actions reported (their ledger entries go with the item)
    rev: int = 0  # bumped on every change, so a reader reloads only items that changed

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies the repo state, which grows with the item's depth in the queue.
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["change"] = self.change.to_dict()
        data["builds"] = {job: b.to_dict() for job, b in self.builds.items()}
        data["_v"] = self.VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        item = super().from_dict(data)
        if isinstance(item.change, dict):
            item.change = Change.from_dict(item.change)
        item.builds = {job: Build.from_dict(b) if isinstance(b, dict) else b for job, b in item.builds.items()}
        item.merge_state = MergeState(item.merge_state)
        return item

    @property
    def key(self) -> str:
        return self.change.key

    @property
    def merged(self) -> bool:
        return self.merge_state == MergeState.OK

    @property
    def merger_failed(self) -> bool:
        """The merge was given up because the merger itself kept failing (an error answered MERGE_ATTEMPTS times
        in a row: a fetch from Gerrit, its disk), not for a conflict."""
        return self.merge_state == MergeState.CONFLICT and self.merge_attempts >= MERGE_ATTEMPTS

    @property
    def failing(self) -> bool:
        """Will not merge as tested: a merge conflict, a failed voting job, or every job skipped."""
        return self.merge_state == MergeState.CONFLICT or any(b.failed for b in self.builds.values()) \
            or self.all_skipped

    @property
    def all_skipped(self) -> bool:
        """Every job was skipped (each depends on a job that does not run for the change): nothing was tested, which
        fails the item, as in Zuul."""
        return bool(self.jobs) and all(job in self.builds and self.builds[job].result == SKIPPED for job in self.jobs)

    @property
    def infrastructure_failure(self) -> bool:
        """Failing only because of the infrastructure: it will not merge, and it is not the change's fault."""
        failed = [b for b in self.builds.values() if b.failed]
        return self.merge_state != MergeState.CONFLICT and bool(failed) and all(b.infrastructure for b in failed)

    @property
    def complete(self) -> bool:
        """Nothing more will happen to it: ready to report (when it is at the head)."""
        if self.merge_state == MergeState.CONFLICT:
            return True
        if not self.merged:
            return False
        if not self.live:
            return True
        return all(job in self.builds and self.builds[job].finished for job in self.jobs)

    def label(self, pipeline: str) -> str:
        return f"[{pipeline} {self.key}]"


@dataclass
class ChangeQueue(Record):
    """Items tested together, head first; `window` items at most are active (merged and built)."""

    name: str = ""
    items: list[str] = field(default_factory=list)
    window: int = 0  # 0: unlimited (independent pipelines)
    dynamic: bool = False  # an independent pipeline's queue of one live change: dropped when empty
    layout_queue: str = ""  # the layout's queue this one stands for (per-branch queues are named "name (branch)")


@dataclass
class PipelineState:
    """Everything one pipeline holds; saved to ZooKeeper after every pass (only what changed)."""

    name: str
    queues: dict[str, ChangeQueue] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    cursors: dict[str, int] = field(default_factory=dict)  # event queue name -> last sequence number applied
    waiting: dict[str, list[int]] = field(default_factory=dict)  # "N,P" -> refused changes that need it to enter
    # Zuul's disable-after-consecutive-failures: items reported as failed in a row, and, once disabled, the layout
    # (its digest) under which the pipeline was disabled (a new layout enables it again)
    failures: int = 0
    disabled: str = ""
    version: int = -1  # the summary znode's version when loaded or saved
    created: int = 0  # the summary znode's creation (czxid) when loaded: a pipeline removed and added again restarts
    # its version, so a version alone could match a state cached before the removal
    dirty: set[str] = field(default_factory=set)  # item ids changed since the last save
    removed: set[str] = field(default_factory=set)  # item ids removed since the last save
    changed: bool = False  # the summary (queues, windows, cursors) changed
    stored: set[str] = field(default_factory=set)  # item ids that have a znode
    nodes: dict[str, str] = field(default_factory=dict)  # item id -> its znode's name, where not the item id
    left: list[tuple[str, list[str]]] = field(default_factory=list)  # (item id, actions reported) since the save
    started: set[str] = field(default_factory=set)  # item ids whose start report is settled (this process knows)
    # The queue loop ran and nothing it looks at changed since (in this process): the next pass may skip it.
    settled: bool = False
    progress: int = -1  # report outcomes received when the loop last ran (Backend.progress)
    layout: Any = field(default=None, repr=False, compare=False)  # the layout the loop last ran with
    walks: int = 0  # queue loop passes in this process (for tests and metrics)
    _index: dict[int, list[str]] | None = field(default=None, repr=False, compare=False)

    def touch(self, item: Item, settle: bool = True) -> None:
        """Mark the item for saving; and, unless `settle` is False, the queue loop for a walk."""
        if item.id in self.items:
            self.dirty.add(item.id)
            if settle:
                self.settled = False

    def disabled_under(self, limit: int | None, digest: str) -> bool:
        """Whether Zuul's disable-after-consecutive-failures (`limit`) holds under the layout of `digest`: tripped
        under that layout (a trip under another layout counts for nothing: a new one enables the pipeline again), or,
        not tripped yet, `limit` failed items in a row."""
        if not limit:
            return False
        return self.disabled == digest if self.disabled else self.failures >= limit

    def queue_items(self, queue: ChangeQueue) -> list[Item]:
        return [self.items[i] for i in queue.items if i in self.items]

    def all_items(self) -> list[Item]:
        return [self.items[i] for q in self.queues.values() for i in q.items if i in self.items]

    def find(self, key: str, live_only: bool = True) -> Item | None:
        try:
            number = 0 if is_ref_key(key) else int(key.split(",")[0])
        except ValueError:
            return None
        for item in self.items_for_change(number):
            if item.key == key and (item.live or not live_only):
                return item
        return None

    def items_for_change(self, number: int) -> list[Item]:
        return [self.items[i] for i in self.index().get(number, ()) if i in self.items]

    def index(self) -> dict[int, list[str]]:
        """Change number -> ids of its items; rebuilt after items come or go (`reindex`)."""
        if self._index is None:
            self._index = {}
            for item in self.items.values():
                self._index.setdefault(item.change.number, []).append(item.id)
        return self._index

    def reindex(self) -> None:
        self._index = None

    def summary(self) -> dict[str, Any]:
        return {
            "_v": 1,
            "queues": [{"name": q.name, "items": list(q.items), "window": q.window, "dynamic": q.dynamic,
                        **({"layout_queue": q.layout_queue} if q.layout_queue else {})}
                       for q in self.queues.values()],
            "revs": {i.id: i.rev for i in self.items.values()},
            "cursors": dict(self.cursors),
            "waiting": {key: list(numbers) for key, numbers in self.waiting.items()},
            **({"failures": self.failures} if self.failures else {}),
            **({"disabled": self.disabled} if self.disabled else {}),
            **({"nodes": {i: n for i, n in self.nodes.items() if i in self.items}} if self.nodes else {}),
        }
