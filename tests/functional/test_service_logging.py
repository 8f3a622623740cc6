"""How gatekeeper's processes log: a service logs INFO to stderr by default (journald collects it), -q and -v move
the level, and an operator's command stays quiet below WARNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from gatekeeper.child_process import start_tied


def run_gerrit_sim(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    """Start `gatekeeper [flags] gerrit-sim` (a service), fetch its commit-msg hook over HTTP (logged at DEBUG),
    stop it; returns its stderr."""
    data = tmp_path / ("gerrit" + "".join(flags))
    proc = start_tied([sys.executable, "-m", "gatekeeper.cmd", *flags, "gerrit-sim", "--data-dir", str(data),
                             "--port", "0", "--http-port", "0", "--web-url", "http://127.0.0.1", "--project", "org/x"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Gerrit simulator on 127.0.0.1:"), line
        http_port = line.split("HTTP on 127.0.0.1:", 1)[1].split(" ", 1)[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/tools/hooks/commit-msg", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_a_service_logs_info_to_stderr_by_default_and_quiet_hides_it(tmp_path: Path) -> None:
    err = run_gerrit_sim(tmp_path)
    assert " INFO gatekeeper.sim.gerrit: Gerrit simulator listening on 127.0.0.1:" in err
    assert " DEBUG " not in err
    assert run_gerrit_sim(tmp_path, "-q") == ""
    assert ' DEBUG gatekeeper.sim.gerrit.http: 127.0.0.1 "GET /tools/hooks/commit-msg' in run_gerrit_sim(tmp_path, "-v")


def test_under_journald_lines_carry_no_timestamp_of_their_own(tmp_path: Path) -> None:
    err = run_gerrit_sim(tmp_path, env=dict(os.environ, JOURNAL_STREAM="8:12345"))
    first = next(line for line in err.splitlines() if "listening on" in line)
    assert first.startswith("INFO gatekeeper.sim.gerrit: Gerrit simulator listening on")


def test_an_operator_command_logs_only_warnings_by_default(tmp_path: Path) -> None:
    config = tmp_path / "gatekeeper.yaml"
    config.write_text(f"layout: {Path(__file__).resolve().parents[2] / 'layouts'}\n")
    proc = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "validate", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: ") and proc.stderr == ""
