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
