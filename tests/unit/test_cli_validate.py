"""`gatekeeper validate`: exit 0 with a one-line summary, or non-zero with every error listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_validate_reference_layout(capsys):
    assert main(["validate", "--layout", str(REPO / "layouts")]) == 0
    out = capsys.readouterr().out
    assert out == "OK: 2 pipelines, 1 queues, 8 jobs, 8 projects, 2 node labels, 2 providers (1 file)\n"


def test_validate_lists_every_error_and_fails(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines:\n  - name: gate\n    manager: serial-ish\n    colour: red\n")
    assert main(["validate", "--layout", str(bad)]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}:3: pipelines[0] (gate).manager: unknown manager (expected independent or dependent)",
        f'{bad}:4: pipelines[0] (gate): unknown key "colour"',
        "2 errors: the layout is not valid",
    ]


def test_console_script_runs_validate():
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cli", "validate", "-l", str(REPO / "layouts")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: 2 pipelines")


def test_bad_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--nope"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err
