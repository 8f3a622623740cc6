"""Secrets out of consoles and logs: every known secret value is replaced before a line is written anywhere."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "******"
# Variable names whose values are secrets (devstack's *_PASSWORD, tokens, keys).
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|CREDENTIAL)", re.IGNORECASE)
MIN_SECRET_LEN = 3  # shorter values would mask ordinary text


def secrets_from_vars(*var_sets: Mapping[str, Any]) -> set[str]:
    """The values of variables whose names say they are secrets."""
    out = set()
    for variables in var_sets:
        for name, value in variables.items():
            if SECRET_NAME.search(str(name)) and value not in (None, ""):
                out.add(str(value))
    return out


class Masker:
    """Replaces every secret (longest first, so one secret inside another is fully hidden) with MASK."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._values = [v.encode() for v in values]
        self._pattern = re.compile("|".join(re.escape(s) for s in values)) if values else None
        self._bytes_pattern = re.compile(b"|".join(re.escape(s.encode()) for s in values)) if values else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def data(self, data: bytes) -> bytes:
        if len(self._values) <= 16:
            # a few plain replaces (longest first) are several times faster than one alternation regex, which
            # matters for large logs: both hold the GIL the SSH transport thread needs
            for value in self._values:
                if value in data:
                    data = data.replace(value, MASK.encode())
            return data
        return self._bytes_pattern.sub(MASK.encode(), data) if self._bytes_pattern else data
