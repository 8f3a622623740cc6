"""YAML that remembers where each value came from, so every config error can name file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class SourceDict(dict):
    """A mapping from YAML that knows its file, its own line and the line of each key."""

    source: str = "<string>"
    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class SourceList(list):
    """A sequence from YAML that knows its file and the line of each item."""

    source: str = "<string>"
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


@dataclass
class ConfigError:
    """One problem, phrased for a person: `layouts/openstack.yaml:42: pipelines[0] (gate): unknown key "x"`."""

    source: str
    line: int
    where: str
    message: str

    def __str__(self) -> str:
        place = f"{self.source}:{self.line}" if self.line else self.source
        return f"{place}: {self.where}: {self.message}" if self.where else f"{place}: {self.message}"


class ConfigErrors(Exception):
    """Every error found in a config or layout: the run stops on all of them at once, not the first."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.source, e.line, e.where, e.message))
        super().__init__("\n".join(str(e) for e in self.errors))


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> SourceDict:
    loader.flatten_mapping(node)
    out = SourceDict()
    out.source = loader.name
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"unhashable key {key!r}", key_node.start_mark
            ) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f'duplicate key "{key}"', key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> SourceList:
    out = SourceList(loader.construct_object(child, deep=True) for child in node.value)
    out.source = loader.name
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def read_text(path: str | Path, what: str = "file") -> str:
    """A config file's text as UTF-8; an unreadable or undecodable file becomes a ConfigErrors naming it."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigErrors([ConfigError(source, 0, "", f"cannot read {what}: {exc.strerror or exc}")]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigErrors([ConfigError(
            source, line, "",
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {column} cannot be decoded "
            "(save the file as UTF-8)")]) from None


def load_yaml(text: str, source: str) -> Any:
    """Parse `text`; a syntax error becomes a ConfigErrors naming `source` and the line."""
    loader = None
    try:
        loader = _Loader(text)  # checks the characters at once
        loader.name = source
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise ConfigErrors([ConfigError(source, line, "", f"invalid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else 0
        what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "character"
        raise ConfigErrors([ConfigError(source, line, "", f"invalid YAML: {what} is not allowed in YAML text")]) \
            from None
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(source, 0, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        line = loader.line + 1 if loader is not None else 0
        raise ConfigErrors([ConfigError(source, line, "", "invalid YAML: nested too deeply to read")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def locate(data: Any, path: list) -> tuple[str, int]:
    """The file and line of the value at `path` (keys and indexes) inside loaded YAML, as deep as it exists."""
    source, line = getattr(data, "source", "<string>"), getattr(data, "line", 0)
    node = data
    for step in path:
        if isinstance(node, SourceDict) and step in node:
            line = node.line_of(step)
            node = node[step]
        elif isinstance(node, SourceList) and isinstance(step, int) and 0 <= step < len(node):
            line = node.line_of(step)
            node = node[step]
        elif isinstance(node, SourceDict):
            line = node.line_of(step)
            break
        else:
            break
        source = getattr(node, "source", source)
    return source, line


def describe_path(data: Any, path: list) -> str:
    """`pipelines[1] (gate).trigger.gerrit[0].event`: keys joined, list items named where they have a name."""
    out = ""
    node = data
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
            if isinstance(node, list) and 0 <= step < len(node):
                node = node[step]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    out += f" ({node['name']})"
            else:
                node = None
        else:
            out += f".{step}" if out else str(step)
            node = node.get(step) if isinstance(node, dict) else None
    return out
