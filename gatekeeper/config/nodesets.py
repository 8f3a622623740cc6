"""Zuul's nodesets in the layout: the top-level `nodesets:` and a job's (or branch variant's) `nodeset:`, a name or
written inline. Read from YAML here, checked (node names unique, groups naming nodes of the set, one of `label`
and `nodeset`), and a named nodeset resolved once every file has been read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from gatekeeper.config.model import Layout, Nodeset, NodesetGroup, NodesetNode

# (node, key, where, message): the layout builder's error, with the file and line of node[key]
ErrorFn = Callable[[Any, Any, str, str], None]
Refs = list[tuple[str, str, str, int, str]]  # kind, name, source, line, context: names the layout must define


def parse_nodeset(data: Any, name: str, where: str, refs: Refs, error: ErrorFn) -> Nodeset:
    """A nodeset from its YAML mapping ({nodes, groups}); each node's label goes to `refs`. Two nodes of one name,
    two groups of one name and a group naming a node not in the set are errors naming `where` and their line."""
    nodes: list[NodesetNode] = []
    for i, node in enumerate(data["nodes"]):
        if any(n.name == node["name"] for n in nodes):
            error(data["nodes"], i, where, f'node "{node["name"]}" is named twice (node names must be unique '
                                           "in a nodeset)")
            continue
        refs.append(("label", node["label"], getattr(data["nodes"], "source", "<string>"),
                     data["nodes"].line_of(i), f'{where} node "{node["name"]}"'))
        nodes.append(NodesetNode(node["name"], node["label"]))
    known = {n.name for n in nodes}
    groups: list[NodesetGroup] = []
    for i, group in enumerate(data.get("groups") or []):
        if any(g.name == group["name"] for g in groups):
            error(data["groups"], i, where, f'group "{group["name"]}" is defined twice')
            continue
        unknown = [n for n in group["nodes"] if n not in known]
        if unknown:
            error(data["groups"], i, where, f'group "{group["name"]}" names {", ".join(map(repr, unknown))}, '
                                            f'which {"is" if len(unknown) == 1 else "are"} no node of this nodeset '
                                            f'(its nodes: {", ".join(sorted(known)) or "none"})')
        groups.append(NodesetGroup(group["name"], tuple(dict.fromkeys(n for n in group["nodes"] if n in known))))
    return Nodeset(name, tuple(nodes), tuple(groups))


def add_nodesets(entries: list, define: Callable[[str, str, Any], bool], nodesets: dict[str, Nodeset], refs: Refs,
                 error: ErrorFn) -> None:
    """The top-level `nodesets:` of one layout file into `nodesets` (`define` reports a name defined twice)."""
    for data in entries:
        if define("nodeset", data["name"], data):
            nodesets[data["name"]] = parse_nodeset(data, data["name"], f'nodeset "{data["name"]}"', refs, error)


def job_nodeset(holder: Any, where: str, refs: Refs, error: ErrorFn) -> Nodeset | None:
    """A job's (or variant's) `nodeset`: inline, or a named one as a placeholder (no nodes) that
    `resolve_nodesets` replaces; None when it gives none. Giving `label` too is an error."""
    value = holder.get("nodeset")
    if value is None:
        return None
    if "label" in holder:
        error(holder, "nodeset", where, "gives both label and nodeset: give one (a label is the shorthand for a "
                                        "one-node nodeset)")
    if isinstance(value, str):
        refs.append(("nodeset", value, holder.source, holder.line_of("nodeset"), where))
        return Nodeset(value)
    return parse_nodeset(value, "", f"{where} nodeset", refs, error)


def resolve_nodesets(layout: Layout) -> None:
    """Replace every job's and variant's named placeholder with the nodeset of that name (an undefined name is
    reported by the layout's reference check and left as it is)."""

    def resolved(nodeset: Nodeset | None) -> Nodeset | None:
        if nodeset is None or nodeset.nodes or nodeset.name not in layout.nodesets:
            return nodeset
        return layout.nodesets[nodeset.name]

    for name, job in list(layout.jobs.items()):
        variants = tuple(dataclasses.replace(v, nodeset=resolved(v.nodeset)) for v in job.variants)
        layout.jobs[name] = dataclasses.replace(job, nodeset=resolved(job.nodeset), variants=variants)

