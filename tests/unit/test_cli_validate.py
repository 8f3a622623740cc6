"""`gatekeeper validate`: exit 0 with a one-line summary, or non-zero with every error listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.cmd import main

REPO = Path(__file__).resolve().parents[2]


def test_validate_reference_layout(capsys):
    assert main(["validate", "--layout", str(REPO / "layouts")]) == 0
    out = capsys.readouterr().out
    assert out == "OK: 2 pipelines, 1 queues, 8 jobs, 8 projects, 2 node labels, 2 providers (2 files)\n"


def test_validate_lists_every_error_and_fails(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines:\n  - name: gate\n    manager: serial-ish\n    colour: red\n")
    assert main(["validate", "--layout", str(bad)]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}:3: pipelines[0] (gate).manager: unknown manager (expected independent, dependent, serial or "
        "supercedent)",
        f'{bad}:4: pipelines[0] (gate): unknown key "colour"',
        "2 errors: the layout is not valid",
    ]


def test_console_script_runs_validate():
    proc = subprocess.run(
        [sys.executable, "-m", "gatekeeper.cmd", "validate", "-l", str(REPO / "layouts")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: 2 pipelines")


def test_bad_argument_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--nope"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def validate_cli(*argv: str) -> subprocess.CompletedProcess:
    """`gatekeeper validate` as an operator runs it: its own process, its exit code and its two streams."""
    return subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "validate", *argv],
                          capture_output=True, text=True, check=False, timeout=60)


def test_validate_lists_every_bad_item_in_every_section(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pipelines:\n"
        "  - name: check\n    manager: independent\n    precedence: urgent\n"
        "  - name: gate\n    manager: serial-ish\n"
        "jobs:\n"
        "  - name: a\n    timeout: x\n"
        "  - name: b\n    timeout: y\n"
        "  - name: c\n    voting: 3\n"
        "  - name: d\n    colour: red\n"
        "nodepool:\n  providers:\n"
        "    - name: p1\n      driver: static\n      hosts:\n"
        "        - {name: h1, address: a, labels: [x], port: 0}\n"
        "        - {name: h2, labels: [x]}\n"
    )
    proc = validate_cli("-l", str(bad))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"{bad}:4: pipelines[0] (check).precedence: expected high, normal or low, got a string 'urgent'",
        f"{bad}:6: pipelines[1] (gate).manager: unknown manager (expected independent, dependent, serial or "
        "supercedent)",
        f"{bad}:9: jobs[0] (a).timeout: expected an integer, got a string 'x'",
        f"{bad}:11: jobs[1] (b).timeout: expected an integer, got a string 'y'",
        f"{bad}:13: jobs[2] (c).voting: expected true or false, got an integer 3",
        f'{bad}:15: jobs[3] (d): unknown key "colour"',
        f"{bad}:21: nodepool.providers[0] (p1).hosts[0] (h1).port: value must be at least 1",
        f'{bad}:22: nodepool.providers[0] (p1).hosts[1] (h2): missing required key "address"',
        "8 errors: the layout is not valid",
    ]


def test_validate_names_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / "good.yaml").write_text((REPO / "layouts" / "openstack.yaml").read_text())
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"jobs:\n  - name: unit\n    description: caf\xe9 tests\n")
    proc = validate_cli("-l", str(tmp_path))
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"{latin}:3: not UTF-8 text: byte 0xe9 at column 21 cannot be decoded (save the file as UTF-8)",
        "1 error: the layout is not valid",
    ]


def test_validate_refuses_an_empty_layout(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "comments.yaml").write_text("# nothing yet\n")
    proc = validate_cli("-l", str(tmp_path))
    assert proc.returncode == 3, proc.stdout
    assert proc.stderr.splitlines() == [
        f"{tmp_path}: the layout defines no pipelines and no node providers, so nothing would be gated or "
        "launched (it is empty)",
        "1 error: the layout is not valid",
    ]
    only_jobs = tmp_path / "jobs.yaml"
    only_jobs.write_text("jobs:\n  - name: unit\n")
    proc = validate_cli("-l", str(only_jobs))
    assert proc.returncode == 3
    assert "nothing would be gated or launched (it defines only 1 jobs)" in proc.stderr


def test_validate_refuses_a_layout_whose_main_file_a_deploy_emptied(tmp_path, capsys):
    """The reference layout with openstack.yaml emptied leaves the known-bug signatures alone: nothing would be
    gated or launched, and the sentence names the directory and the empty file."""
    (tmp_path / "known-bugs.yaml").write_text((REPO / "layouts" / "known-bugs.yaml").read_text())
    (tmp_path / "openstack.yaml").write_text("# managed by the deploy\n")
    assert main(["validate", "--layout", str(tmp_path)]) == 3
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path}: the layout defines no pipelines and no node providers, so nothing would be gated or launched "
        "(it defines only 2 known-bug signatures; openstack.yaml is empty or only comments)",
        "1 error: the layout is not valid",
    ]


def test_validate_refuses_an_empty_file_beside_others(tmp_path, capsys):
    """One file of several is empty (a deploy's half-written layout): taken as it is, the pipelines it held would
    be removed with their changes, so it is refused, named."""
    (tmp_path / "openstack.yaml").write_text((REPO / "layouts" / "openstack.yaml").read_text())
    (tmp_path / "gate.yaml").write_text("")
    assert main(["validate", "--layout", str(tmp_path)]) == 3
    assert capsys.readouterr().err.splitlines() == [
        f"{tmp_path / 'gate.yaml'}: this layout file is empty; a file meant to define nothing can be removed, or say "
        "so in a comment",
        "1 error: the layout is not valid",
    ]


def test_validate_takes_a_file_of_comments_only_beside_others(tmp_path, capsys):
    """A file that says in a comment it defines nothing is meant, as Zuul takes it."""
    (tmp_path / "openstack.yaml").write_text((REPO / "layouts" / "openstack.yaml").read_text())
    (tmp_path / "later.yaml").write_text("# jobs of the next release go here\n")
    assert main(["validate", "--layout", str(tmp_path)]) == 0


def test_validate_names_a_top_level_that_is_not_a_mapping_and_a_control_character(tmp_path):
    listed = tmp_path / "a.yaml"
    listed.write_text("- pipelines\n- jobs\n")
    nul = tmp_path / "b.yaml"
    nul.write_text("jobs:\n  - name: a\x00\n")
    proc = validate_cli("-l", str(tmp_path))
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"{listed}:1: expected a mapping of sections (pipelines, queues, jobs, projects, nodepool) at the top "
        "level, got a list",
        f"{nul}:2: invalid YAML: character #x0000 is not allowed in YAML text",
        "2 errors: the layout is not valid",
    ]


def test_validate_says_which_file_is_invalid_the_service_config_or_the_layout(tmp_path):
    config = tmp_path / "gatekeeper.yaml"
    config.write_text("web:\n  port: [9000\n")
    proc = validate_cli("-c", str(config), "-l", str(REPO / "layouts"))
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[-1] == "1 error: the service config is not valid"
