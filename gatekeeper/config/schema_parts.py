"""The validators every layout schema is built of: names, regular expressions, numbers that are no booleans, and
lists whose every item is checked (gatekeeper.config.schema and gatekeeper.config.schema_static compose them)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import voluptuous as v

# What Gerrit refuses in a project name (LocalDiskRepositoryManager.isUnreasonableName): a name is a path under the
# git directory, so none may lead out of it or name one repository in two ways.
UNREASONABLE_IN_NAME = ("\\", "?", "%", "*", ":", "<", ">", "|", "$", "~", "/+")


def project_name_problem(name: str) -> str:
    """Why Gerrit would refuse `name` as a project name, as a phrase after it; "" when it would take it."""
    if not name:
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    if name.startswith("/"):
        return "starts with / (an absolute path)"
    if name.endswith("/"):
        return "ends with /"
    segments = name.split("/")
    if "" in segments:
        return "has an empty segment (//)"
    if ".." in segments:
        return "has a '..' segment (a path out of the git directory)"
    if "." in segments:
        return "has a '.' segment (a second name of another project's repository)"
    if name.endswith(".git"):
        return f"ends with .git (the repository's suffix, not the project's: name it {name[:-4]!r})"
    if any(segment.endswith(".git") for segment in segments):
        return "has a segment ending in .git"
    bad = [part for part in UNREASONABLE_IN_NAME if part in name]
    if bad:
        return f"holds {bad[0]!r}, which Gerrit refuses in a project name"
    return ""


REASON_MAX = 500  # characters of an operator's reason (a hold, an autohold, a drain)


def reason_problem(text: str) -> str:
    """Why `text` is no reason an operator may give, as a phrase ("" when it is one): one line of at most
    REASON_MAX characters without control characters (it is printed in tables and on terminals, where an escape
    sequence would act on the reader's screen)."""
    if len(text) > REASON_MAX:
        return f"is {len(text)} characters (at most {REASON_MAX})"
    bad = next((i for i, c in enumerate(text) if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        return f"holds a control character ({text[bad]!r}) at {bad}: give one line of text"
    return ""


def project_name(value: Any) -> str:
    """A project name as Gerrit takes it (a layout project is a repository path for the merger and the executor)."""
    if not isinstance(value, str):
        raise v.Invalid("expected str")
    problem = project_name_problem(value)
    if problem:
        raise v.Invalid(f"project name {value!r} {problem}")
    return value


NAME = v.All(str, v.Length(min=1), v.Match(r"^[A-Za-z0-9_.@/+-]+$", msg="may hold only letters, digits and _.@/+-"))
# A pipeline's name is one segment of its paths in ZooKeeper: no "/", and not "." or "..".
PIPELINE_NAME = v.All(str, v.Length(min=1), v.Match(r"^[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*$",
                                                    msg="may hold only letters, digits and _.@+- and not start with ."))


LARGEST = 2 ** 31 - 1  # the largest number any setting takes (a wait longer than threading's TIMEOUT_MAX fails)


class Number:
    """A number of the given kinds (`int`, or `int` and `float`), never a boolean: YAML's `true` is an int to
    Python, so `timeout: true` would otherwise be read as one second. Every number a schema takes is one of these."""

    def __init__(self, *kinds: type) -> None:
        self.kinds = kinds

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.kinds) and not isinstance(value, bool)

    def __call__(self, value: Any) -> Any:
        if not self.accepts(value) or (isinstance(value, float) and not math.isfinite(value)):
            # the words gatekeeper.config.validation turns into "expected an integer/a number, got ..."
            raise v.Invalid("expected int" if self.kinds == (int,) else "expected float")
        if abs(value) > LARGEST:  # a timeout of 400 digits overflowed where it became seconds
            shown = f"a number of {len(str(abs(value)))} digits" if isinstance(value, int) else f"{value:.3g}"
            raise v.Invalid(f"{shown} is too large (at most {LARGEST})")
        return value

    def __repr__(self) -> str:
        return f"Number({', '.join(kind.__name__ for kind in self.kinds)})"


INT = Number(int)
NUMBER = Number(int, float)


def Regex(value: Any) -> str:  # noqa: N802 - reads like a type in schemas
    if not isinstance(value, str):
        raise v.Invalid(f"expected a regular expression string, got {type(value).__name__}")
    try:
        re.compile(value)
    except re.error as exc:
        raise v.Invalid(f"bad regular expression {value!r}: {exc}") from None
    return value


class Each:
    """A list whose every item is checked and every error kept: voluptuous's own `[schema]` stops a list at the
    first item with an error inside it, so four bad jobs would show as one."""

    def __init__(self, item: Any) -> None:
        self.item = v.Schema(item)

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, list):
            raise v.Invalid("expected list")
        errors: list[v.Invalid] = []
        for index, entry in enumerate(value):
            try:
                self.item(entry)
            except v.MultipleInvalid as exc:
                for err in exc.errors:
                    err.prepend([index])
                    errors.append(err)
            except v.Invalid as exc:
                exc.prepend([index])
                errors.append(exc)
        if errors:
            raise v.MultipleInvalid(errors)
        return value

    def __repr__(self) -> str:
        return f"Each({self.item!r})"


def one_or_each(item: Any) -> Callable[[Any], Any]:
    """A list of `item`s, or (as Zuul also takes it) one mapping alone."""
    each = Each(item)

    def check(value: Any) -> Any:
        return each([value] if isinstance(value, dict) else value)
    return check
