"""What a layout is made of: pipelines, queues, jobs (with branch variants), projects, the node pool and known-bug
signatures, as plain frozen dataclasses. `gatekeeper.config.layout` reads them from YAML and checks them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

PRECEDENCE_ORDER = {"high": 0, "normal": 1, "low": 2}


@dataclass(frozen=True)
class Trigger:
    """One event filter: it matches an event of one of `events` that passes every other filter given."""

    connection: str
    events: tuple[str, ...]
    approvals: tuple[dict[str, int], ...] = ()
    comments: tuple[re.Pattern, ...] = ()
    branches: tuple[re.Pattern, ...] = ()
    usernames: tuple[re.Pattern, ...] = ()  # who caused the event: its account's username, and email
    emails: tuple[re.Pattern, ...] = ()
    refs: tuple[re.Pattern, ...] = ()  # ref-updated: the full ref name (refs/heads/...) matches one of these
    ignore_deletes: bool = True  # ref-updated: a deleted ref (new revision all zeros) does not match (Zuul's)
    require: Requirements | None = None  # Zuul's trigger require/reject: what the event's change must satisfy

    def errors(self, manager: str) -> list[tuple[str, str]]:
        """(key, message) for what a pipeline managed by `manager` may not ask of this trigger (post pipelines: a
        ref-updated enqueues a branch's new revision, not a change)."""
        found = []
        if self.refs and "ref-updated" not in self.events:
            found.append(("ref", "a trigger's ref applies only to ref-updated events"))
        if not self.ignore_deletes and "ref-updated" not in self.events:
            found.append(("ignore-deletes", "a trigger's ignore-deletes applies only to ref-updated events"))
        if "ref-updated" in self.events and manager == "dependent":
            found.append(("event", "a dependent pipeline cannot be triggered by ref-updated (a ref has no change to "
                                   "gate): use an independent pipeline"))
        return found


@dataclass(frozen=True)
class Requirements:
    """What a change must satisfy to enter, and stay in, a pipeline (re-checked on every pass)."""

    open: bool | None = None
    current_patchset: bool | None = None
    approvals: tuple[dict[str, Any], ...] = ()  # each: {label: vote or [votes], username?: regex}
    wip: bool | None = None
    reject_approvals: tuple[dict[str, Any], ...] = ()  # any one of these present keeps the change out
    status: str | None = None  # the change's Gerrit status must be this one
    # Zuul's reject, the mirror of the above: a change that is (or is not) open, the current patch set, work in
    # progress, or of this status is kept out
    reject_open: bool | None = None
    reject_current_patchset: bool | None = None
    reject_wip: bool | None = None
    reject_status: str | None = None


@dataclass(frozen=True)
class Report:
    """What to tell Gerrit for one action (start, success, failure, merge-conflict, dequeue)."""

    labels: dict[str, int] = field(default_factory=dict)
    message: str = ""
    submit: bool = False
    tag: str = ""
    reasons: dict[str, bool] = field(default_factory=dict)  # dequeue: reason kind -> report it (see DEQUEUE_REASONS)


@dataclass(frozen=True)
class WindowConfig:
    """A dependent queue's window: how many items are tested at once, grown on success, shrunk on failure."""

    initial: int = 20  # 0: no limit at all (Zuul's window: 0), whatever the queue's results
    floor: int = 3
    ceiling: int = 0  # 0: unlimited
    increase: int = 1  # Zuul's window-increase-factor: added (linear) or multiplied by (exponential)
    decrease_factor: float = 2  # subtracted (linear) or divided by (exponential)
    increase_type: str = "linear"
    decrease_type: str = "exponential"

    def grown(self, size: int) -> int:
        """The window after the head of its queue succeeded (never past the ceiling: a window above it, after a
        layout lowered the ceiling, comes down to it, as Zuul's min(ceiling, grown)); `size` 0 (no window until now)
        counts as the initial size."""
        if not self.initial:
            return 0
        size = size or self.initial
        if self.ceiling and size >= self.ceiling:
            return self.ceiling
        bigger = size * self.increase if self.increase_type == "exponential" else size + self.increase
        return min(bigger, self.ceiling) if self.ceiling else bigger

    def shrunk(self, size: int) -> int:
        """The window after the head of its queue failed (never below the floor); `size` 0 counts as the initial
        size."""
        if not self.initial:
            return 0
        size = size or self.initial
        if self.decrease_type == "linear":
            return max(self.floor, int(size - self.decrease_factor))
        return max(self.floor, int(size / self.decrease_factor))


@dataclass(frozen=True)
class Pipeline:
    name: str
    manager: str
    description: str = ""
    precedence: str = "normal"
    triggers: tuple[Trigger, ...] = ()
    require: Requirements = Requirements()
    reports: dict[str, Report] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)  # action -> Zuul's `<action>-message`: a report's start
    footer: str = ""  # Zuul's footer-message: after the results of a success, failure or merge-conflict report
    disable_after: int | None = None  # Zuul's disable-after-consecutive-failures
    window: WindowConfig = WindowConfig()
    supercedes: tuple[str, ...] = ()  # pipelines a change leaves when it enters this one (Zuul's spelling)
    dequeue_on_new_patchset: bool = True  # a new patch set removes the item of the old one
    post_review: bool = False  # Zuul's post-review: only such a pipeline runs post-review jobs (on reviewed code)
    ignore_dependencies: bool = False  # an independent pipeline tests each change alone, without what it needs
    timers: tuple[str, ...] = ()  # cron schedules: each fire enqueues every branch tip with jobs here

    @property
    def dependent(self) -> bool:
        return self.manager == "dependent"

    @property
    def priority(self) -> int:
        """Node-request priority of this pipeline: lower is served first."""
        return PRECEDENCE_ORDER[self.precedence]


