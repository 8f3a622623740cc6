"""gatekeeper's entry point in odd surroundings."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_command_runs_with_its_standard_error_closed():
    """A cron job or a daemon's child may start with fd 2 closed: faulthandler has nowhere to write, which is no
    reason to fail."""
    done = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "--version"], capture_output=False,
                          stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(2), timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("gatekeeper ")


def test_with_its_standard_error_closed_an_error_goes_nowhere_rather_than_into_its_output():
    done = subprocess.run([sys.executable, "-m", "gatekeeper.cmd", "autohold", "delete"], stdout=subprocess.PIPE,
                          text=True, preexec_fn=lambda: os.close(2), timeout=60)
    assert (done.returncode, done.stdout) == (2, "")


def test_events_with_a_bad_config_says_what_is_wrong_with_it_not_that_zookeeper_is_unreachable(tmp_path, capsys):
    from gatekeeper.cmd import main

    config = tmp_path / "gatekeeper.yaml"
    config.write_text("zookeeper:\n  hosts: 127.0.0.1:2181\nnonsense_key: 1\n")
    assert main(["events", "list", "-c", str(config)]) == 3
    err = capsys.readouterr().err
    assert 'unknown key "nonsense_key"' in err and "ZooKeeper" not in err
