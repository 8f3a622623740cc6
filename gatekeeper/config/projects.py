"""Zuul's spelling of a project's pipelines in the layout: `check: {jobs: [unit, {integration: {voting: false}}],
queue: integrated}` beside our `pipelines: {check: [unit]}`. A job given as a mapping is a project-pipeline job
variant: what this project's pipeline changes of the job (gatekeeper.config.model.JobOverride)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gatekeeper.config.jobdeps import parse_dependencies
from gatekeeper.config.model import JobOverride
from gatekeeper.config.schema import PROJECT_KEYS

Refs = list[tuple[str, str, str, int, str]]
Patterns = Callable[[Any, str, str, "tuple[re.Pattern, ...] | None"], "tuple[re.Pattern, ...] | None"]


def project_pipelines(p: Any, where: str, refs: Refs, listed: dict[tuple[str, str, str], tuple[str, int]],
                      file_patterns: Patterns) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], JobOverride],
                                                        list[tuple[str, int]]]:
    """The pipelines a project gives in Zuul's spelling: pipeline -> its jobs, (pipeline, job) -> the override of
    a job given as a mapping, and the queues named in those pipelines (with their lines), for the project's queue.
    Every pipeline and job named goes to `refs`, every job listed to `listed`."""
    pipelines: dict[str, tuple[str, ...]] = {}
    variants: dict[tuple[str, str], JobOverride] = {}
    queues: list[tuple[str, int]] = []
    for pipe, conf in p.items():
        if pipe in PROJECT_KEYS:
            continue
        refs.append(("pipeline", pipe, p.source, p.line_of(pipe), where))
        conf = conf or {}
        if "queue" in conf:
            queues.append((conf["queue"], conf.line_of("queue")))
        entries = conf.get("jobs") or []
        names = []
        for i, entry in enumerate(entries):
            line = entries.line_of(i)
            context = f"{where} pipeline {pipe}"
            if isinstance(entry, dict):
                (name, attrs), = entry.items()
                variants[(pipe, name)] = _override(attrs or {}, f"{context} job {name}", refs, file_patterns)
            else:
                name = entry
            refs.append(("job", name, p.source, line, context))
            listed.setdefault((p["name"], pipe, name), (p.source, line))
            names.append(name)
        pipelines[pipe] = tuple(dict.fromkeys(names))
    return pipelines, variants, queues


def _override(attrs: Any, where: str, refs: Refs, file_patterns: Patterns) -> JobOverride:
    deps = parse_dependencies(attrs, where, refs) if "dependencies" in attrs else None
    return JobOverride(voting=attrs.get("voting"), timeout=attrs.get("timeout"), attempts=attrs.get("attempts"),
                       vars=dict(attrs.get("vars") or {}), files=file_patterns(attrs, "files", where, None),
                       irrelevant_files=file_patterns(attrs, "irrelevant-files", where, None), dependencies=deps)
