"""The active layout in ZooKeeper: published once validated, read by every service.

What is stored is the layout's source files, so every service parses the same text into the same Layout.
A layout is published only after it parsed cleanly; a bad one never replaces the running one.
"""

from __future__ import annotations

import difflib
import json

from gatekeeper.config.layout import Layout, parse_layout
from gatekeeper.config.schema_parts import project_name_problem
from gatekeeper.zk import paths
from gatekeeper.zk.client import ZKClient
from gatekeeper.zk.sharding import read_sharded, write_sharded


def publish_layout(zk: ZKClient, layout: Layout) -> None:
    write_sharded(zk.client, paths.LAYOUT, json.dumps({"files": layout.files}).encode())


def read_layout(zk: ZKClient, connections: set[str] | None = None) -> Layout | None:
    """The published layout, or None if none was published yet."""
    raw = read_sharded(zk.client, paths.LAYOUT)
    if raw is None:
        return None
    return parse_layout(json.loads(raw)["files"], connections)


def unknown_project(layout: Layout | None, project: str) -> str:
    """Why an operator may not name `project` (an autohold for it would never match; Zuul's "project not found"):
    the layout has no project of that name. "" when it has, or when there is no layout to check against."""
    problem = project_name_problem(project)
    if problem:  # with or without a layout: no Gerrit project has such a name
        return f'"{project}" is no project name: it {problem}'
    if layout is None or project in layout.projects:
        return ""
    close = difflib.get_close_matches(project, list(layout.projects), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return f'no project "{project}" in the published layout{hint}'
