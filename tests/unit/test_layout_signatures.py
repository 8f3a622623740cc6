"""Known-bug signatures in the layout: the reference layout's, and how bad ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.layout import load_layout, parse_layout
from gatekeeper.config.yamlfile import ConfigErrors

REPO = Path(__file__).resolve().parents[2]


def test_reference_layout_declares_known_bug_signatures():
    layout = load_layout(REPO / "layouts", connections={"gerrit"})
    bug = layout.signatures["1234"]
    assert bug.files == "screen-n-cpu.log" and bug.url == "https://bugs.example.com/1234"
    assert bug.pattern.search("ERROR nova.compute.manager Timeout waiting for vif plugging callback for instance")


@pytest.mark.parametrize("text,error", [
    ("signatures:\n  - {id: 1, title: t, pattern: '(('}\n", "bad regular expression '(('"),
    ("signatures:\n  - {id: 1, title: t, pattern: x, files: logs/screen-*.txt}\n", "names a directory"),
    ("signatures:\n  - {id: 1, pattern: x}\n", 'missing required key "title"'),
    ("signatures:\n  - {id: 1, title: t, pattern: x, colour: red}\n", 'unknown key "colour"'),
    ("signatures:\n  - {id: 1, title: t, pattern: x}\n  - {id: 1, title: u, pattern: y}\n", "defined twice"),
])
def test_bad_signatures_are_refused_with_file_and_line(text, error):
    with pytest.raises(ConfigErrors) as info:
        parse_layout({"layouts/bugs.yaml": text})
    message = str(info.value)
    assert error in message and "layouts/bugs.yaml:" in message
