"""Zuul's job `dependencies` in the layout: read from a job's YAML, and checked across the layout (no cycle; a
project pipeline that lists a job lists the jobs it depends on, unless softly)."""

from __future__ import annotations

from typing import Any

from gatekeeper.config.model import JobDependency, Layout, Project
from gatekeeper.config.yamlfile import ConfigError, SourceList


def parse_dependencies(job: Any, where: str, refs: list[tuple[str, str, str, int, str]]) -> tuple[JobDependency, ...]:
    """A job's `dependencies` (one name, or a list of names and {name, soft} mappings); each name goes to `refs`,
    the references to jobs the layout must define (kind, name, source, line, context)."""
    entries = job.get("dependencies")
    if entries is None:
        return ()
    if isinstance(entries, str):
        entries = SourceList([entries])
        entries.source, entries.line, entries.item_lines = job.source, job.line_of("dependencies"), []
    out = []
    for i, entry in enumerate(entries):
        dep = JobDependency(entry) if isinstance(entry, str) else JobDependency(entry["name"], entry.get("soft", False))
        refs.append(("job", dep.name, getattr(entries, "source", job.source), entries.line_of(i),
                     f"{where} dependencies"))
        out.append(dep)
    return tuple(out)


def dependency_cycle(deps: dict[str, tuple[JobDependency, ...]]) -> list[str]:
    """A cycle among jobs given with their dependencies, as job names with the first repeated at the end ([] when
    none); a dependency on a job not given is no edge."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str]:
        state[name] = 1
        here = path + [name]
        for dep in deps.get(name, ()):
            if dep.name not in deps or state.get(dep.name) == 2:
                continue
            if state.get(dep.name) == 1:
                return here[here.index(dep.name):] + [dep.name]
            found = visit(dep.name, here)
            if found:
                return found
        state[name] = 2
        return []

    for name in sorted(deps):
        if name not in state:
            found = visit(name, [])
            if found:
                return found
    return []


def dependency_errors(layout: Layout, where: dict[tuple[str, str], tuple[str, int]],
                      listed: dict[tuple[str, str, str], tuple[str, int]]) -> list[ConfigError]:
    """A dependency cycle among jobs (named with their files and lines), and every project pipeline that lists a job
    but not a job it depends on (not softly): that job could never start. `where` has each definition's file and
    line, `listed` each (project, pipeline, job) entry's."""
    errors = []
    jobs = layout.jobs
    cycle = dependency_cycle({name: job.dependencies for name, job in jobs.items()})
    if cycle:
        src, line = where[("job", cycle[0])]
        places = " -> ".join(f"{name} ({':'.join(map(str, where[('job', name)]))})" for name in cycle)
        errors.append(ConfigError(src, line, f'job "{cycle[0]}"', f"dependency cycle {places}"))
    for project in layout.projects.values():
        for pipeline, names in project.pipelines.items():
            deps = {}  # the dependencies each defined job listed here has in this project's pipeline
            for name in names:
                override = project.variants.get((pipeline, name))
                own = override.dependencies if override is not None else None
                if name in jobs:
                    deps[name] = own if own is not None else jobs[name].dependencies
                for dep in deps.get(name, ()):
                    if not dep.soft and dep.name in jobs and dep.name not in names:
                        src, line = listed[(project.name, pipeline, name)]
                        errors.append(ConfigError(
                            src, line, f'project "{project.name}" pipeline {pipeline}',
                            f'job "{name}" depends on job "{dep.name}", which this pipeline does not run for the '
                            "project (list it too, or make the dependency soft)"))
            errors.extend(_pipeline_cycle(project, pipeline, deps, listed))
    return errors


def _pipeline_cycle(project: Project, pipeline: str, deps: dict[str, tuple[JobDependency, ...]],
                    listed: dict[tuple[str, str, str], tuple[str, int]]) -> list[ConfigError]:
    """A dependency cycle in one project's pipeline that the project's own `dependencies` of a job make (a cycle
    of the jobs' definitions alone is said once, at the jobs): its items could never start a job."""
    overridden = {name for name in deps if (override := project.variants.get((pipeline, name))) is not None
                  and override.dependencies is not None}
    cycle = dependency_cycle(deps) if overridden else []
    if not overridden & set(cycle):
        return []
    start = min(i for i, name in enumerate(cycle[:-1]) if name in overridden)
    cycle = cycle[start:-1] + cycle[:start] + [cycle[start]]
    src, line = listed[(project.name, pipeline, cycle[0])]
    return [ConfigError(src, line, f'project "{project.name}" pipeline {pipeline}',
                        "dependency cycle " + " -> ".join(cycle))]