@dataclass(frozen=True)
class Queue:
    name: str
    window: WindowConfig | None = None
    per_branch: bool = False  # a queue of its own for each branch (Zuul's per-branch), so branches never reset
    # each other


def branch_matches(patterns: tuple[str, ...], branch: str, containing: tuple[str, ...] | None = ()) -> bool:
    """Zuul's branch matchers: no pattern matches every branch; a pattern is a regular expression anchored at the
    start of the branch name (`stable/` matches every stable branch, `master$` only master). A tag item's `branch`
    is its full ref (`refs/tags/1.0`): a pattern matches it, or one of the branches `containing` the tagged commit
    (None: those are not known yet, and any pattern may match)."""
    if not patterns or containing is None:
        return True
    return any(re.match(p, name) for p in patterns for name in (branch, *containing))


# Gerrit lists these with a patch set's files, but they are no files of the change (Zuul ignores them too)
MAGIC_FILES = re.compile(r"^/(COMMIT_MSG|MERGE_LIST)$")


def files_match(files: tuple[re.Pattern, ...], irrelevant: tuple[re.Pattern, ...], changed: list[str] | None) -> bool:
    """Zuul's job file matchers: with `files`, a change must touch one file matching one of them; with
    `irrelevant`, it must touch one file matching none of them. Patterns match at the start of a path (`re.match`).
    Unknown changed files (None or empty) always match: a job is never skipped for want of information."""
    if not changed:
        return True
    real = [path for path in changed if not MAGIC_FILES.match(path)]
    if files and not any(p.match(path) for path in real for p in files):
        return False
    return not irrelevant or any(not any(p.match(path) for p in irrelevant) for path in real)


@dataclass(frozen=True)
class NodesetNode:
    """One named node of a nodeset and the label it is launched from."""

    name: str
    label: str


