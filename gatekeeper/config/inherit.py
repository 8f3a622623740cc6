"""Zuul's job inheritance in the layout: a job names a `parent` and takes from it every attribute it does not set
itself (its vars, devstack settings and required projects are merged with the parent's, the child's winning; the
parent's branch variants apply to it except where it sets an attribute itself, and its own variants come after
them; its own `branches` are its own). An `abstract` job only serves as a parent, a `final` one may be no job's
parent, and a `post-review` job (and every job inheriting from one) runs only in post-review pipelines."""

from __future__ import annotations

from dataclasses import replace

from gatekeeper.config.model import Job, JobVariant, Layout
from gatekeeper.config.yamlfile import ConfigError

# the layout's keys a child job overrides as a whole when it gives them, and the Job fields they set
OVERRIDDEN = {"description": ("description",), "run": ("run",), "timeout": ("timeout",), "attempts": ("attempts",),
              "voting": ("voting",), "collect": ("collect",), "hold-hours": ("hold_hours",), "files": ("files",),
              "irrelevant-files": ("irrelevant_files",), "dependencies": ("dependencies",),
              "label": ("label", "nodeset"), "nodeset": ("label", "nodeset")}


def inherit(parent: Job, child: Job, given: set[str]) -> Job:
    """`child` (a job as its own definition gives it: `given` its keys) on top of its resolved `parent`."""
    fields = {f: getattr(child, f) for key in given & OVERRIDDEN.keys() for f in OVERRIDDEN[key]}
    variants = tuple(_under(variant, child, given) for variant in parent.variants)
    return replace(
        parent, name=child.name, branches=child.branches, variants=variants + child.variants,
        vars={**parent.vars, **child.vars},
        required_projects=tuple(dict.fromkeys(parent.required_projects + child.required_projects)),
        devstack_localrc={**parent.devstack_localrc, **child.devstack_localrc},
        devstack_local_conf=child.devstack_local_conf or parent.devstack_local_conf,
        abstract=child.abstract, final=child.final, post_review=parent.post_review or child.post_review,
        parent=child.parent, **fields)


def _under(variant: JobVariant, child: Job, given: set[str]) -> JobVariant:
    """A parent's branch variant as it applies to `child`: without what the child sets itself (as Zuul applies the
    parent for the branch first, then the child's own attributes, then the child's variants)."""
    nodes = {"label", "nodeset"} & given
    local_conf = "devstack" in given and child.devstack_local_conf
    return replace(
        variant, label=None if nodes else variant.label, nodeset=None if nodes else variant.nodeset,
        timeout=None if "timeout" in given else variant.timeout,
        vars={k: x for k, x in variant.vars.items() if k not in child.vars},
        devstack_localrc={k: x for k, x in variant.devstack_localrc.items() if k not in child.devstack_localrc},
        devstack_local_conf=None if local_conf else variant.devstack_local_conf,
        files=None if "files" in given else variant.files,
        irrelevant_files=None if "irrelevant-files" in given else variant.irrelevant_files)


def resolve_parents(layout: Layout, given: dict[str, set[str]],
                    where: dict[tuple[str, str], tuple[str, int]]) -> list[ConfigError]:
    """Replace every job naming a defined parent by its inheriting self; returns the cycles and the final parents
    as errors (an undefined parent is reported with the layout's other undefined names)."""
    jobs = layout.jobs
    errors: list[ConfigError] = []
    done: dict[str, Job] = {}
    refused: set[str] = set()  # jobs whose own inheritance error is said already (a cycle is said once anyway)

    def place(name: str) -> tuple[str, int, str]:
        src, line = where[("job", name)]
        return src, line, f'job "{name}"'

    def resolve(name: str, path: list[str]) -> Job | None:
        if name in done or name in refused:
            return done.get(name)
        job = jobs[name]
        if not job.parent or job.parent not in jobs:
            done[name] = job
            return job
        if job.parent == name:
            errors.append(ConfigError(*place(name), "names itself as its parent"))
            refused.add(name)
            return None
        if job.parent in path:
            chain = path[path.index(job.parent):] + [name]  # each inherits from the next, the last from the first
            if name == min(chain):  # said once, by the cycle's first job in name order
                start = chain.index(name)
                cycle = chain[start:] + chain[:start] + [name]
                errors.append(ConfigError(*place(name), "inherits from itself: " + " -> ".join(cycle)))
            return None
        parent = resolve(job.parent, path + [name])
        if parent is None:
            return None
        if parent.final:
            src, line = where[("job", job.parent)]
            errors.append(ConfigError(*place(name), f'cannot inherit from job "{job.parent}": it is final '
                                                    f"({src}:{line})"))
            refused.add(name)
            return None
        done[name] = inherit(parent, job, given.get(name, set()))
        return done[name]

    for name in sorted(jobs):
        resolved = resolve(name, [])
        if resolved is not None:
            jobs[name] = resolved
    return errors


def usage_errors(layout: Layout, listed: dict[tuple[str, str, str], tuple[str, int]]) -> list[ConfigError]:
    """Project pipelines that list an abstract job, change a final one, or list a post-review job in a pipeline
    that is not post-review."""
    errors = []
    for project in layout.projects.values():
        for pipeline, names in project.pipelines.items():
            conf = layout.pipelines.get(pipeline)
            for name in names:
                job = layout.jobs.get(name)
                if job is None or (project.name, pipeline, name) not in listed:
                    continue
                src, line = listed[(project.name, pipeline, name)]
                context = f'project "{project.name}" pipeline {pipeline}'
                if job.final and (pipeline, name) in project.variants:
                    errors.append(ConfigError(src, line, context, f'job "{name}" is final: a project pipeline cannot '
                                                                  "change it"))
                elif job.abstract:
                    errors.append(ConfigError(src, line, context, f'job "{name}" is abstract: it may only be the '
                                                                  "parent of other jobs"))
                elif job.post_review and conf is not None and not conf.post_review:
                    errors.append(ConfigError(src, line, context, f'job "{name}" is post-review: it runs only in a '
                                                                  f"post-review pipeline ({pipeline} is not)"))
    return errors
