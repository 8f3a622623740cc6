"""Argument types for the operator commands: a bad node id, change or number is refused by argparse, naming the
argument, with exit code 2, before anything reaches ZooKeeper or the web API."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

# A node, build or request id becomes one ZooKeeper path component or one URL path segment: letters, digits and
# _ . - only, not starting with a dot (so neither ".." nor a hidden name), and not ZooKeeper's own "zookeeper".
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")
_CHANGE_KEY = re.compile(r"^\d+,\d+$")
_CHANGE = re.compile(r"^\d+(,\d+)?$")
_AUTOHOLD_ID = re.compile(r"^hold-\d{10}$")


def identifier(kind: str) -> Callable[[str], str]:
    """An argparse type for the id of a `kind` (node, build, request)."""

    def check(value: str) -> str:
        if not _ID.match(value) or value == "zookeeper":
            raise argparse.ArgumentTypeError(
                f'"{value}" is not a {kind} id (expected letters, digits, "_", "." and "-", not starting with ".")')
        return value

    check.__name__ = f"{kind} id"
    return check


def change_key(value: str) -> str:
    """N,P: a change and its patch set, as the scheduler and the admin API take them."""
    value = value.strip()
    if not _CHANGE_KEY.match(value):
        raise argparse.ArgumentTypeError(f'"{value}" is not a change (expected NUMBER,PATCHSET such as 5,1)')
    return value


def change_or_key(value: str) -> str:
    """N or N,P."""
    value = value.strip()
    if not _CHANGE.match(value):
        raise argparse.ArgumentTypeError(f'"{value}" is not a change (expected N or N,P such as 5 or 5,1)')
    return value


def autohold_id(value: str) -> str:
    if not _AUTOHOLD_ID.match(value):
        raise argparse.ArgumentTypeError(
            f'"{value}" is not an autohold id (expected hold- and ten digits, as `gatekeeper autohold list` shows)')
    return value


def autohold_change(value: str) -> str:
    """An autohold's change: a regular expression on NUMBER,PATCHSET, or a bare change number as zuul-client's
    `autohold --change 5` gives it, which holds that change at any patch set (as a pattern it would match none)."""
    if re.fullmatch(r"\d+", value.strip(), re.ASCII):
        return rf"{int(value)},\d+"
    return regex(value)


def regex(value: str) -> str:
    """A regular expression, refused as the admin API refuses it."""
    try:
        re.compile(value)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f'"{value}" is not a regular expression: {exc}') from None
    return value


def _whole(value: str, what: str = "a whole number") -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{value}" is not {what}') from None


def positive_int(value: str) -> int:
    number = _whole(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not at least 1")
    return number


def positive_number(value: str) -> float:
    """A finite number above zero (hours, seconds): "nan", "inf" and negatives are refused."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'"{value}" is not a number') from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f'"{value}" is not a number above zero')
    return number


MAX_WAIT_S = 7 * 24 * 3600  # a command's --timeout: at most a week


def wait_seconds(value: str) -> float:
    """How long a command waits: seconds above zero, at most a week."""
    seconds = positive_number(value)
    if seconds > MAX_WAIT_S:
        raise argparse.ArgumentTypeError(f'"{value}" seconds is longer than a command waits (at most {MAX_WAIT_S}, '
                                         "a week)")
    return seconds


def port(value: str) -> int:
    """A TCP port, 0 to 65535 (0: a free one)."""
    number = _whole(value, "a port number")
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a TCP port (0 to 65535)")
    return number


def count(value: str) -> int:
    """A whole number, 0 or more."""
    number = _whole(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number} is below 0")
    return number


def hold_hours(value: str) -> float:
    """How long to hold a node: a number of hours above zero and at most MAX_HOLD_HOURS (30 days)."""
    from gatekeeper.zk.node_changes import MAX_HOLD_HOURS

    hours = positive_number(value)
    if hours > MAX_HOLD_HOURS:
        raise argparse.ArgumentTypeError(
            f'"{value}" hours is longer than a hold may last (at most {MAX_HOLD_HOURS} hours, 30 days)')
    return hours


def pipeline_name(value: str) -> str:
    """A pipeline's name as the scheduler takes it: not empty, at most 255 characters."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if len(value) > 255:
        raise argparse.ArgumentTypeError(f"a name of {len(value)} characters is not a pipeline (at most 255)")
    return value


def reason(value: str) -> str:
    """An operator's reason: one line of text (no control characters), at most 500 characters; may be empty."""
    from gatekeeper.config.schema_parts import reason_problem

    problem = reason_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(f"the reason {problem}")
    return value


def given_reason(value: str) -> str:
    """A reason that must be given (not empty)."""
    return reason(non_empty(value))


def non_empty(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value
