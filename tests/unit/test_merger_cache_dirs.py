"""The merger cache's SSH control directory: one per process, and none left by a merger that was killed."""

from __future__ import annotations

import os
import subprocess
import tempfile

from gatekeeper.merger.cache import RepoCache


def test_a_cache_removes_the_control_directory_a_killed_merger_left_and_keeps_its_own_and_live_ones(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs, as a SIGKILLed merger's
    left = tempfile.mkdtemp(prefix=f"gk-ssh-{gone.pid}-")
    live = tempfile.mkdtemp(prefix=f"gk-ssh-{os.getppid()}-")
    cache = RepoCache(str(tmp_path / "cache"), ssh="ssh").open()
    try:
        own = cache._control_dir
        assert own is not None and os.path.basename(own).startswith(f"gk-ssh-{os.getpid()}-")
        assert not os.path.exists(left) and os.path.isdir(live) and os.path.isdir(own)
    finally:
        cache.close()
        os.rmdir(live)
    assert not os.path.exists(own)
