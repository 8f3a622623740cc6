"""The layout: pipelines, queues, jobs, projects and the node pool, read from `layouts/*.yaml`.

`load_layout(dir)` validates every file against gatekeeper.config.schema, then checks what spans files (names
defined twice, jobs and labels that do not exist, a project in two queues), and returns a `Layout` of plain
dataclasses, or raises ConfigErrors listing every problem with its file and line.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from gatekeeper.config import schema
from gatekeeper.config.inherit import resolve_parents, usage_errors
from gatekeeper.config.jobdeps import dependency_errors, parse_dependencies
from gatekeeper.config.layout_contents import emptiness_errors
from gatekeeper.config.model import (  # noqa: F401 (the layout's model, re-exported for its readers)
    PRECEDENCE_ORDER,
    Image,
    Job,
    JobDependency,
    JobVariant,
    Layout,
    NodeLabel,
    NodePool,
    Pipeline,
    Pool,
    PoolLabel,
    Project,
    Provider,
    Queue,
    Report,
    Requirements,
    Signature,
    StaticHost,
    Trigger,
    WindowConfig,
    branch_matches,
)
from gatekeeper.config.nodesets import add_nodesets, job_nodeset, resolve_nodesets
from gatekeeper.config.projects import project_pipelines
from gatekeeper.config.requirements import approvals, requirements, trigger_requirements
from gatekeeper.config.timers import TIMER, pipeline_timers
from gatekeeper.config.validation import (  # noqa: F401 (validate: re-exported for the service settings)
    config_error,
    invalid_parts,
    kind_of,
    validate,
    without_invalid,
)
from gatekeeper.config.yamlfile import (
    ConfigError,
    ConfigErrors,
    load_yaml,
    read_text,
)
from gatekeeper.config.zuulformat import from_zuul_list


# -- loading ----------------------------------------------------------------------------------------------------
def load_layout(path: str | Path, connections: set[str] | None = None) -> Layout:
    """Read every `*.yaml` in a directory (or one file), sorted by name, into one Layout."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigErrors([ConfigError(str(path), 0, "", "no layout files (*.yaml) in this directory")])
    elif path.is_file():
        files = [path]
    else:
        raise ConfigErrors([ConfigError(str(path), 0, "", "no such layout file or directory")])
    texts: dict[str, str] = {}
    errors: list[ConfigError] = []
    for file in files:
        try:
            texts[str(file)] = read_text(file)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return parse_layout(texts, connections, origin=str(path))


def parse_layout(texts: dict[str, str], connections: set[str] | None = None, origin: str | None = None) -> Layout:
    """Build a Layout from {file name: YAML text}; raise ConfigErrors with every problem found.

    `origin` names the layout as a whole (its directory) in an error about the whole, such as an empty layout.
    """
    errors: list[ConfigError] = []
    docs: list[Any] = []
    broken: set[tuple[str, str]] = set()  # (kind, name) of definitions left out for their errors
    blank: list[str] = []  # files empty or with only comments
    for source, text in texts.items():
        try:
            data = load_yaml(text, source)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        if data is None:
            blank.append(source)
            continue
        if isinstance(data, list) and any(isinstance(x, dict) for x in data):  # Zuul's: configuration objects
            data, zuul_errors = from_zuul_list(data, source)
            errors.extend(zuul_errors)
        if not isinstance(data, dict):
            errors.append(ConfigError(source, getattr(data, "line", 1), "", "expected a mapping of sections "
                                      "(pipelines, queues, jobs, projects, nodepool) at the top level, got "
                                      + kind_of(data)))
            continue
        invalid = invalid_parts(schema.LAYOUT_FILE, data)
        errors.extend(config_error(data, source, err) for err in invalid)
        docs.append(without_invalid(data, [list(err.path) for err in invalid], broken))
    # The items that passed the schema are still checked together, so that one run lists every error; a name
    # whose definition was invalid is not reported again as undefined.
    builder = _Builder(connections, broken)
    for data in docs:
        builder.add(data)
    builder.check()
    errors.extend(builder.errors)
    if not errors:
        errors.extend(emptiness_errors(builder.layout, texts, blank, origin))
    if errors:
        raise ConfigErrors(errors)
    builder.layout.files = dict(texts)
    return builder.layout


