"""A merge conflict's message, reported on the change, names a bounded number of files."""

from __future__ import annotations

from gatekeeper.merger.speculative import CONFLICT_FILES_SHOWN, conflict_message
from gatekeeper.zk.merges import ChangeSpec


def test_a_conflict_names_its_files() -> None:
    change = ChangeSpec(project="org/a", branch="master", number=3, patchset=1)
    assert conflict_message(change, "CONFLICT (content)", ["a.py", "b.py"]) == (
        "change 3,1 does not merge onto org/a master (with the changes ahead of it): CONFLICT (content) (a.py, b.py)")


def test_a_conflict_over_thousands_of_files_names_the_first_and_counts_the_rest() -> None:
    change = ChangeSpec(project="org/a", branch="master", number=3, patchset=1)
    files = [f"vendor/lib/{i:05d}.js" for i in range(30000)]
    message = conflict_message(change, "CONFLICT (content)", files)
    assert message.endswith(f"vendor/lib/{CONFLICT_FILES_SHOWN - 1:05d}.js and {30000 - CONFLICT_FILES_SHOWN} more)")
    assert len(message) < 1000