@dataclass(frozen=True)
class NodesetGroup:
    """A named group of a nodeset's nodes (Zuul's nodeset groups), written to the build's inventory."""

    name: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Nodeset:
    """The nodes a job runs on, all from one provider in one node request; the first is the primary, where the
    job's steps run. `name` is "" for a nodeset written inline in a job."""

    name: str
    nodes: tuple[NodesetNode, ...] = ()
    groups: tuple[NodesetGroup, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The nodeset as a build request carries it."""
        return {"name": self.name, "nodes": [{"name": n.name, "label": n.label} for n in self.nodes],
                "groups": [{"name": g.name, "nodes": list(g.nodes)} for g in self.groups]}


@dataclass(frozen=True)
class JobVariant:
    """What a job changes on the branches it names: its node label, timeout, variables, devstack settings and file
    matchers."""

    branches: tuple[str, ...]
    label: str | None = None
    nodeset: Nodeset | None = None
    timeout: int | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    devstack_localrc: dict[str, Any] = field(default_factory=dict)
    devstack_local_conf: str | None = None
    files: tuple[re.Pattern, ...] | None = None  # None: the job's own
    irrelevant_files: tuple[re.Pattern, ...] | None = None


@dataclass(frozen=True)
class JobDependency:
    """A job that must succeed before the job naming it starts; a soft one is ignored when it does not run for the
    change (Zuul's `dependencies: [{name, soft}]`)."""

    name: str
    soft: bool = False


@dataclass(frozen=True)
class Job:
    name: str
    label: str | None = None
    nodeset: Nodeset | None = None  # instead of `label`: several nodes (a `label` is a one-node nodeset)
    description: str = ""
    run: tuple[str, ...] = ()
    timeout: int = 3600
    attempts: int = 3
    voting: bool = True
    collect: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    required_projects: tuple[str, ...] = ()
    devstack_localrc: dict[str, Any] = field(default_factory=dict)
    devstack_local_conf: str = ""
    hold_hours: float | None = None
    branches: tuple[str, ...] = ()  # the job runs only for changes to these branches (all when empty)
    variants: tuple[JobVariant, ...] = ()
    files: tuple[re.Pattern, ...] = ()  # the job runs only if the change touches a file matching one of these
    irrelevant_files: tuple[re.Pattern, ...] = ()  # ... and not if every file it touches matches one of these
    dependencies: tuple[JobDependency, ...] = ()  # jobs of the same item that must succeed before this one starts
    variant: str = ""  # set on a job resolved for a branch: the branch patterns of the variants applied
    parent: str = ""  # Zuul's job inheritance (gatekeeper.config.inherit): the job it takes what it does not set from
    abstract: bool = False  # only a parent: no project pipeline may list it
    final: bool = False  # no job may inherit from it
    post_review: bool = False  # runs only in post-review pipelines (inherited: once set, set for every child)

    def for_branch(self, branch: str, containing: tuple[str, ...] | None = ()) -> Job | None:
        """This job as it runs for a change to `branch` (every matching variant applied in order, later ones
        winning), or None when the job does not run on that branch (`containing`: see branch_matches)."""
        if not branch_matches(self.branches, branch, containing):
            return None
        job, applied = self, []
        for variant in self.variants:
            if not branch_matches(variant.branches, branch, containing):
                continue
            if variant.nodeset is not None:  # a variant's nodes replace the job's label or nodeset, and vice versa
                job = replace(job, nodeset=variant.nodeset, label=None)
            elif variant.label:
                job = replace(job, label=variant.label, nodeset=None)
            job = replace(job, timeout=variant.timeout or job.timeout,
                          vars={**job.vars, **variant.vars},
                          devstack_localrc={**job.devstack_localrc, **variant.devstack_localrc},
                          devstack_local_conf=job.devstack_local_conf if variant.devstack_local_conf is None
                          else variant.devstack_local_conf,
                          files=job.files if variant.files is None else variant.files,
                          irrelevant_files=job.irrelevant_files if variant.irrelevant_files is None
                          else variant.irrelevant_files)
            applied.append(" ".join(variant.branches))
        return replace(job, variant="; ".join(applied)) if applied else job

    def runs_for(self, branch: str, files: list[str] | None = None, containing: tuple[str, ...] | None = ()) -> bool:
        """Whether this job runs for a change to `branch` touching `files` (unknown files: the branch decides)."""
        job = self.for_branch(branch, containing)
        return job is not None and files_match(job.files, job.irrelevant_files, files)


@dataclass(frozen=True)
class JobOverride:
    """What a project's pipeline changes of a job it lists (Zuul's project-pipeline job variant: `- unit: {voting:
    false}`); None: the job's own. Its vars are merged into the job's."""

    voting: bool | None = None
    timeout: int | None = None
    attempts: int | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    files: tuple[re.Pattern, ...] | None = None
    irrelevant_files: tuple[re.Pattern, ...] | None = None
    dependencies: tuple[JobDependency, ...] | None = None

    def apply(self, job: Job) -> Job:
        changes = {name: value for name in ("voting", "timeout", "attempts", "files", "irrelevant_files",
                                            "dependencies") if (value := getattr(self, name)) is not None}
        return replace(job, vars={**job.vars, **self.vars}, **changes)


@dataclass(frozen=True)
class Project:
    name: str
    queue: str | None = None
    merge_mode: str = "merge-resolve"
    pipelines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    variants: dict[tuple[str, str], JobOverride] = field(default_factory=dict)  # (pipeline, job) -> its override

    def jobs_for(self, pipeline: str) -> tuple[str, ...]:
        return self.pipelines.get(pipeline, ())

    def frozen(self, pipeline: str, name: str, jobs: dict[str, Job], branch: str,
               containing: tuple[str, ...] | None = ()) -> Job | None:
        """The job `name` as this project's `pipeline` runs it for a change to `branch`: its branch variants, then
        the project's override (as Zuul freezes a job); None when it does not run on that branch, or is not
        defined."""
        job = jobs[name].for_branch(branch, containing) if name in jobs else None
        override = self.variants.get((pipeline, name))
        return override.apply(job) if job is not None and override is not None else job

    def jobs_on_branch(self, pipeline: str, branch: str, jobs: dict[str, Job],
                       files: list[str] | None = None, containing: tuple[str, ...] | None = ()) -> tuple[str, ...]:
        """The pipeline's jobs that run for a change to `branch` touching `files` (None: not known, the branch
        decides; `containing`: a tag item's, see branch_matches); a job the layout does not define runs
        everywhere."""
        return tuple(name for name in self.jobs_for(pipeline)
                     if name not in jobs or ((job := self.frozen(pipeline, name, jobs, branch, containing)) is not None
                                             and files_match(job.files, job.irrelevant_files, files)))


@dataclass(frozen=True)
class NodeLabel:
    name: str
    min_ready: int = 0  # -1: disabled (nothing of it is launched)
    max_ready_age: float = 0  # seconds an unused ready node is kept (0: for ever)


@dataclass(frozen=True)
class PoolLabel:
    name: str
    image: str
    flavor: str = ""  # its exact name or id; with min_ram, a part of the names of the flavors to choose among
    key_name: str = ""
    username: str = "root"
    userdata: str = ""  # given to the cloud with each create (cloud-init's user data)
    console_log: bool = False  # log its server's console when a boot fails or times out
    python_path: str = "auto"  # on each node, for its consumer (Nodepool's python-path and shell-type)
    shell_type: str = ""
    min_ram: int = 0  # MB: boot the smallest flavor with at least this RAM (Nodepool's min-ram; 0: by name)


@dataclass(frozen=True)
class Pool:
    name: str
    labels: tuple[PoolLabel, ...]
    max_servers: int | None = None
    max_cores: int | None = None  # of its nodes' flavors, in all (None: up to the cloud's quota)
    max_ram: int | None = None  # MB, likewise
    # stored with each node launched in it, for its consumer (Nodepool's node-attributes)
    node_attributes: dict = field(default_factory=dict, compare=False)
    priority: int | None = None  # lower is filled first among its provider's pools (None: the provider's)
    networks: tuple[str, ...] = ()  # its servers are attached to these (names or ids); none: the cloud's default


@dataclass(frozen=True)
class Image:
    name: str
    base_image: str = ""
    prepare: str = ""
    username: str = "root"
    rebuild_hours: float | None = None
    pause: bool = False  # no new builds; the ready ones keep serving
    build_timeout: float = 8 * 3600  # seconds the prepare script may run (Nodepool's build-timeout)


@dataclass(frozen=True)
class StaticHost:
    name: str
    address: str
    labels: tuple[str, ...]
    port: int = 22
    username: str = "root"
    host_key: str = ""
    max_parallel_jobs: int = 1  # nodes it serves at once (Nodepool's static max-parallel-jobs)
    timeout: float | None = None  # seconds its host-key scan may take (None: the provider's boot-timeout)


@dataclass(frozen=True)
class Provider:
    name: str
    driver: str
    cloud: str = ""
    region: str = ""
    max_servers: int | None = None  # None: as many as the cloud's quota allows (as Nodepool's max-servers)
    boot_timeout: float = 120  # from ACTIVE to answering SSH (Nodepool's boot-timeout)
    launch_timeout: float = 3600  # from the create call to ACTIVE (Nodepool's launch-timeout)
    launch_attempts: int = 3
    image_rebuild_hours: float = 24
    priority: int = 100  # lower is preferred when several providers could launch
    rate: float = 0.0  # seconds between its server creates and deletes (Nodepool's rate); 0: no spacing
    max_concurrency: int | None = None  # requests it launches for at once (Nodepool's max-concurrency); None: any
    pools: tuple[Pool, ...] = ()
    images: tuple[Image, ...] = ()
    hosts: tuple[StaticHost, ...] = ()

    @property
    def labels(self) -> set[str]:
        """Every label this provider can serve."""
        out = {pl.name for pool in self.pools for pl in pool.labels}
        out.update(label for host in self.hosts for label in host.labels)
        return out


@dataclass(frozen=True)
class NodePool:
    labels: dict[str, NodeLabel] = field(default_factory=dict)
    providers: dict[str, Provider] = field(default_factory=dict)
    auto_drain_outliers: bool = False  # drain a provider flagged as a job-failure outlier
    max_hold_age: float = 0  # seconds a node may stay held, whatever its hold says (Nodepool's); 0: no limit


@dataclass(frozen=True)
class Signature:
    """A known bug: a failed build whose console, or whose log files matching `files`, match `pattern`."""

    id: str
    title: str
    pattern: re.Pattern
    url: str = ""
    files: str = ""  # a glob over the build's log file names; "" reads the console


@dataclass
class Layout:
    """Everything the services act on. `files` holds the source texts, so the layout can travel through ZooKeeper
    and be re-read, with the same result, by any service."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    queues: dict[str, Queue] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    nodepool: NodePool = field(default_factory=NodePool)
    signatures: dict[str, Signature] = field(default_factory=dict)
    nodesets: dict[str, Nodeset] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @cached_property
    def digest(self) -> str:
        """A short digest of the layout's source texts: the same for the same layout, whoever loaded it."""
        text = "\0".join(f"{name}\0{body}" for name, body in sorted(self.files.items()))
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def summary(self) -> str:
        np = self.nodepool
        return (
            f"{len(self.pipelines)} pipelines, {len(self.queues)} queues, {len(self.jobs)} jobs, "
            f"{len(self.projects)} projects, {len(np.labels)} node labels, {len(np.providers)} providers"
        )

    def job_for(self, project: str, pipeline: str, name: str, branch: str,
                containing: tuple[str, ...] | None = ()) -> Job | None:
        """The job `name` as `project`'s `pipeline` runs it for a change to `branch` (Project.frozen); for a job
        the branch does not run, or a project the layout does not know, the job as defined (None: undefined)."""
        proj = self.projects.get(project)
        job = proj.frozen(pipeline, name, self.jobs, branch, containing) if proj is not None else None
        return job or (self.jobs[name].for_branch(branch, containing) or self.jobs[name] if name in self.jobs
                       else None)

    def queue_of(self, project: str) -> str | None:
        """The change queue a project's changes share in a dependent pipeline: the one it names, else (as in Zuul)
        an implicit queue of its own, named after it."""
        proj = self.projects.get(project)
        return (proj.queue or proj.name) if proj else None
