"""voluptuous schemas for the layout (layouts/*.yaml) and the service config (gatekeeper.yaml).

Only shapes live here; what depends on several parts at once (a job a project names must exist) is checked in
gatekeeper.config.layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import voluptuous as v

from gatekeeper.config.schema_parts import INT, NAME, NUMBER, PIPELINE_NAME, Each, Regex, one_or_each, project_name
from gatekeeper.config.schema_static import HOST_KEY_CHECKING, STATIC_HOST, STATIC_NODE

GERRIT_EVENTS = (
    "patchset-created",
    "comment-added",
    "change-merged",
    "change-abandoned",
    "change-restored",
    "ref-updated",
    "reviewer-added",
    "vote-deleted",
    "wip-state-changed",
    "topic-changed",
    "change-deleted",
    "project-created",
)
# Zuul's pipeline managers: each change alone (independent), speculatively gated in shared queues (dependent), shared
# queues run one item at a time on the branch as it is (serial), one queue per project and branch where a newer
# item replaces the one waiting (supercedent)
# Zuul's pipeline texts: `<action>-message` introduces that action's reports (merge-failure: the older name)
MESSAGES = ("enqueue", "start", "success", "failure", "merge-conflict", "merge-failure", "no-jobs", "dequeue")

MANAGERS = ("independent", "dependent", "serial", "supercedent")
# the managers whose queues run one item at a time -> why a window makes no sense for them (a layout error's end)
IN_TURN = {
    "serial": " (a serial pipeline runs one item of each queue at a time, on the branch as it is)",
    "supercedent": " (a supercedent pipeline runs one item per project and branch at a time, and keeps only the "
                   "newest one waiting)",
}
PRECEDENCES = ("high", "normal", "low")
MERGE_MODES = ("merge-resolve", "merge", "cherry-pick")


def _int_label_map(value: Any) -> dict:
    """`{Code-Review: 2}`: label names to a vote or a list of votes (`{Verified: [-1, -2]}`), and optionally
    `username`, a regular expression the voter's username must match (as in Zuul's approval filters)."""
    if not isinstance(value, dict) or not value:
        raise v.Invalid("expected a mapping of label names to votes, like {Code-Review: 2}")
    labels = 0
    for key, vote in value.items():
        if not isinstance(key, str) or not key:
            raise v.Invalid(f"label name must be a string, got {key!r}")
        if key == "username":
            Regex(vote)
            continue
        labels += 1
        votes = vote if isinstance(vote, list) and vote else [vote]
        for one in votes:
            if not INT.accepts(one):
                raise v.Invalid(f"vote for {key} must be an integer or a list of integers, got {vote!r}")
    if not labels:
        raise v.Invalid("names no label: expected a label and its vote, like {Code-Review: 2}")
    return value


APPROVAL = v.Schema(_int_label_map)
APPROVALS = one_or_each(APPROVAL)

TIMER_TRIGGER = v.Schema({v.Required("time"): v.Any(str, msg="expected a cron schedule, as a string")})

GERRIT_TRIGGER = v.Schema(
    {
        v.Required("event"): v.Any(
            v.In(GERRIT_EVENTS, msg=f"unknown Gerrit event (expected one of {', '.join(GERRIT_EVENTS)})"),
            [v.In(GERRIT_EVENTS, msg=f"unknown Gerrit event (expected one of {', '.join(GERRIT_EVENTS)})")],
        ),
        "approval": APPROVALS,
        "comment": v.Any(Regex, [Regex]),
        "branch": v.Any(Regex, [Regex]),
        "username": v.Any(Regex, [Regex]),
        "email": v.Any(Regex, [Regex]),
        "ref": v.Any(Regex, [Regex]),
        "ignore-deletes": v.Any(bool, msg="expected true or false"),
        # Zuul's conditions on the event's change, which the event itself may satisfy
        "require": v.Schema({"open": bool, "current-patchset": bool, "approval": APPROVALS, "wip": bool}),
        "reject": v.Schema({"approval": APPROVALS}),
    }
)

STATUSES = ("NEW", "MERGED", "ABANDONED")  # a Gerrit change's status
REQUIRE_KEYS = ("open", "current-patchset", "approval", "wip", "status")
REQUIRE_FLAT = v.Schema({"open": bool, "current-patchset": bool, "approval": APPROVALS, "wip": bool,
                         "status": v.In(STATUSES, msg=f"expected a change status ({', '.join(STATUSES)})")})

# A change that matches any of these may not enter the pipeline, and leaves it (Zuul's `reject`, the mirror of
# `require`).
REJECT_KEYS = REQUIRE_KEYS
REJECT_FLAT = REQUIRE_FLAT


def by_connection(flat: v.Schema, keys: tuple[str, ...]) -> Callable[[Any], Any]:
    """`require`/`reject` as ours (`{approval: ...}`) or as Zuul's, under its source's connection name
    (`{gerrit: {approval: ...}}`)."""
    def check(value: Any) -> Any:
        if isinstance(value, dict) and value and not any(key in keys for key in value):
            return v.Schema({str: flat})(value)
        return flat(value)
    return check


REQUIRE = by_connection(REQUIRE_FLAT, REQUIRE_KEYS)
REJECT = by_connection(REJECT_FLAT, REJECT_KEYS)

# A Gerrit reporter: ours (`labels: {Verified: 1}`, `message`, `tag`) and Zuul's labels as keys (`Verified: 1`).
GERRIT_REPORT_KEYS = ("labels", "message", "submit", "tag")
GERRIT_REPORT_FLAT = v.Schema({"labels": v.Schema({str: INT}), "message": str, "submit": bool, "tag": str})
UNSUPPORTED_REPORT_KEYS = {
    "comment": "every report carries a message (its marker is how each report is sent exactly once)",
    "notify": "Gerrit's default notifications apply",
}


def _own_and_others(value: Any, what: str, own: v.Schema, keys: tuple[str, ...],
                    other: Callable[[Any, Any], list[v.Invalid]]) -> Any:
    """A mapping of some known keys (checked with `own`) and others of Zuul's spelling (each checked by `other`,
    which returns its errors): every error of both, at once. `what` describes the mapping expected."""
    if not isinstance(value, dict):
        raise v.Invalid(f"expected {what}")
    errors: list[v.Invalid] = []
    try:
        own({k: x for k, x in value.items() if k in keys})
    except v.MultipleInvalid as exc:
        errors.extend(exc.errors)
    for key, conf in value.items():
        if key not in keys:
            errors.extend(other(key, conf))
    if errors:
        raise v.MultipleInvalid(errors)
    return value


def _report_label(key: Any, vote: Any) -> list[v.Invalid]:
    """A key of a Gerrit reporter beside its own: a label and its vote (Zuul's spelling)."""
    if key in UNSUPPORTED_REPORT_KEYS:
        return [v.Invalid(f"{key} is not supported: {UNSUPPORTED_REPORT_KEYS[key]}", [key])]
    if not isinstance(key, str) or not INT.accepts(vote):
        return [v.Invalid(f"expected a vote (an integer) for label {key}, or one of {', '.join(GERRIT_REPORT_KEYS)}",
                          [key])]
    return []


def GERRIT_REPORT(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    return _own_and_others(value, "a mapping like {Verified: 1, submit: true}", GERRIT_REPORT_FLAT,
                           GERRIT_REPORT_KEYS, _report_label)


REPORTER = v.Schema({"gerrit": GERRIT_REPORT})

# Why an item leaves a pipeline early; a dependent pipeline's `dequeue` report says which ones are reported.
DEQUEUE_REASONS = ("abandoned", "new-patchset", "lost-approval", "dependency-failed", "operator", "other")

DEQUEUE_REPORTER = REPORTER.extend(
    {"reasons": v.Schema({v.In(DEQUEUE_REASONS, msg=f"unknown reason (expected one of {', '.join(DEQUEUE_REASONS)})"):
                          bool})}
)

# Zuul's window-increase-type and window-decrease-type: how the factor is applied (added or multiplied)
WINDOW_TYPES = ("linear", "exponential")

WINDOW = v.Schema(
    {
        "initial": v.All(INT, v.Range(min=0, msg="must not be negative (0: no limit)")),
        "floor": v.All(INT, v.Range(min=1, msg="must be at least 1")),
        "ceiling": v.Any(None, v.All(INT, v.Range(min=1, msg="must be at least 1"))),  # null: no limit
        "increase": v.All(INT, v.Range(min=0, msg="must not be negative")),
        "decrease-factor": v.All(NUMBER, v.Range(min=1, msg="must be at least 1")),
        "increase-type": v.In(WINDOW_TYPES, msg="unknown window type (expected linear or exponential)"),
        "decrease-type": v.In(WINDOW_TYPES, msg="unknown window type (expected linear or exponential)"),
    }
)


# Zuul's flat window keys of a pipeline, and the keys of our window mapping they stand for
FLAT_WINDOW = {"window-floor": "floor", "window-ceiling": "ceiling", "window-increase-type": "increase-type",
               "window-increase-factor": "increase", "window-decrease-type": "decrease-type",
               "window-decrease-factor": "decrease-factor"}


def WINDOW_OR_SIZE(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    """Our window mapping, or Zuul's `window: 20` (its initial size, with the flat window-* keys beside it)."""
    if INT.accepts(value):
        return v.Schema(v.Range(min=0, msg="must not be negative (0: no limit)"))(value)
    if not isinstance(value, dict):
        raise v.Invalid("expected a window mapping or a number of changes")
    return WINDOW(value)


PIPELINE = v.Schema(
    {
        v.Required("name"): PIPELINE_NAME,
        v.Required("manager"): v.In(MANAGERS,
                                    msg="unknown manager (expected independent, dependent, serial or supercedent)"),
        "description": str,
        "precedence": v.In(PRECEDENCES, msg="expected high, normal or low"),
        # `timer` (gatekeeper.config.timers) beside the connections' names
        "trigger": v.Schema({v.Optional("timer"): Each(TIMER_TRIGGER), str: Each(GERRIT_TRIGGER)}),
        "require": REQUIRE,
        "reject": REJECT,
        "enqueue": REPORTER,
        "start": REPORTER,
        "success": REPORTER,
        "failure": REPORTER,
        "merge-conflict": REPORTER,
        "merge-failure": REPORTER,  # Zuul's older name of merge-conflict
        "no-jobs": REPORTER,
        "disabled": REPORTER,
        "disable-after-consecutive-failures": v.All(INT, v.Range(min=1, msg="must be at least 1")),
        "dequeue": DEQUEUE_REPORTER,
        **{f"{action}-message": str for action in MESSAGES},
        "footer-message": str,
        "window": WINDOW_OR_SIZE,
        # Zuul's flat spelling of the window (with `window: N`), checked as the mapping's keys are; a layout uses
        # it or the mapping, not both
        **{flat: WINDOW.schema[key] for flat, key in FLAT_WINDOW.items()},
        "supercedes": v.Any(NAME, [NAME], msg="expected a pipeline name or a list of them"),
        "dequeue-on-new-patchset": bool,
        "post-review": bool,
        "ignore-dependencies": bool,
    }
)

QUEUE = v.Schema({v.Required("name"): NAME, "window": WINDOW, "per-branch": bool})

BRANCHES = v.Any(v.All(str, v.Length(min=1)), v.All([v.All(str, v.Length(min=1))], v.Length(min=1)),
                 msg="expected a branch pattern or a list of them")
FILE_PATTERNS = v.Any(v.All(str, v.Length(min=1)), v.All([v.All(str, v.Length(min=1))], v.Length(min=1)),
                      msg="expected a file pattern or a list of them")
# Zuul's job `dependencies`: job names, each optionally as {name, soft}
DEPENDENCY = v.Any(NAME, v.Schema({v.Required("name"): NAME, "soft": bool}),
                   msg="expected a job name or a mapping like {name: build-image, soft: true}")


def DEPENDENCIES(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    """One job name, or a list of names and {name, soft} mappings (each entry's error kept)."""
    if isinstance(value, list):
        return Each(DEPENDENCY)(value)
    if not isinstance(value, str):
        raise v.Invalid("expected a job name or a list of them")
    return v.Schema(NAME)(value)


def REQUIRED_PROJECT(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    """A project a job needs beside the change's: its name, or Zuul's {name: ...} (override-checkout refused)."""
    if isinstance(value, str) and value:
        return project_name(value)
    if isinstance(value, dict):
        if "override-checkout" in value:
            raise v.Invalid("override-checkout is not supported: a required project is checked out at the change's "
                            "branch (or its default branch when it has none)", ["override-checkout"])
        return v.Schema({v.Required("name"): project_name})(value)
    raise v.Invalid("expected a project name, or a mapping like {name: org/project}")


def USERDATA(value: Any) -> str:  # noqa: N802 - reads like a type in schemas
    """A server's user data: text Nova takes, at most 65535 bytes once base64-encoded (as it is sent)."""
    if not isinstance(value, str):
        raise v.Invalid("expected str")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise v.Invalid(f"is not text a server can be given: {exc.reason} at character {exc.start}") from None
    if 4 * -(-size // 3) > 65535:
        raise v.Invalid(f"is {size} bytes: Nova takes at most 65535 bytes of user data once base64-encoded "
                        "(about 49 KB of text)")
    return value


# Zuul's nodesets: named nodes, each from a label, and groups of them; a job names one or writes one inline
NODESET_NODE = v.Schema({v.Required("name"): NAME, v.Required("label"): NAME})
NODESET_GROUP = v.Schema({v.Required("name"): NAME, v.Required("nodes"): v.All([NAME], v.Length(min=1))})
INLINE_NODESET = v.Schema({v.Required("nodes"): v.All(Each(NODESET_NODE),
                                                     v.Length(min=1, msg="needs at least one node")),
                           "groups": Each(NODESET_GROUP)})
NODESET = INLINE_NODESET.extend({v.Required("name"): NAME})


def JOB_NODESET(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    """A job's `nodeset`: the name of a nodeset, or a nodeset written inline ({nodes, groups})."""
    if isinstance(value, dict):
        return INLINE_NODESET(value)
    if not isinstance(value, str):
        raise v.Invalid("expected a nodeset name or a mapping like {nodes: [{name: controller, label: ...}]}")
    return v.Schema(NAME)(value)


DEVSTACK = v.Schema({"localrc": v.Schema({str: v.Any(str, int, float, bool)}), "local-conf": str})

JOB_VARIANT = v.Schema(
    {
        v.Required("branches"): BRANCHES,
        "label": NAME,
        "nodeset": JOB_NODESET,
        "timeout": v.All(INT, v.Range(min=1, msg="must be a positive number of seconds")),
        "vars": v.Schema({str: v.Any(str, int, float, bool)}),
        "devstack": DEVSTACK,
        "files": FILE_PATTERNS,
        "irrelevant-files": FILE_PATTERNS,
    }
)

JOB = v.Schema(
    {
        v.Required("name"): NAME,
        "description": str,
        "label": NAME,
        "nodeset": JOB_NODESET,
        "run": v.All([str], v.Length(min=1, msg="needs at least one step")),
        "timeout": v.All(INT, v.Range(min=1, msg="must be a positive number of seconds")),
        "attempts": v.All(INT, v.Range(min=1, msg="must be at least 1")),
        "voting": bool,
        "collect": [str],
        "vars": v.Schema({str: v.Any(str, int, float, bool)}),
        "required-projects": v.Any(v.All(str, REQUIRED_PROJECT), Each(REQUIRED_PROJECT)),
        "devstack": DEVSTACK,
        "hold-hours": v.All(NUMBER, v.Range(min=0)),
        "branches": BRANCHES,
        "variants": [JOB_VARIANT],
        "files": FILE_PATTERNS,
        "irrelevant-files": FILE_PATTERNS,
        "dependencies": DEPENDENCIES,
        "parent": NAME,
        "abstract": bool,
        "final": bool,
        "post-review": bool,
    }
)

# What a project's pipeline may change of a job it lists (Zuul's project-pipeline job variant)
PROJECT_JOB_VARIANT = v.Schema({
    "voting": bool,
    "timeout": v.All(INT, v.Range(min=1, msg="must be a positive number of seconds")),
    "attempts": v.All(INT, v.Range(min=1, msg="must be at least 1")),
    "vars": v.Schema({str: v.Any(str, int, float, bool)}),
    "files": FILE_PATTERNS,
    "irrelevant-files": FILE_PATTERNS,
    "dependencies": DEPENDENCIES,
})


def PROJECT_JOB(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    """A job a project's pipeline runs: its name, or {name: what this project changes of it}."""
    if isinstance(value, str):
        return v.Schema(NAME)(value)
    if isinstance(value, dict) and len(value) == 1:
        (name, attrs), = value.items()
        v.Schema(NAME)(name)
        try:
            PROJECT_JOB_VARIANT(attrs or {})
        except v.MultipleInvalid as exc:
            for err in exc.errors:
                err.prepend([name])
            raise
        return value
    raise v.Invalid("expected a job name, or one job name mapped to what this project changes of it, like "
                    "{unit: {voting: false}}")


# Zuul's spelling of a project's pipeline: `check: {jobs: [unit, {integration: {voting: false}}]}`
PROJECT_PIPELINE = v.Schema({"jobs": Each(PROJECT_JOB), "queue": NAME})

PROJECT_KEYS = ("name", "description", "queue", "merge-mode", "pipelines")  # a project's keys that name no pipeline
PROJECT_OWN = v.Schema(
    {
        v.Required("name"): project_name,
        "description": str,
        "queue": NAME,
        "merge-mode": v.In(MERGE_MODES, msg=f"expected one of {', '.join(MERGE_MODES)}"),
        "pipelines": v.Schema({str: [str]}),
    }
)
UNSUPPORTED_PROJECT_KEYS = {  # Zuul's project keys we do not have, and why
    "templates": "project templates are not supported: list the template's jobs in each of the project's pipelines",
    "vars": "a project's vars are not supported: give them in its pipelines' jobs, like {unit: {vars: {...}}}",
    "default-branch": "a project's default branch is not used here: a job's branches match each change's own "
                      "branch",
}


def _project_pipeline(key: Any, conf: Any) -> list[v.Invalid]:
    """A key of a project beside its own: one of its pipelines in Zuul's spelling (a mapping, or empty)."""
    if key in UNSUPPORTED_PROJECT_KEYS:
        return [v.Invalid(UNSUPPORTED_PROJECT_KEYS[key], [key])]
    if isinstance(key, str) and isinstance(conf, list):  # likely our spelling where Zuul's is read
        return [v.Invalid(f"unknown key, or pipeline {key}'s jobs given as a list: write {key}: {{jobs: [...]}}, or "
                          "the list under pipelines", [key])]
    if not isinstance(key, str) or not (conf is None or isinstance(conf, dict)):
        return [v.Invalid("extra keys not allowed", [key])]  # no pipeline: said as an unknown key
    try:
        PROJECT_PIPELINE(conf)
    except v.MultipleInvalid as exc:
        for err in exc.errors:
            err.prepend([key])
        return list(exc.errors)
    return []


def PROJECT(value: Any) -> Any:  # noqa: N802 - reads like a type in schemas
    """A project: its own keys, and its pipelines in Zuul's spelling (a key whose value is a mapping, or empty)."""
    return _own_and_others(value, "a mapping", PROJECT_OWN, PROJECT_KEYS, _project_pipeline)

# min-ready -1: the label is disabled (as in Nodepool): no node of it is launched, requests for it are declined
NODE_LABEL = v.Schema({v.Required("name"): NAME,
                       "min-ready": v.All(INT, v.Range(min=-1, msg="must not be negative, except -1 (disabled)")),
                       "max-ready-age": v.All(NUMBER, v.Range(min=0, msg="must not be negative"))})

POOL_LABEL = v.Schema(
    {
        v.Required("name"): NAME,
        "image": NAME,  # one of image, cloud-image and diskimage (Nodepool's names) is required
        "cloud-image": NAME,
        "diskimage": NAME,
        "flavor-name": str,  # Nodepool's name for flavor
        "flavor": str,
        # Nodepool's: the smallest flavor with at least this RAM (MB), among those whose name contains the flavor
        "min-ram": v.All(INT, v.Range(min=1, msg="must be a positive number of MB")),
        "key-name": str,
        "username": str,
        # Nodepool's: cloud-init userdata for its servers; on a failed boot, its server's console log is logged
        "userdata": USERDATA,
        "console-log": bool,
        **{key: v.All(str, v.Length(min=1, msg="must not be empty")) for key in ("python-path", "shell-type")},
    }
)

IMAGE = v.Schema(
    {
        v.Required("name"): NAME,
        "base-image": str,
        "prepare": str,
        "username": str,
        "rebuild-hours": v.All(NUMBER, v.Range(min=0)),
        "build-timeout": v.All(NUMBER, v.Range(min=1)),  # seconds the prepare script may run
        "pause": bool,  # build no new image (the ready builds keep serving), as Nodepool's diskimage pause
        # its nodes' Python and shell, for their consumer, as Nodepool's (a pool label's own win)
        **{key: v.All(str, v.Length(min=1, msg="must not be empty")) for key in ("python-path", "shell-type")},
    }
)

# Nodepool's cloud-images: an image the cloud has (by name or id), booted as it is; one of our images without
# a prepare script
CLOUD_IMAGE = v.Schema({v.Required("name"): NAME, "image-name": str, "image-id": str, "username": str,
                        **{key: v.All(str, v.Length(min=1, msg="must not be empty"))
                           for key in ("python-path", "shell-type")}})

PROVIDER = v.Schema(
    {
        v.Required("name"): NAME,
        v.Required("driver"): v.In(("openstack", "static"), msg="unknown driver (expected openstack or static)"),
        "cloud": str,
        "region": str,
        "region-name": str,  # Nodepool's name for region
        "max-servers": v.All(INT, v.Range(min=0, msg="must not be negative")),
        # node requests it handles at once, as Nodepool's (-1 or 0: no maximum, Nodepool's default)
        "max-concurrency": v.All(INT, v.Range(min=-1, msg="must be at least 1, or -1 or 0 (no maximum)")),
        "boot-timeout": v.All(NUMBER, v.Range(min=1)),
        "launch-timeout": v.All(NUMBER, v.Range(min=1)),
        "launch-attempts": v.All(INT, v.Range(min=1, msg="must be at least 1")),
        "launch-retries": v.All(INT, v.Range(min=1, msg="must be at least 1")),  # Nodepool's name for it
        "priority": INT,
        "rate": v.All(NUMBER, v.Range(min=0, msg="must not be negative")),
        "image-rebuild-hours": v.All(NUMBER, v.Range(min=0)),
        "pools": Each({v.Required("name"): NAME, "max-servers": INT,
                       "max-cores": v.All(INT, v.Range(min=0, msg="must not be negative")),
                       "max-ram": v.All(INT, v.Range(min=0, msg="must not be negative")),
                       "node-attributes": {str: v.Any(str, int, float, bool)},
                       "priority": INT,
                       # the networks its servers are attached to, by name or id (Nodepool's pool networks)
                       "networks": Each(v.All(str, v.Length(min=1, msg="must not be empty"))),
                       "host-key-checking": HOST_KEY_CHECKING,  # Nodepool's pool switch: true only
                       "labels": Each(POOL_LABEL),  # an openstack provider's pool
                       "nodes": Each(STATIC_NODE)}),  # a static provider's pool, as Nodepool's
        "images": Each(IMAGE),
        "cloud-images": Each(CLOUD_IMAGE),
        "hosts": Each(STATIC_HOST),
    }
)

# auto-drain-outliers: drain a provider flagged as a job-failure outlier (never the last undrained one of a label)
# max-hold-age: seconds a node may stay held, whatever its hold says (Nodepool's; 0: no limit, its default)
NODEPOOL = v.Schema({"labels": Each(NODE_LABEL), "providers": Each(PROVIDER), "auto-drain-outliers": bool,
                     "max-hold-age": v.All(NUMBER, v.Range(min=0, msg="must not be negative (0: no limit)"))})


def LogGlob(value: Any) -> str:  # noqa: N802 - reads like a type in schemas
    """A glob over a build's log file names (collected files are flattened, `*.log` stored as `*.txt`)."""
    if not isinstance(value, str) or not value.strip():
        raise v.Invalid("expected a glob over the build's log file names, like screen-n-cpu.txt or *.txt")
    if "/" in value:
        raise v.Invalid(f"{value!r} names a directory: log files are stored flat, match their names only "
                        "(like screen-*.txt)")
    return value


# A known bug: a failed build whose console (or the log files `files` names) matches `pattern` is said to match it.
SIGNATURE = v.Schema(
    {
        v.Required("id"): v.Any(NAME, v.All(INT, v.Range(min=0)), msg="expected a bug number or a name"),
        v.Required("title"): v.All(str, v.Length(min=1)),
        "url": str,
        v.Required("pattern"): Regex,
        "files": LogGlob,
    }
)

LAYOUT_FILE = v.Schema(
    {
        "pipelines": Each(PIPELINE),
        "queues": Each(QUEUE),
        "jobs": Each(JOB),
        "projects": Each(PROJECT),
        "nodepool": NODEPOOL,
        "signatures": Each(SIGNATURE),
        "nodesets": Each(NODESET),
    }
)

# -- service config (gatekeeper.yaml) ----------------------------------------------------------------------------
SERVICE_CONFIG = v.Schema(
    {
        "zookeeper": {
            "hosts": str,
            "chroot": str,
            "timeout": v.All(NUMBER, v.Range(min=1, msg="must be at least 1 (seconds)")),
            "auth": {v.Required("username"): str, v.Required("password"): str},
            "tls": {v.Required("ca"): str, v.Required("cert"): str, v.Required("key"): str},
        },
        "gerrit": {
            "name": NAME,
            v.Required("host"): str,
            "port": v.All(INT, v.Range(min=1, max=65535)),
            v.Required("user"): str,
            "key": str,
            "url": str,
            "git-url": str,
            "catch-up": bool,
            "timeout": v.All(NUMBER, v.Range(min=1, msg="must be at least 1 (seconds)")),
        },
        "layout": str,
        "scheduler": {"workers": v.All(INT, v.Range(min=1, msg="must be at least 1"))},
        "merger": {"git-dir": str, "workers": v.All(INT, v.Range(min=1, msg="must be at least 1"))},
        "executor": {
            "work-dir": str,
            "concurrency": v.All(INT, v.Range(min=1)),
            "hold-hours": v.All(NUMBER, v.Range(min=0, max=720, msg="must be 0 to 720 (30 days)")),
            "max-held": v.All(INT, v.Range(min=0)),
        },
        "launcher": {
            "clouds-yaml": str,
            "cleanup-interval": v.All(NUMBER, v.Range(min=1)),
            "ssh-key": str,
        },
        "log-store": {"dir": str, "url": str},
        "web": {"listen": str, "port": v.All(INT, v.Range(min=0, max=65535)), "admin-token": str,
                # developers' own tokens (user name -> token): what they may do is ask for access to nodes held
                # for their own changes
                "user-tokens": {str: str}},
        "hold-access": {"enabled": bool, "max-hours": v.All(NUMBER,
                                                                   v.Range(min=0, max=720, msg="must be 0 to 720"))},
        "statsd": {"host": str, "port": v.All(INT, v.Range(min=1, max=65535)), "prefix": str},
        "history": {"url": str},
    }
)