def _branch_list(value: str | list[str] | None) -> tuple[str, ...]:
    """`branches:`, `files:` and `irrelevant-files:` take one pattern or a list of them."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _window(data: dict | None) -> WindowConfig | None:
    if data is None:
        return None
    return WindowConfig(
        initial=data.get("initial", 20),
        floor=data.get("floor", 3),
        ceiling=data.get("ceiling") or 0,
        increase=data.get("increase", 1),
        decrease_factor=data.get("decrease-factor", 2),
        increase_type=data.get("increase-type", "linear"),
        decrease_type=data.get("decrease-type", "exponential"),
    )


def _patterns(value: Any) -> tuple[re.Pattern, ...]:
    if value is None:
        return ()
    return tuple(re.compile(p) for p in ([value] if isinstance(value, str) else value))


def _report(data: dict | None) -> Report | None:
    if not data:
        return None
    g = data.get("gerrit") or {}
    # Zuul writes the labels as the reporter's keys (`Verified: 1`); ours under `labels`
    labels = {**{k: vote for k, vote in g.items() if k not in schema.GERRIT_REPORT_KEYS}, **(g.get("labels") or {})}
    return Report(labels=labels, message=g.get("message", ""), submit=g.get("submit", False),
                  tag=g.get("tag", ""), reasons=dict(data.get("reasons") or {}))


def _required_projects(value: Any) -> tuple[str, ...]:
    """A job's required projects: names, or Zuul's {name: ...} mappings; one name alone (Zuul's shorthand)."""
    entries = [value] if isinstance(value, str) else value or []
    return tuple(e["name"] if isinstance(e, dict) else e for e in entries)


class _Builder:
    """Merges validated files into one Layout and finds the errors that span files."""

    def __init__(self, connections: set[str] | None, broken: set[tuple[str, str]] | None = None) -> None:
        self.layout = Layout()
        self.connections = connections
        self.broken = broken or set()
        self.errors: list[ConfigError] = []
        self.where: dict[tuple[str, str], tuple[str, int]] = {}
        self.refs: list[tuple[str, str, str, int, str]] = []  # kind, name, source, line, context
        self.listed: dict[tuple[str, str, str], tuple[str, int]] = {}  # (project, pipeline, job) -> source, line
        self.job_keys: dict[str, set[str]] = {}  # job -> the keys its own definition gives (what it does not inherit)

    def error(self, node: Any, key: Any, where: str, message: str) -> None:
        line = node.line_of(key) if hasattr(node, "line_of") else getattr(node, "line", 0)
        self.errors.append(ConfigError(getattr(node, "source", "<string>"), line, where, message))

    def one_spelling(self, node: Any, ours: str, nodepools: str, where: str) -> None:
        """A setting given both in our spelling and in Nodepool's is refused (neither would silently win)."""
        if ours in node and nodepools in node:
            self.error(node, nodepools, where, f'give "{ours}" or Nodepool\'s "{nodepools}", not both')

    def define(self, kind: str, name: str, node: Any) -> bool:
        key = (kind, name)
        if key in self.where:
            src, line = self.where[key]
            self.error(node, "name", f'{kind} "{name}"', f"defined twice (first at {src}:{line})")
            return False
        self.where[key] = (node.source, node.line)
        return True

    def add(self, data: dict) -> None:
        for i, p in enumerate(data.get("pipelines", [])):
            self.add_pipeline(p, data["pipelines"], i)
        for q in data.get("queues", []):
            if self.define("queue", q["name"], q):
                self.layout.queues[q["name"]] = Queue(q["name"], _window(q.get("window")), q.get("per-branch", False))
        for j in data.get("jobs", []):
            self.add_job(j)
        for p in data.get("projects", []):
            self.add_project(p)
        np = data.get("nodepool")
        if np:
            self.add_nodepool(np)
        for sig in data.get("signatures", []):
            self.add_signature(sig)
        add_nodesets(data.get("nodesets", []), self.define, self.layout.nodesets, self.refs, self.error)

    def add_signature(self, sig: dict) -> None:
        ident = str(sig["id"])
        key = ("signature", ident)
        if key in self.where:
            src, line = self.where[key]
            self.error(sig, "id", f'signature "{ident}"', f"defined twice (first at {src}:{line})")
            return
        self.where[key] = (sig.source, sig.line)
        self.layout.signatures[ident] = Signature(ident, sig["title"], re.compile(sig["pattern"], re.MULTILINE),
                                                  sig.get("url", ""), sig.get("files", ""))

    def add_pipeline(self, p: dict, parent: Any, index: int) -> None:
        if not self.define("pipeline", p["name"], p):
            return
        where = f'pipeline "{p["name"]}"'
        triggers = []
        timers = pipeline_timers(p, where, self.error)
        for conn, filters in (p.get("trigger") or {}).items():
            if conn == TIMER:
                continue
            if self.connections is not None and conn not in self.connections:
                self.error(p["trigger"], conn, where,
                           f'trigger names unknown connection "{conn}" (known: {", ".join(sorted(self.connections))})')
            for f in filters:
                events = f["event"]
                triggers.append(Trigger(
                    connection=conn,
                    events=tuple([events] if isinstance(events, str) else events),
                    approvals=approvals(f.get("approval")),
                    comments=_patterns(f.get("comment")),
                    branches=_patterns(f.get("branch")),
                    usernames=_patterns(f.get("username")), emails=_patterns(f.get("email")),
                    refs=_patterns(f.get("ref")),
                    ignore_deletes=f.get("ignore-deletes", True),
                    require=trigger_requirements(f),
                ))
                for key, message in triggers[-1].errors(p["manager"]):
                    self.error(f, key, where, message)
        req = self.requirements(p, "require", schema.REQUIRE_KEYS, where)
        reject = self.requirements(p, "reject", schema.REJECT_KEYS, where)
        flat = [k for k in schema.FLAT_WINDOW if k in p]
        if flat and isinstance(p.get("window"), dict):
            self.error(p, flat[0], where, f"{flat[0]} is Zuul's flat spelling of the window, which this pipeline also "
                       f"gives as a mapping: write {schema.FLAT_WINDOW[flat[0]]} inside window, or window as a number")
        if isinstance(p.get("window"), dict):
            window = _window(p["window"])
            self.check_window(p["window"], where)
        elif flat or "window" in p:  # Zuul's spelling, read as ours
            nested = {schema.FLAT_WINDOW[k]: p[k] for k in flat} | ({"initial": p["window"]} if "window" in p else {})
            self.check_window(nested, where, p, "window-")
            window = _window(nested)
        else:
            window = None
        if window and p["manager"] != "dependent":
            key = "window" if "window" in p else flat[0]
            why = schema.IN_TURN.get(p["manager"], "")
            self.error(p, key, where, f"a window applies only to a dependent pipeline{why}")
        supercedes = p.get("supercedes") or []
        supercedes = [supercedes] if isinstance(supercedes, str) else supercedes
        for i, other in enumerate(supercedes):
            line = p["supercedes"].line_of(i) if isinstance(p["supercedes"], list) else p.line_of("supercedes")
            if other == p["name"]:
                self.error(p, "supercedes", where, "a pipeline cannot supercede itself")
            else:
                self.refs.append(("pipeline", other, p.source, line, f"{where} supercedes"))
        for new, old in (("merge-conflict", "merge-failure"), ("merge-conflict-message", "merge-failure-message")):
            if old in p and new in p:
                self.error(p, old, where, f"{old} is Zuul's older name of {new}, which this pipeline also gives")
        if "disable-after-consecutive-failures" in p and p["manager"] == "dependent":
            self.error(p, "disable-after-consecutive-failures", where,
                       "a dependent pipeline cannot be disabled: it merges the changes that succeed, and the changes "
                       "behind them are tested on them (use it on independent, serial or supercedent pipelines)")
        actions = ("enqueue", "start", "success", "failure", "merge-conflict", "no-jobs", "disabled", "dequeue")
        reports = {a: r for a in actions if (r := _report(p.get(a) or (p.get("merge-failure") if a == "merge-conflict"
                                                                      else None)))}
        messages = {a: text for a in schema.MESSAGES if (text := p.get(f"{a}-message"))}
        if "merge-failure" in messages:
            messages.setdefault("merge-conflict", messages.pop("merge-failure"))
        self.layout.pipelines[p["name"]] = Pipeline(
            name=p["name"],
            manager=p["manager"],
            description=p.get("description", ""),
            precedence=p.get("precedence", "normal"),
            triggers=tuple(triggers),
            require=requirements(req, reject),
            reports=reports,
            messages=messages,
            footer=p.get("footer-message", ""),
            disable_after=p.get("disable-after-consecutive-failures"),
            window=window or WindowConfig(),
            supercedes=tuple(dict.fromkeys(supercedes)),
            dequeue_on_new_patchset=p.get("dequeue-on-new-patchset", True), timers=timers,
            post_review=p.get("post-review", False),
            ignore_dependencies=p.get("ignore-dependencies", False),
        )

    def requirements(self, p: dict, key: str, keys: tuple[str, ...], where: str) -> dict:
        """A pipeline's `require` or `reject`: ours, or Zuul's under its source's connection name (whose name must
        be a connection of the layout)."""
        value = p.get(key) or {}
        if not value or any(k in keys for k in value):
            return value
        merged: dict = {}
        for conn, conditions in value.items():
            if self.connections is not None and conn not in self.connections:
                self.error(value, conn, where, f'{key} names unknown connection "{conn}" (known: '
                           f'{", ".join(sorted(self.connections))})')
            merged.update(conditions or {})
        return merged

    def check_window(self, w: dict, where: str, node: Any = None, prefix: str = "") -> None:
        initial, floor = w.get("initial", 20), w.get("floor", 3)
        if initial and floor > initial:  # 0: no window at all (as in Zuul)
            self.error(node or w, prefix + "floor", where, f"window floor {floor} is above its initial size {initial}")
        ceiling = w.get("ceiling")
        if ceiling is not None and initial and ceiling < initial:
            self.error(node or w, prefix + "ceiling", where,
                       f"window ceiling {ceiling} is below its initial size {initial}")

    def add_job(self, j: dict) -> None:
        if not self.define("job", j["name"], j):
            return
        where = f'job "{j["name"]}"'
        self.job_keys[j["name"]] = set(j)
        if "parent" in j:
            self.refs.append(("job", j["parent"], j.source, j.line_of("parent"), f"{where} parent"))
        if "label" in j:
            self.refs.append(("label", j["label"], j.source, j.line_of("label"), where))
        variants = []
        for i, var in enumerate(j.get("variants") or []):
            if "label" in var:
                self.refs.append(("label", var["label"], var.source, var.line_of("label"), f"{where} variant {i + 1}"))
            vds = var.get("devstack") or {}
            variants.append(JobVariant(branches=_branch_list(var["branches"]), label=var.get("label"),
                                       nodeset=job_nodeset(var, f"{where} variant {i + 1}", self.refs, self.error),
                                       timeout=var.get("timeout"), vars=dict(var.get("vars", {})),
                                       devstack_localrc=dict(vds.get("localrc", {})),
                                       devstack_local_conf=vds.get("local-conf"),
                                       files=self.file_patterns(var, "files", where, None),
                                       irrelevant_files=self.file_patterns(var, "irrelevant-files", where, None)))
        for holder in [j, *(j.get("variants") or [])]:
            for pattern in _branch_list(holder.get("branches")):
                try:
                    re.compile(pattern)
                except re.error as e:
                    self.error(holder, "branches", where, f"branches: {pattern!r} is not a regular expression ({e})")
        ds = j.get("devstack") or {}
        self.layout.jobs[j["name"]] = Job(
            name=j["name"],
            label=j.get("label"),
            nodeset=job_nodeset(j, where, self.refs, self.error),
            description=j.get("description", ""),
            run=tuple(j.get("run", ())),
            timeout=j.get("timeout", 3600),
            attempts=j.get("attempts", 3),
            voting=j.get("voting", True),
            collect=tuple(j.get("collect", ())),
            vars=dict(j.get("vars", {})),
            required_projects=_required_projects(j.get("required-projects")),
            devstack_localrc=dict(ds.get("localrc", {})),
            devstack_local_conf=ds.get("local-conf", ""),
            hold_hours=j.get("hold-hours"),
            branches=_branch_list(j.get("branches")),
            variants=tuple(variants),
            dependencies=parse_dependencies(j, where, self.refs),
            files=self.file_patterns(j, "files", where, ()),
            irrelevant_files=self.file_patterns(j, "irrelevant-files", where, ()),
            parent=j.get("parent", ""),
            abstract=j.get("abstract", False),
            final=j.get("final", False),
            post_review=j.get("post-review", False),
        )

    def file_patterns(self, holder: Any, key: str, where: str,
                      absent: tuple[re.Pattern, ...] | None) -> tuple[re.Pattern, ...] | None:
        """A job's (or variant's) `files` or `irrelevant-files`, compiled; `absent` when it gives none. A pattern
        that is no regular expression is an error naming it."""
        if key not in holder:
            return absent
        compiled = []
        for pattern in _branch_list(holder[key]):
            try:
                compiled.append(re.compile(pattern))
            except re.error as e:
                self.error(holder, key, where, f"{key}: {pattern!r} is not a regular expression ({e})")
        return tuple(compiled)

    def add_project(self, p: dict) -> None:
        name = p["name"]
        where = f'project "{name}"'
        existing = self.layout.projects.get(name)
        queue = p.get("queue")
        pipelines = {k: tuple(vs) for k, vs in (p.get("pipelines") or {}).items()}
        for pipe, jobs in (p.get("pipelines") or {}).items():
            self.refs.append(("pipeline", pipe, p.source, p["pipelines"].line_of(pipe), where))
            for i, job in enumerate(jobs):
                self.refs.append(("job", job, p.source, jobs.line_of(i), f"{where} pipeline {pipe}"))
                self.listed.setdefault((name, pipe, job), (p.source, jobs.line_of(i)))
        zuul_pipelines, variants, queues = project_pipelines(p, where, self.refs, self.listed, self.file_patterns)
        for pipe, jobs in zuul_pipelines.items():
            if pipe in pipelines:
                self.error(p, pipe, where, f"pipeline {pipe} is given twice: under pipelines and as {pipe}")
            pipelines[pipe] = tuple(dict.fromkeys(pipelines.get(pipe, ()) + jobs))
        queue_line = p.line_of("queue")
        for named, line in queues:  # Zuul's older spelling: the queue in a project's (dependent) pipeline
            if queue and named != queue:
                self.errors.append(ConfigError(p.source, line, where, f'project in two queues: "{queue}" and '
                                                                      f'"{named}"'))
            queue, queue_line = (queue, queue_line) if queue else (named, line)
        if queue:
            self.refs.append(("queue", queue, p.source, queue_line, where))
        if existing:
            if queue and existing.queue and queue != existing.queue:
                src, line = self.where[("project", name)]
                self.error(p, "queue", where,
                           f'project in two queues: "{existing.queue}" ({src}:{line}) and "{queue}"')
                return
            merged = dict(existing.pipelines)
            for pipe, jobs in pipelines.items():
                merged[pipe] = tuple(dict.fromkeys(merged.get(pipe, ()) + jobs))
            self.layout.projects[name] = Project(name, existing.queue or queue,
                                                 p.get("merge-mode", existing.merge_mode), merged,
                                                 {**existing.variants, **variants})
            return
        self.where[("project", name)] = (p.source, p.line)
        self.layout.projects[name] = Project(name, queue, p.get("merge-mode", "merge-resolve"), pipelines, variants)

    def add_nodepool(self, np: dict) -> None:
        for key in ("auto-drain-outliers", "max-hold-age"):
            if key in np:
                self.layout.nodepool = dataclasses.replace(self.layout.nodepool, **{key.replace("-", "_"): np[key]})
        for label in np.get("labels", []):
            if self.define("label", label["name"], label):
                self.layout.nodepool.labels[label["name"]] = NodeLabel(label["name"], label.get("min-ready", 0),
                                                                       label.get("max-ready-age", 0))
        for pr in np.get("providers", []):
            self.add_provider(pr)

    def add_provider(self, pr: dict) -> None:
        if not self.define("provider", pr["name"], pr):
            return
        where = f'provider "{pr["name"]}"'
        images = {i["name"]: i for i in pr.get("images", [])}
        for i, ci in enumerate(pr.get("cloud-images", [])):
            if ci["name"] in images:
                self.error(pr["cloud-images"], i, where, f'image "{ci["name"]}" is defined twice')
            images[ci["name"]] = {"name": ci["name"], "base-image": ci.get("image-id") or ci.get("image-name")
                                  or ci["name"], "username": ci.get("username", "root"),
                                  **{k: ci[k] for k in ("python-path", "shell-type") if k in ci}}
        pools = []
        openstack_pools, static_pools = [], []
        if pr["driver"] == "openstack":
            if not pr.get("cloud"):
                self.error(pr, "name", where, 'an openstack provider needs "cloud" (its name in clouds.yaml)')
            if pr.get("hosts"):
                self.error(pr, "hosts", where, '"hosts" belongs to static providers; openstack ones use pools')
            for pool in pr.get("pools", []):
                if "labels" not in pool or "nodes" in pool:
                    self.error(pool, "nodes" if "nodes" in pool else "name", f'{where} pool "{pool["name"]}"',
                               'an openstack provider\'s pool lists "labels" ("nodes" are a static provider\'s)')
                else:
                    openstack_pools.append(pool)
        else:
            for pool in pr.get("pools", []):  # Nodepool's way of listing static hosts: pools[].nodes
                other = sorted(set(pool) - {"name", "nodes"})
                if "nodes" not in pool or other:
                    self.error(pool, other[0] if other else "name", f'{where} pool "{pool["name"]}"',
                               'a static provider\'s pool lists only "nodes" (its hosts, as Nodepool\'s static '
                               f'driver){"; not " + ", ".join(other) if other else ""}')
                else:
                    static_pools.append(pool)
        self.one_spelling(pr, "launch-attempts", "launch-retries", where)
        self.one_spelling(pr, "region", "region-name", where)
        for pool in openstack_pools:
            labels = []
            for i, pl in enumerate(pool["labels"]):
                named = [pl[k] for k in ("image", "cloud-image", "diskimage") if k in pl]
                self.one_spelling(pl, "flavor", "flavor-name", f'{where} pool "{pool["name"]}" label "{pl["name"]}"')
                pl = {**pl, "image": named[0] if named else "", "flavor": pl.get("flavor", pl.get("flavor-name", ""))}
                if len(named) != 1:
                    self.error(pool["labels"], i, f'{where} pool "{pool["name"]}"',
                               f'label "{pl["name"]}" needs one image: "image" (or Nodepool\'s "cloud-image" or '
                               '"diskimage")')
                elif pl["image"] not in images:
                    self.error(pool["labels"], i, f'{where} pool "{pool["name"]}"',
                               f'label "{pl["name"]}" uses image "{pl["image"]}", which this provider does not define'
                               f' (defined: {", ".join(sorted(images)) or "none"})')
                self.refs.append(("label", pl["name"], pool["labels"].source, pool["labels"].line_of(i), where))
                image = images.get(pl["image"], {})
                labels.append(PoolLabel(pl["name"], pl["image"], pl.get("flavor", ""), pl.get("key-name", ""),
                                        pl.get("username") or image.get("username", "root"), pl.get("userdata", ""),
                                        pl.get("console-log", False), pl.get("python-path", image.get("python-path",
                                        "auto")), pl.get("shell-type", image.get("shell-type", "")),
                                        pl.get("min-ram", 0)))
            pools.append(Pool(pool["name"], tuple(labels), pool.get("max-servers"), pool.get("max-cores"),
                              pool.get("max-ram"), dict(pool.get("node-attributes", {})), pool.get("priority"),
                              tuple(pool.get("networks", ()))))
        hosts = []
        # (entry, the list it is in, its index, its address, the default user): the provider's hosts, and
        # Nodepool's pools[].nodes, whose name is the address and whose user is Nodepool's default, zuul
        entries = [(h, pr["hosts"], i, h["address"], "root") for i, h in enumerate(pr.get("hosts", []))]
        entries += [(n, pool["nodes"], i, n["name"], "zuul") for pool in static_pools
                    for i, n in enumerate(pool["nodes"])]
        for h, listed, i, address, user in entries:
            if any(h["name"] == other.name for other in hosts):  # one name is one host (its nodes' server id)
                self.error(listed, i, where, f'static host "{h["name"]}" is listed twice')
            self.one_spelling(h, "port", "connection-port", f'{where} static host "{h["name"]}"')
            labels = [h["labels"]] if isinstance(h["labels"], str) else h["labels"]
            for label in labels:
                self.refs.append(("label", label, listed.source, listed.line_of(i), where))
            hosts.append(StaticHost(h["name"], address, tuple(labels), h.get("connection-port", h.get("port", 22)),
                                    h.get("username", user), h.get("host-key", ""), h.get("max-parallel-jobs", 1),
                                    h.get("timeout")))
        self.layout.nodepool.providers[pr["name"]] = Provider(
            name=pr["name"],
            driver=pr["driver"],
            cloud=pr.get("cloud", ""),
            region=pr.get("region", pr.get("region-name", "")),
            max_servers=pr.get("max-servers", sum(h.max_parallel_jobs for h in hosts)
                               if pr["driver"] == "static" else None),
            boot_timeout=pr.get("boot-timeout", 120),
            launch_timeout=pr.get("launch-timeout", 3600),
            launch_attempts=pr.get("launch-attempts", pr.get("launch-retries", 3)),
            priority=pr.get("priority", 100),
            rate=pr.get("rate", 0.0),
            max_concurrency=pr["max-concurrency"] if pr.get("max-concurrency", 0) > 0 else None,
            image_rebuild_hours=pr.get("image-rebuild-hours", 24),
            pools=tuple(pools),
            images=tuple(
                Image(i["name"], i.get("base-image", ""), i.get("prepare", ""), i.get("username", "root"),
                      i.get("rebuild-hours"), i.get("pause", False), i.get("build-timeout", 8 * 3600))
                for i in images.values()
            ),
            hosts=tuple(hosts),
        )

    def check(self) -> None:
        lay = self.layout
        known = {"pipeline": lay.pipelines, "job": lay.jobs, "queue": lay.queues, "label": lay.nodepool.labels,
                 "nodeset": lay.nodesets}
        for kind, name, source, line, context in self.refs:
            if name not in known[kind] and (kind, name) not in self.broken:
                have = ", ".join(sorted(known[kind])) or "none"
                self.errors.append(ConfigError(source, line, context,
                                               f'undefined {kind} "{name}" (defined: {have})'))
        self.errors.extend(resolve_parents(lay, self.job_keys, self.where))
        self.errors.extend(usage_errors(lay, self.listed))
        self.errors.extend(dependency_errors(lay, self.where, self.listed))
        resolve_nodesets(lay)
        offered = set().union(*(p.labels for p in lay.nodepool.providers.values())) if lay.nodepool.providers else set()
        some_provider_broken = any(kind == "provider" for kind, _ in self.broken)
        for label in lay.nodepool.labels.values():
            if label.name not in offered and not some_provider_broken:
                src, line = self.where[("label", label.name)]
                self.errors.append(ConfigError(src, line, f'label "{label.name}"',
                                               "no provider offers this label"))
