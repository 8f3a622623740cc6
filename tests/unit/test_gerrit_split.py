"""Gerrit's command-line splitter, and that shlex.quote'd arguments survive it."""

from __future__ import annotations

import shlex

import pytest

from gatekeeper.sim.gerrit.split import gerrit_split


@pytest.mark.parametrize("line, argv", [
    ("gerrit review  1,1\t--submit", ["gerrit", "review", "1,1", "--submit"]),
    ('gerrit query --format json change:1"', ["gerrit", "query", "--format", "json", "change:1"]),
    ("""a "b 'c' d" 'e "f"'""", ["a", "b 'c' d", 'e "f"']),
    (r"a b\ c 'd\e' \"", ["a", "b c", r"d\e", '"']),
    ("a ''", ["a"]),
    ("trailing\\", ["trailing\\"]),
    ('-m \'"Build Successful"\'', ["-m", '"Build Successful"']),
])
def test_gerrit_split(line: str, argv: list[str]) -> None:
    assert gerrit_split(line) == argv


@pytest.mark.parametrize("message", [
    'say "hi"', "it's", "$(rm -rf /) `id` ${HOME}", "two\nlines\n", "back\\slash \\\\ \\n", "tab\there",
    "ünïcödé ✓", "'", '"', "--submit", "a'b\"c'd",
])
def test_shlex_quoted_arguments_arrive_verbatim(message: str) -> None:
    assert gerrit_split("gerrit review --message " + shlex.quote(message) + " 1,1") == [
        "gerrit", "review", "--message", message, "1,1"]
