"""What a Depends-On footer names, read against a Gerrit that answers from a table (the functional scenario tests
cross the real wire: tests/functional/test_zuul_scenarios_triggers.py)."""

from __future__ import annotations

import pytest

from gatekeeper.gerrit.source import GerritChangeSource

ROWS = {5: {"number": 5, "status": "ABANDONED", "currentPatchSet": {"number": 1}},
        123: {"number": 123, "status": "NEW", "currentPatchSet": {"number": 2}},
        4: {"number": 4, "status": "NEW", "currentPatchSet": {"number": 1}}}


class Gerrit:
    def __init__(self, hostname: str, web_url: str) -> None:
        self.hostname, self.web_url = hostname, web_url

    def get_change(self, number: int, *flags: str) -> dict | None:
        return ROWS.get(number)

    def query(self, query: str, *flags: str) -> list[dict]:
        target = query.split(":", 1)[1]
        return [ROWS[int(target)]] if target.isdigit() and int(target) in ROWS else []


def needs(gerrit: Gerrit, target: str, url: str = "") -> tuple[list[str], str]:
    row = {"project": "p", "number": 9, "currentPatchSet": {"number": 1}, "url": url,
           "commitMessage": f"Fix\n\nDepends-On: {target}\n"}
    change = GerritChangeSource(gerrit).to_change(row)
    return change.needs, change.needs_error


@pytest.mark.parametrize("target", ["https://r/c/p/+/123/4", "https://r/#/c/123/4", "https://r/c/p/+/123/"])
def test_a_url_that_goes_on_with_a_patch_set_names_its_change_not_the_patch_set(target: str) -> None:
    assert needs(Gerrit("r", "https://r"), target) == (["123,2"], "")


def test_a_url_of_this_gerrits_web_host_counts_when_its_ssh_host_differs_and_no_web_url_is_set() -> None:
    """The change's own URL (as Gerrit gives it) tells this Gerrit's web host: a dependency on it is not dropped."""
    gerrit = Gerrit("gerrit-ssh.example.org", "https://gerrit-ssh.example.org")
    target = "https://review.example.org/c/p/+/123"
    assert needs(gerrit, target, url="https://review.example.org/c/p/+/9") == (["123,2"], "")
    assert needs(gerrit, "https://github.com/example/library/pull/123", url="https://review.example.org/c/p/+/9") \
        == ([], "")


def test_only_a_change_id_ignores_closed_changes_a_bare_number_still_names_its_change() -> None:
    """Zuul's legacy Change-Id form keeps open changes only; a number is no Change-Id: the abandoned change it names
    still counts (and is refused in a gate)."""
    assert needs(Gerrit("r", "https://r"), "5") == (["5,1"], "")
