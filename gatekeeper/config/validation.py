"""Schema validation with places: voluptuous failures as ConfigErrors naming file, line and key, and a layout file
without the parts that failed (so that the rest still loads and its own errors are found too)."""

from __future__ import annotations

import copy
from typing import Any

import voluptuous as v

from gatekeeper.config.yamlfile import ConfigError, SourceDict, SourceList, describe_path, locate


def validate(s: v.Schema, data: Any, source: str) -> list[ConfigError]:
    """Run a voluptuous schema and turn each failure into a ConfigError with file, line and key path."""
    return [config_error(data, source, err) for err in invalid_parts(s, data)]


def invalid_parts(s: v.Schema, data: Any) -> list[v.Invalid]:
    try:
        s(data)
    except v.MultipleInvalid as exc:
        return list(exc.errors)
    except v.Invalid as exc:
        return [exc]
    return []


_SECTION_KINDS = {"pipelines": "pipeline", "queues": "queue", "jobs": "job", "projects": "project",
                  "labels": "label", "providers": "provider", "nodesets": "nodeset"}


def without_invalid(data: dict, paths: list[list], broken: set[tuple[str, str]]) -> dict:
    """`data` without the list items (or whole sections) the schema found errors in; their names go to `broken`."""
    drop: dict[tuple, set[int] | None] = {}  # section path -> item indexes to drop, or None for all of it
    for path in paths:
        nested = 2 if path[:1] == ["nodepool"] and len(path) > 1 else 1
        section, rest = tuple(path[:nested]), path[nested:]
        if rest and isinstance(rest[0], int) and drop.get(section, set()) is not None:
            drop.setdefault(section, set()).add(rest[0])
        else:
            drop[section] = None
    if () in drop:
        drop = {(key,): None for key in data}
    out = _copy_dict(data)
    for section, indexes in drop.items():
        parent = out
        for key in section[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or section[-1] not in parent:
            continue
        items = parent[section[-1]]
        if section == ("nodepool",) and isinstance(items, dict):  # all of it: its labels and providers too
            for key in ("labels", "providers"):
                for item in items.get(key) if isinstance(items.get(key), list) else []:
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        broken.add((_SECTION_KINDS[key], item["name"]))
        kind = _SECTION_KINDS.get(str(section[-1]))
        kept = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if indexes is None or i in indexes:
                if kind and isinstance(item, dict) and isinstance(item.get("name"), str):
                    broken.add((kind, item["name"]))
            else:
                kept.append(i)
        if indexes is None:
            del parent[section[-1]]
        else:
            parent[section[-1]] = _keep(items, kept)
    return out


def _copy_dict(data: dict) -> dict:
    """A copy of the top level and of `nodepool`, keeping what they know of files and lines."""
    out = copy.copy(data)
    if isinstance(data, SourceDict):
        out.key_lines = dict(data.key_lines)
    if isinstance(out.get("nodepool"), dict):
        out["nodepool"] = _copy_dict(out["nodepool"])
    return out


def _keep(items: list, indexes: list[int]) -> list:
    kept = SourceList(items[i] for i in indexes)
    kept.source, kept.line = getattr(items, "source", "<string>"), getattr(items, "line", 0)
    kept.item_lines = [items.line_of(i) for i in indexes] if isinstance(items, SourceList) else []
    return kept


def config_error(data: Any, source: str, err: v.Invalid) -> ConfigError:
    path = list(err.path)
    src, line = locate(data, path)
    where = describe_path(data, path)
    msg = err.msg
    if msg == "extra keys not allowed" and path:
        msg = f'unknown key "{path[-1]}"'
        where = describe_path(data, path[:-1]) or "top level"
    elif msg.startswith("required key not provided") and path:
        msg = f'missing required key "{path[-1]}"'
        where = describe_path(data, path[:-1]) or "top level"
    elif msg.startswith("expected ") and path:
        msg = _TYPE_WORDS.get(msg, msg)
        value = _value_at(data, path)
        msg = f"{msg}, got {kind_of(value)} {_shown(value)}" if value is not _MISSING else msg
    return ConfigError(src if src != "<string>" else source, line, where, msg)


_MISSING = object()
_TYPE_WORDS = {
    "expected int": "expected an integer",
    "expected str": "expected a string",
    "expected bool": "expected true or false",
    "expected float": "expected a number",
    "expected list": "expected a list",
    "expected dict": "expected a mapping",
    "expected a dictionary": "expected a mapping",
}


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", type(None): "an empty value"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A value as the file spells it where YAML and Python differ (`true`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    return value


def _value_at(data: Any, path: list) -> Any:
    node = data
    for step in path:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node
