"""devstack's config files from a job's variables: `localrc` (shell assignments) and `local.conf`.

Values are shell-quoted, so a value holding `$(...)`, quotes or a newline is data when stack.sh sources the file.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from gatekeeper.executor.remote import ENV_NAME


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return "" if value is None else str(value)


def render_localrc(variables: Mapping[str, Any]) -> str:
    """`NAME=value` lines, in the order given; names must be shell identifiers."""
    lines = []
    for name, value in variables.items():
        if not ENV_NAME.match(str(name)):
            raise ValueError(f"devstack localrc: {name!r} is not a valid shell variable name")
        lines.append(f"{name}={shlex.quote(_value(value))}")
    return "\n".join(lines) + ("\n" if lines else "")


def config_files(localrc: Mapping[str, Any], local_conf: str = "") -> dict[str, str]:
    """The files to install in the devstack directory on the node (none when the job has no devstack config)."""
    files: dict[str, str] = {}
    if localrc:
        files["localrc"] = render_localrc(localrc)
    if local_conf.strip():
        # the localrc variables are already in `localrc`; devstack reads both
        files["local.conf"] = local_conf.strip("\n") + "\n"
    return files
