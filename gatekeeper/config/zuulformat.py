"""Zuul's layout file format: a list of configuration objects (`- pipeline: {...}`, `- job: {...}`,
`- project: {...}`, `- queue: {...}`, `- nodeset: {...}`), read as our mapping of sections so that the rest of the
layout is checked and built as ours is. The objects Zuul has and we do not are errors naming them."""

from __future__ import annotations

from typing import Any

from gatekeeper.config.yamlfile import ConfigError, SourceDict, SourceList

SECTIONS = {"pipeline": "pipelines", "job": "jobs", "project": "projects", "queue": "queues", "nodeset": "nodesets"}
UNSUPPORTED = {
    "project-template": "list the template's jobs in each project's pipelines",
    "secret": "a job gets its credentials from its node or its vars",
    "semaphore": "jobs are not limited by semaphores here",
    "pragma": "branch matchers are always the job's own",
    "image": "images are the node providers' (nodepool's images)",
    "label": "labels are the node providers' (nodepool's labels)",
    "section": "providers are nodepool's",
    "provider": "providers are nodepool's",
    "flavor": "flavors are the providers' pool labels'",
}


def from_zuul_list(data: SourceList, source: str) -> tuple[SourceDict, list[ConfigError]]:
    """The sections a Zuul-format file holds, in our layout's shape, and the errors of the objects it cannot hold."""
    out = SourceDict()
    out.source, out.line, out.key_lines = source, data.line, {}
    errors: list[ConfigError] = []
    for i, entry in enumerate(data):
        line = data.line_of(i)
        if not isinstance(entry, dict) or len(entry) != 1:
            errors.append(ConfigError(source, line, f"item {i + 1}", "expected one configuration object, like "
                                                                     "- pipeline: {...} or - job: {...}"))
            continue
        (kind, body), = entry.items()
        section = SECTIONS.get(kind)
        if section is None:
            why = UNSUPPORTED.get(kind)
            errors.append(ConfigError(source, line, f"item {i + 1}", f"{kind} is not supported: {why}" if why else
                                      f"unknown configuration object {kind!r} (expected one of "
                                      f"{', '.join(SECTIONS)})"))
            continue
        _section(out, section, source, line).append_with_line(body, line)
    return out, errors


class _Section(SourceList):
    def append_with_line(self, value: Any, line: int) -> None:
        self.append(value)
        self.item_lines.append(line)


def _section(out: SourceDict, name: str, source: str, line: int) -> _Section:
    if name not in out:
        section = _Section()
        section.source, section.line, section.item_lines = source, line, []
        out[name] = section
        out.key_lines[name] = line
    return out[name]
